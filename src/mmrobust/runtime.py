"""Runtime helpers, in one small room: the device, seeding, and seeds derived from names.

Imported by data/, encoders/, methods/, the protocols and the training loop. torch is imported
inside the functions that need it, so the pure modules (protocols, records, report) stay
free of it.
"""
from __future__ import annotations

import contextlib
import zlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


def resolve_device(device: "str | torch.device") -> "torch.device":
    """``auto``: CUDA when present (under torchrun, this process's GPU), else the CPU."""
    import torch

    from . import distributed

    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", distributed.local_rank()) if distributed.active() else torch.device("cuda")
    return torch.device(device)


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
