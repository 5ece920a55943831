"""A module run on the present rows of a whole split, chunk by chunk, and the outputs shared.

Six of a run's methods read the same Stage-1 models: the uni-modal references, UME, weighted
UME and UME-MMA's ensemble candidate hold copies of them, and UME-MMA's MMA candidate is the
``mma`` method's model. Inside :func:`shared_encodings` (one seed's evaluation) a module is run
once per input array and presence: a second module with the same architecture and the same
weights gets the first one's outputs. A row of an array input is run once per distinct content:
the digits' recordings repeat across rows, a blank or constant failure is one input on every
row and a stale one is another row's, so inside the block a module encodes each distinct row
once per seed. Which rows share a chunk then depends on what was encoded before, always in the
same order: the outputs are deterministic, equal to encoding row by row up to the last bits of
a batched convolution.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .batch import Input, encode_present, iter_chunks, take_rows, to_device

SHARED_BYTES = 512 * 2**20  # outputs kept for the methods of a seed; beyond, each method runs its own
DIGEST_ROWS = 1024  # rows read at once to hash them

_shared: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mmrobust_shared_encodings", default=None)


@contextlib.contextmanager
def shared_encodings() -> Iterator[None]:
    """Within the block, :func:`encode_rows` runs each distinct module once per input and presence."""
    token = _shared.set({"bytes": 0, "outputs": {}, "rows": {}, "digests": {}})
    try:
        yield
    finally:
        _shared.reset(token)


@torch.no_grad()
def encode_rows(module: nn.Module, x: Input | None, present: Tensor, out_dim: int, batch_size: int,
                device: torch.device) -> Tensor:
    """``module`` (in eval mode) on the rows of ``x`` where ``present``, ``batch_size`` rows at
    a time on ``device``: ``N x out_dim`` float32 on the host, zeros where absent. A row of an
    array input is encoded once per distinct content (:func:`_encode_distinct`)."""
    shared = _shared.get()
    what = None if shared is None else fingerprint(module)
    key = None if shared is None or x is None else (what, id(x), _digest(present), batch_size, str(device))
    if key is not None and key in shared["outputs"] and shared["outputs"][key][0] is x:
        return shared["outputs"][key][1]
    if _host_array(x):
        out = _encode_distinct(module, x, present, out_dim, batch_size, device, shared, what)
    else:
        out = torch.cat([encode_present(module, chunk_inputs.get("x"), chunk_present["x"], out_dim, host["x"]).float().cpu()
                         for chunk_inputs, chunk_present, host in iter_chunks({"x": x}, {"x": present}, batch_size, device)])
    if key is not None and shared["bytes"] + out.nbytes <= SHARED_BYTES:
        shared["outputs"][key] = (x, out)  # the input kept with it: its id cannot be reused while the entry lives
        shared["bytes"] += out.nbytes
    return out


def _host_array(x: Input | None) -> bool:
    return isinstance(x, np.ndarray) or (isinstance(x, Tensor) and x.device.type == "cpu")


def _encode_distinct(module: nn.Module, x: np.ndarray | Tensor, present: Tensor, out_dim: int, batch_size: int,
                     device: torch.device, shared: dict | None, what: str | None) -> Tensor:
    """``module`` on each distinct present row of ``x`` once (the digits' recordings repeat, a
    blank or constant failure is one input on every row, a stale one another row's), in chunks of
    ``batch_size`` distinct rows; inside :func:`shared_encodings` also once per seed for the rows
    earlier calls with the same module encoded (by content)."""
    rows = np.flatnonzero(present.cpu().numpy())
    out = torch.zeros(int(present.shape[0]), out_dim)
    if not len(rows):
        return out
    every = row_digests(x, shared)
    digests = [every[i] for i in rows]
    known = {} if shared is None else shared["rows"].setdefault(what, {})  # digest -> output, per module
    first = {}  # each distinct digest's first row, in row order
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    todo = [d for d in first if d not in known]
    new = {}
    if todo:
        at = torch.as_tensor(rows[[first[d] for d in todo]], dtype=torch.long)
        encoded = torch.cat([module(to_device(take_rows(x, at[i:i + batch_size]), device)).float().cpu()
                             for i in range(0, len(at), batch_size)])
        new = dict(zip(todo, encoded))
        if shared is not None and shared["bytes"] + encoded.nbytes <= SHARED_BYTES:
            known.update(new)
            shared["bytes"] += encoded.nbytes
    out[torch.as_tensor(rows)] = torch.stack([new[d] if d in new else known[d] for d in digests])
    return out


def row_digests(x: np.ndarray | Tensor, shared: dict | None) -> list[bytes]:
    """A digest of each row's bytes (inside :func:`shared_encodings` once per input array: the
    methods of a seed read the same arrays)."""
    if shared is not None and id(x) in shared["digests"] and shared["digests"][id(x)][0] is x:
        return shared["digests"][id(x)][1]
    digests = []
    for start in range(0, len(x), DIGEST_ROWS):  # a memory-mapped input is read a block at a time
        block = x[start:start + DIGEST_ROWS]
        values = np.ascontiguousarray(block.numpy() if isinstance(block, Tensor) else block).reshape(len(block), -1)
        digests += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in values]
    if shared is not None:
        shared["digests"][id(x)] = (x, digests)  # the array kept with them: its id cannot be reused meanwhile
    return digests


def fingerprint(module: nn.Module) -> str:
    """What a module computes: its children's architecture and every weight and buffer, bit for bit."""
    h = hashlib.sha256(repr([(name, child) for name, child in module.named_children()]).encode())
    h.update(repr(module.training).encode())
    for name, tensor in module.state_dict().items():
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(_bytes(tensor))
    return h.hexdigest()


def _bytes(tensor: Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _digest(present: Tensor) -> str:
    return hashlib.sha256(present.cpu().numpy().tobytes()).hexdigest()

