"""Every row checked before any training starts: dtype, shape, finite values, labels in range,
at least one modality per row, unique ids.

Policy ``error`` (the default) stops at the first bad input with a message naming the split,
the row (and its id), the modality and what was expected, plus how many rows are bad in all.
Policy ``missing`` marks the bad modality of that row as missing (the methods are built for
exactly that), drops a row with nothing usable left, and counts both. Labels are never
guessed: a label out of range or of the wrong type is refused when the dataset is built
(:class:`~mmrobust.batch.MultiModalDataset`), under either policy.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from .batch import MultiModalDataset
from .config import BAD_INPUT_POLICIES
from .errors import ConfigError, DataError

CHUNK = 4096
SHOWN = 10  # bad inputs listed by name in reports


@dataclass
class BadInputs:
    """The bad-input policy of a run, and what was found under it: one object, made from the
    config and passed to the dataset loader (unreadable files) and to validation (values)."""

    policy: str = "error"
    marked_missing: list[dict] = field(default_factory=list)  # {"split", "line" (a manifest) or "row", "id", "modality", "reason"}
    dropped: list[dict] = field(default_factory=list)  # {"split", "line" or "row", "id", "reason"}

    def __post_init__(self) -> None:
        if self.policy not in BAD_INPUT_POLICIES:
            raise ConfigError(f"on_bad_input must be one of {BAD_INPUT_POLICIES}, got {self.policy!r}")

    def summary(self) -> dict:
        return {"policy": self.policy, "marked_missing": len(self.marked_missing), "dropped": len(self.dropped),
                "first": (self.marked_missing + self.dropped)[:SHOWN]}


def validate_splits(splits, bad: BadInputs | None = None, progress: bool | None = None):
    """Every split of a :class:`~mmrobust.data.Splits` validated under ``bad``'s policy (default
    ``error``), recording into it; returns (splits, bad). Pass the object the loader got, so
    ``info["bad_inputs"]`` counts what both found (unreadable files, then bad values)."""
    bad = bad if bad is not None else BadInputs()
    check_unique_ids(splits.ids)
    out, ids, lines = {}, dict(splits.ids), dict(splits.lines)
    for split in ("train", "val", "test"):
        out[split], keep = validate_dataset(getattr(splits, split), split, splits.ids.get(split), bad, progress,
                                            lines=splits.lines.get(split), source=splits.info.get("source"))
        for kept in (ids, lines):
            if split in kept:
                kept[split] = [v for v, k in zip(kept[split], keep.tolist()) if k]
    warn_about_coverage(out["train"], out["test"])
    return dataclasses.replace(splits, **out, ids=ids, lines=lines, info={**splits.info, "bad_inputs": bad.summary()}), bad


FEW_ROWS = 10  # a modality in fewer training rows than this cannot teach its model much


def warn_about_coverage(train: MultiModalDataset, test: MultiModalDataset) -> None:
    """Warnings (not errors: the run can go on) about what the model cannot learn: a label seen
    only in the test split, a modality present in only a handful of training rows."""
    if train.task != "multilabel":
        names = train.label_names or [str(c) for c in range(train.num_classes)]
        unseen = sorted(set(test.target.tolist()) - set(train.target.tolist()))
        if unseen:
            warnings.warn(f"labels {[names[c] for c in unseen][:5]} appear in the test split but never in training; "
                          f"no model can predict them", UserWarning, stacklevel=2)
    for m in train.modalities:
        count = int(train.present[m].sum())
        if count < FEW_ROWS:
            warnings.warn(f"modality {m!r} is present in only {count} training row(s); its model learns little "
                          f"from it", UserWarning, stacklevel=2)


def validate_dataset(data: MultiModalDataset, split: str, ids: list[str] | None = None,
                     bad: BadInputs | None = None, progress: bool | None = None, lines: list[int] | None = None,
                     source: str | None = None) -> tuple[MultiModalDataset, torch.Tensor]:
    """``data`` checked row by row; under policy ``missing`` the bad cells become missing and
    rows with nothing left are dropped (recorded in ``bad``). Returns the data and the kept rows.
    A row is named by its line in ``source`` when ``lines`` are given (a manifest), else by its
    index in the split."""
    bad = bad if bad is not None else BadInputs()
    rows = RowNames(split, ids, lines, source)
    policy = bad.policy
    present = {m: data.present[m].clone() for m in data.modalities}
    for m in data.modalities:
        _check_dtype(data.inputs[m], f"{split}/{m}")
        for row, reason in _bad_rows(data.inputs[m], data.present[m], f"{split}/{m}", progress):
            if policy == "error":
                count = sum(1 for _ in _bad_rows(data.inputs[m], data.present[m], "", False))
                raise DataError(f"{rows.where(row)}, {m}: {reason} ({count} bad row(s) in {split}/{m}); "
                                f"fix the data, or use --on-bad-input missing to treat them as missing")
            present[m][row] = False
            bad.marked_missing.append({**rows.record(row), "modality": m, "reason": reason})
    keep = torch.stack([present[m] for m in data.modalities]).any(0)
    empty = torch.nonzero(~keep).flatten().tolist()
    if empty and policy == "error":
        raise DataError(f"{rows.where(empty[0])}: every modality is missing ({len(empty)} such row(s))")
    for row in empty:
        bad.dropped.append({**rows.record(row), "reason": "nothing usable left"})
    data = data.with_present(present)
    return (data.subset(torch.nonzero(keep).flatten().numpy()) if empty else data), keep


@dataclass(frozen=True)
class RowNames:
    """How a split's rows are named: a manifest's line (and the file), else the index in the split."""
    split: str
    ids: list[str] | None
    lines: list[int] | None
    source: str | None

    def where(self, row: int) -> str:
        place = f"{self.source}, line {self.lines[row]}" if self.lines else f"{self.split} row {row}"
        return place + (f" (id {self.ids[row]!r})" if self.ids else "")

    def record(self, row: int) -> dict:
        place = {"line": self.lines[row]} if self.lines else {"row": row}
        return {"split": self.split, **place, "id": self.ids[row] if self.ids else None}


def _dtype(x: Any) -> np.dtype:
    return x.dtype if isinstance(x, np.ndarray) else torch.empty(0, dtype=x.dtype).numpy().dtype


def _check_dtype(x: Any, where: str) -> None:
    if not isinstance(x, Mapping) and _dtype(x).kind not in "fiub":
        raise DataError(f"{where}: expected numbers, got dtype {_dtype(x)}")


def _bad_rows(x: Any, present: torch.Tensor, desc: str, progress: bool | None):
    """(row, reason) for present rows holding a NaN or infinite value."""
    if isinstance(x, Mapping):
        return  # token dicts: built by the library's own tokeniser
    if _dtype(x).kind != "f":
        return  # integers and booleans are always finite
    starts = range(0, int(x.shape[0]), CHUNK)
    for start in tqdm(starts, desc=f"validate {desc}", unit="chunk", disable=True if progress is False else None, leave=False):
        chunk = np.asarray(x[start:start + CHUNK])
        finite = np.isfinite(chunk.reshape(len(chunk), -1)).all(1)
        for row in np.flatnonzero(~finite & present[start:start + CHUNK].numpy()):
            yield start + int(row), "holds NaN or infinite values"


def check_unique_ids(ids: Mapping[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for split, values in ids.items():
        for sample_id in values:
            if sample_id in seen:
                raise DataError(f"sample id {sample_id!r} appears twice ({seen[sample_id]} and {split})")
            seen[sample_id] = split
