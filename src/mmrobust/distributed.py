"""Data parallel training on PyTorch's own engine (``torch.distributed``), launched by ``torchrun``.

    torchrun --nproc_per_node=4 -m mmrobust run --config ...     (NCCL on GPUs, gloo on CPUs)

Every rank builds the same models from the same seeds and walks the same global batches (a
pure function of seed and epoch); each rank takes every ``world``-th row of a global batch,
and one all-reduce of the flattened gradients per step makes the update that of the whole
global batch: each rank's loss is weighted by its share of rows, so ranks whose batch lacks a
modality (or has no rows at all) simply contribute zeros for that encoder. Buffers (BatchNorm
running statistics) follow rank 0 after every step, as DDP's ``broadcast_buffers`` does. The
methods' steps call their models' own functions (``encode``, ``fuse``), not ``forward``,
which is why this is a gradient all-reduce rather than the ``DistributedDataParallel``
wrapper. Rank 0 writes the run folder; the others only compute.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); False when not launched so."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return active()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    return True


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's value of a picklable object, on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(index, size: int | None = None, at: int | None = None):
    """This rank's rows of a global batch: every ``world``-th row."""
    size = world_size() if size is None else size
    at = rank() if at is None else at
    return index[at::size]


def all_reduce_sum(value: Tensor) -> Tensor:
    if active():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Sum the gradients over ranks in one flat all-reduce. A parameter without a gradient on
    a rank (an encoder whose modality is absent from its rows) counts as zeros there, and
    keeps no gradient at all when no rank has one: the optimiser then skips it, exactly as a
    single process whose whole batch lacks that modality (momentum and Adam would otherwise
    move it)."""
    if not active():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
             for p in params]
    has_grad = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device, dtype=params[0].dtype)
    flat = torch.cat([*grads, has_grad])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, anyone in zip(params, flat[-len(params):].tolist()):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone() if anyone > 0 else None
        offset += n


def broadcast_buffers(module: nn.Module) -> None:
    """Every rank takes rank 0's buffers (one flat broadcast)."""
    if not active():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point() or b.dtype in (torch.int64, torch.int32)]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).to(torch.float64) for b in buffers])
    dist.broadcast(flat, src=0)
    offset = 0
    for b in buffers:
        n = b.numel()
        b.copy_(flat[offset:offset + n].view_as(b).to(b.dtype))
        offset += n
