"""What a run folder records about where and how it ran: versions, git, device, and the wall
time and peak memory of every stage."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path
import time
from importlib import metadata
from typing import Iterator

import torch

PACKAGES = ("mmrobust", "torch", "numpy", "scikit-learn", "scipy", "safetensors", "matplotlib", "PyYAML")
OPTIONAL_PACKAGES = ("transformers", "tokenizers", "onnxruntime", "pillow")  # listed when installed


def environment(device: torch.device, threads: int | None = None) -> dict:
    """Where a run runs; ``threads``: the torch CPU threads it trains with (its results depend on it)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES}
        | {name: v for name in OPTIONAL_PACKAGES if (v := _version(name)) is not None},
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The commit of the source tree this package was imported from, when it is a git checkout;
    ``+dirty`` when the package's own files differ from it (a run writing its results into the
    checkout, as the benchmarks do, does not make the code dirty)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except ImportError:
        return None


@contextlib.contextmanager
def measure(stages: list[dict], name: str, device: torch.device | None = None) -> Iterator[None]:
    """Append ``{stage, seconds, peak_rss_mb, peak_cuda_mb}`` for the block to ``stages``.

    ``peak_rss_mb`` is the process's peak resident memory during the block where the kernel
    lets it be reset (Linux), else the peak since the process started (``rss_peak_scope``).
    """
    reset = _reset_peak_rss()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    yield
    stages.append({
        "stage": name, "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": _peak_rss_mb(),
        "rss_peak_scope": "stage" if reset else "process",
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
    })


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()
