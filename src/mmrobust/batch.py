"""The batch and mask contract: inputs, presence and targets, all keyed by modality name.

A missing modality is ``present[m] == False``; no code infers it from the values of
``inputs[m]``. An input is a tensor (or array) with the rows first, or a dict of them
(a tokenised text: ``{"input_ids": ..., "attention_mask": ...}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .errors import DataError

Input = Union[Tensor, np.ndarray, Mapping[str, Any]]
TASKS = ("multiclass", "multilabel")


def num_rows(x: Input) -> int:
    """Number of rows of an input (a dict input: of its first field)."""
    if isinstance(x, Mapping):
        if not x:
            raise DataError("a dict input needs at least one field")
        return num_rows(next(iter(x.values())))
    return int(x.shape[0])


def take_rows(x: Input, rows: Tensor | np.ndarray) -> Any:
    """Rows ``rows`` (integer indices) of an input, recursing into dict inputs, as tensors."""
    if isinstance(x, Mapping):
        return {k: take_rows(v, rows) for k, v in x.items()}
    if isinstance(x, Tensor):
        return x[torch.as_tensor(rows, device=x.device, dtype=torch.long)]
    return torch.as_tensor(np.ascontiguousarray(x[np.asarray(rows)]))


def move_to(x: Any, device: torch.device | str) -> Any:
    if isinstance(x, Mapping):
        return {k: move_to(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def scatter_rows(x: Input, rows: Sequence[int] | np.ndarray, n: int) -> Any:
    """An input of ``n`` rows, zeros except ``rows``, which take ``x``'s rows in order
    (recursing into dict inputs): the inverse of :func:`take_rows` for a missing modality."""
    if isinstance(x, Mapping):
        return {k: scatter_rows(v, rows, n) for k, v in x.items()}
    out = x.new_zeros((n, *x.shape[1:]))
    out[torch.as_tensor(np.asarray(rows), dtype=torch.long)] = x
    return out


def iter_chunks(
    inputs: Mapping[str, Any], present: Mapping[str, Tensor], batch_size: int, device: torch.device
) -> Iterator[tuple[dict[str, Any], dict[str, Tensor], dict[str, Tensor]]]:
    """Evaluation chunks of rows: (inputs moved to ``device``, presence on ``device``, presence on
    the host); a modality absent from a chunk is left out of its inputs."""
    n = int(next(iter(present.values())).shape[0])
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        host = {m: p[rows.to(p.device)].cpu() for m, p in present.items()}  # decided on the host: no GPU sync
        chunk_inputs = {m: move_to(take_rows(inputs[m], rows), device)
                        for m in present if inputs.get(m) is not None and bool(host[m].any())}
        yield chunk_inputs, {m: p.to(device, non_blocking=True) for m, p in host.items()}, host


def _pin(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _pin(v) for k, v in x.items()}
    return x.pin_memory()


def encode_present(encoder: torch.nn.Module, x: Input | None, present: Tensor, out_dim: int,
                   host_present: Tensor | None = None) -> Tensor:
    """Run ``encoder`` on the present rows only and scatter the result back.

    Absent rows get zeros (never read by a mask-aware fusion). A batch where the modality
    is absent from every row never calls the encoder. ``host_present`` (the same mask in host
    memory) lets the rows be found without waiting for the GPU.
    """
    batch_size = present.shape[0]
    device = present.device
    rows = torch.nonzero(present if host_present is None else host_present, as_tuple=False).flatten()
    if rows.numel() == 0:
        return torch.zeros(batch_size, out_dim, device=device)
    if rows.numel() == batch_size:
        return encoder(x)
    rows = to_device(rows, device)
    encoded = encoder(take_rows(x, rows))
    out = encoded.new_zeros(batch_size, encoded.shape[1])
    return out.index_copy(0, rows, encoded)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """A host tensor on ``device``, copied asynchronously (through page-locked memory) to a GPU."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


@dataclass
class Batch:
    """One batch: ``inputs[m]`` has ``B`` rows, ``present[m]`` is a bool tensor of ``B``.

    ``inputs`` may omit a modality that is absent from every row. ``index`` holds the
    dataset indices of the rows (the MMA augmentation is a function of them); it stays in
    host memory, as does ``host_present`` (the presence before any move to a GPU), so that
    work on them never waits for the GPU.
    """

    inputs: dict[str, Any]
    present: dict[str, Tensor]
    target: Tensor | None
    index: Tensor
    host_present: dict[str, Tensor] | None = None

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            inputs={m: move_to(x, device) for m, x in self.inputs.items()},
            present={m: p.to(device, non_blocking=True) for m, p in self.present.items()},
            target=None if self.target is None else self.target.to(device, non_blocking=True),
            index=self.index.cpu(),
            host_present=self.host_present or {m: p.cpu() for m, p in self.present.items()},
        )

    def pin_memory(self) -> "Batch":
        """Page-locked copies, so that the copy to a GPU runs asynchronously."""
        return Batch(inputs={m: _pin(x) for m, x in self.inputs.items()},
                     present={m: p.pin_memory() for m, p in self.present.items()},
                     target=None if self.target is None else self.target.pin_memory(), index=self.index)

    def with_present(self, present: dict[str, Tensor]) -> "Batch":
        return Batch(self.inputs, present, self.target, self.index)


class MultiModalDataset:
    """In-memory (or memory-mapped) paired data: inputs, observed presence and targets.

    ``target`` is an integer vector (multi-class) or an ``N x C`` 0/1 matrix (multi-label).
    ``present`` is the data's own missingness (the ``observed`` protocol); by default every
    modality is present in every row. ``sources`` (optional, per modality): the id of the source
    each row's input comes from (a recording reused by several rows); rows that share one are not
    independent, and the bootstrap intervals resample them together. ``raw`` (optional, per
    modality): each row's input before a preprocessing that discards what shows a broken sensor
    (the digits' pictures before their PCA projection: a black picture projects close to a thin
    digit); the input gate reads it instead of the model's input. ``cells`` (optional, per modality
    read through a pre-trained extractor): each row's cell, a file's absolute path or a text
    (``None`` where missing), which a ``corrupt:`` condition reads again and degrades.
    """

    def __init__(
        self,
        inputs: Mapping[str, Input],
        target: Tensor | np.ndarray,
        present: Mapping[str, Tensor | np.ndarray] | None = None,
        *,
        num_classes: int | None = None,
        task: str | None = None,
        label_names: Sequence[str] | None = None,
        sources: Mapping[str, np.ndarray] | None = None,
        raw: Mapping[str, Input] | None = None,
        cells: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        if len(inputs) < 1:
            raise DataError("a dataset needs at least one modality")
        self.inputs = dict(inputs)
        self.modalities: tuple[str, ...] = tuple(sorted(self.inputs))
        self.target = torch.as_tensor(np.array(target)) if not isinstance(target, Tensor) else target
        n = int(self.target.shape[0])
        for m in self.modalities:
            if num_rows(self.inputs[m]) != n:
                raise DataError(
                    f"modality {m!r} has {num_rows(self.inputs[m])} rows but the target has {n}"
                )
        self.present = _check_present(present, self.modalities, n)
        self.task = task or ("multilabel" if self.target.ndim == 2 else "multiclass")
        if self.task not in TASKS:
            raise DataError(f"task must be one of {TASKS}, got {self.task!r}")
        self.num_classes = num_classes or _infer_num_classes(self.target, self.task)
        self.label_names = list(label_names) if label_names is not None else None
        _check_target(self.target, self.task, self.num_classes)
        self.sources = {m: np.asarray(v) for m, v in (sources or {}).items()}
        for m, ids in self.sources.items():
            if m not in self.modalities or len(ids) != n:
                raise DataError(f"sources[{m!r}]: {len(ids)} ids for a modality of {n} rows; expected one per row")
        self.raw = dict(raw or {})
        for m, x in self.raw.items():
            if m not in self.modalities or num_rows(x) != n:
                raise DataError(f"raw[{m!r}]: {num_rows(x)} raw inputs for a modality of {n} rows; expected one per row")
        self.cells = {m: np.asarray(list(v), dtype=object) for m, v in (cells or {}).items()}
        for m, v in self.cells.items():
            if m not in self.modalities or len(v) != n:
                raise DataError(f"cells[{m!r}]: {len(v)} cells for a modality of {n} rows; expected one per row")

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def batch(self, index: np.ndarray | Tensor) -> Batch:
        """The rows ``index`` as a :class:`Batch` (no per-sample Python work)."""
        index_t = torch.as_tensor(np.asarray(index), dtype=torch.long)
        present = {m: self.present[m][index_t] for m in self.modalities}
        inputs = {m: take_rows(self.inputs[m], index_t) for m in self.modalities if bool(present[m].any())}
        return Batch(inputs, present, self.target[index_t], index_t)

    def with_present(self, present: Mapping[str, Tensor | np.ndarray]) -> "MultiModalDataset":
        """The same data with another presence mask (shares the arrays)."""
        return MultiModalDataset(
            self.inputs, self.target, present,
            num_classes=self.num_classes, task=self.task, label_names=self.label_names, sources=self.sources,
            raw=self.raw, cells=self.cells,
        )

    def subset(self, rows: np.ndarray | Tensor) -> "MultiModalDataset":
        """A new dataset of the given rows (copies them)."""
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        return MultiModalDataset(
            {m: take_rows(self.inputs[m], rows_t) for m in self.modalities},
            self.target[rows_t],
            {m: self.present[m][rows_t] for m in self.modalities},
            num_classes=self.num_classes, task=self.task, label_names=self.label_names,
            sources={m: ids[rows_t.numpy()] for m, ids in self.sources.items()},
            raw={m: take_rows(x, rows_t) for m, x in self.raw.items()},
            cells={m: v[rows_t.numpy()] for m, v in self.cells.items()},
        )

    def select_modalities(self, modalities: Sequence[str]) -> "MultiModalDataset":
        return MultiModalDataset(
            {m: self.inputs[m] for m in modalities}, self.target,
            {m: self.present[m] for m in modalities},
            num_classes=self.num_classes, task=self.task, label_names=self.label_names,
            sources={m: ids for m, ids in self.sources.items() if m in modalities},
            raw={m: x for m, x in self.raw.items() if m in modalities},
            cells={m: v for m, v in self.cells.items() if m in modalities},
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}: {int(self.present[m].sum())}" for m in self.modalities)
        return f"MultiModalDataset({len(self)} rows, {self.task}, {self.num_classes} classes, present {{{counts}}})"


def _check_present(present, modalities: tuple[str, ...], n: int) -> dict[str, Tensor]:
    if present is None:
        return {m: torch.ones(n, dtype=torch.bool) for m in modalities}
    unknown = set(present) - set(modalities)
    if unknown:
        raise DataError(f"presence given for unknown modalities {sorted(unknown)}; inputs have {list(modalities)}")
    out = {}
    for m in modalities:
        p = present.get(m)
        p = torch.ones(n, dtype=torch.bool) if p is None else torch.as_tensor(np.asarray(p) if not isinstance(p, Tensor) else p)
        if p.dtype != torch.bool or p.shape != (n,):
            raise DataError(f"present[{m!r}] must be a bool vector of {n} rows, got {p.dtype} {tuple(p.shape)}")
        out[m] = p.cpu()
    return out


def _infer_num_classes(target: Tensor, task: str) -> int:
    if task == "multilabel":
        return int(target.shape[1])
    if target.numel() == 0:
        raise DataError("cannot infer num_classes from an empty target; pass num_classes")
    return int(target.max()) + 1


def _check_target(target: Tensor, task: str, num_classes: int) -> None:
    if num_classes < 2:
        raise DataError(f"num_classes must be at least 2, got {num_classes}")
    if task == "multiclass":
        if target.ndim != 1 or target.dtype.is_floating_point:
            raise DataError(f"a multi-class target must be an integer vector, got {target.dtype} {tuple(target.shape)}")
        bad = torch.nonzero((target < 0) | (target >= num_classes)).flatten()
        if bad.numel():
            raise DataError(
                f"target row {int(bad[0])} has label {int(target[bad[0]])}; expected 0..{num_classes - 1}"
            )
    else:
        if target.ndim != 2 or target.shape[1] != num_classes:
            raise DataError(f"a multi-label target must be N x {num_classes}, got {tuple(target.shape)}")
        if not bool(((target == 0) | (target == 1)).all()):
            raise DataError("a multi-label target must hold only 0 and 1")


def collate(samples: Sequence[Mapping[str, Any]]) -> Batch:
    """Collate per-sample dicts ``{"inputs": {m: x or None}, "target": y, "index": i}``.

    A modality that is ``None`` (or absent from ``inputs``) in a sample is missing there:
    its slot is zero-filled and ``present`` is False. For ``torch.utils.data.DataLoader``.
    """
    if not samples:
        raise DataError("cannot collate an empty list of samples")
    modalities = sorted({m for s in samples for m in s["inputs"]})
    inputs, present = {}, {}
    for m in modalities:
        values = [s["inputs"].get(m) for s in samples]
        present[m] = torch.tensor([v is not None for v in values], dtype=torch.bool)
        template = next((v for v in values if v is not None), None)
        if template is not None:
            inputs[m] = _stack([v if v is not None else _zeros_like(template) for v in values])
    targets = [s["target"] for s in samples]
    target = torch.stack([torch.as_tensor(t) for t in targets])
    index = torch.tensor([int(s.get("index", i)) for i, s in enumerate(samples)], dtype=torch.long)
    return Batch(inputs, present, target, index)


def _zeros_like(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _zeros_like(v) for k, v in x.items()}
    return torch.zeros_like(torch.as_tensor(x))


def _stack(values: list[Any]) -> Any:
    if isinstance(values[0], Mapping):
        return {k: _stack([v[k] for v in values]) for k in values[0]}
    return torch.stack([torch.as_tensor(v) for v in values])
