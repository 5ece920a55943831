"""Runtime helpers, in one small room: the device, seeding, and seeds derived from names.

Imported by data/, encoders/, methods/, the protocols and the training loop. torch is imported
inside the functions that need it, so the pure modules (protocols, records, report) stay
free of it.
"""
from __future__ import annotations

import contextlib
import os
import zlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


def resolve_device(device: "str | torch.device") -> "torch.device":
    """``auto``: CUDA when present (under torchrun, this process's GPU), else the CPU. A device
    this machine does not have is a :class:`~mmrobust.errors.ConfigError`, said in one line."""
    import torch

    from . import distributed
    from .errors import ConfigError

    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", distributed.local_rank()) if distributed.active() else torch.device("cuda")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {str(device)!r}: not a device torch knows ({err}); use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index or 0) >= count:
            raise ConfigError(f"device {str(device)!r}: this machine has {count} CUDA device(s) (torch {torch.__version__}); "
                              f"use --device cpu or auto")
    return resolved


def resolve_threads(threads: int | None) -> int:
    """The CPU threads to use: ``threads``, or by default half the cores (at least one)."""
    return int(threads) if threads is not None else max(1, (os.cpu_count() or 1) // 2)


def resolve_jobs(jobs: int | None, threads: int | None, device: str = "cpu") -> int:
    """Worker processes for independent seeds: ``jobs``, or by default as many as the cores this
    process may use allow at ``threads`` threads each; one on a GPU (the seeds would share it)."""
    if jobs is not None:
        return int(jobs)
    if str(device) != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // resolve_threads(threads))


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """Run a block with torch on ``resolve_threads(threads)`` CPU threads, restoring the caller's."""
    import torch

    before, wanted = torch.get_num_threads(), resolve_threads(threads)
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch seed, restoring the caller's random state after."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def derive_seed(seed: int, *names: object) -> int:
    """A 32-bit seed derived from ``seed`` and names, stable across processes and platforms."""
    text = "/".join([str(int(seed))] + [str(n) for n in names])
    return zlib.crc32(text.encode("utf-8"))


def encoder_seed(seed: int, modality: str) -> int:
    """The seed a modality's encoder is initialised from: the same for every method of a run
    seed (the uni-modal model, every fused model trained from scratch), so a per-seed difference
    between two methods is the methods', not their draws' (common random numbers)."""
    return derive_seed(seed, "encoder", modality)
