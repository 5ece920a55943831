"""Protocols -> tidy records. Each test row is encoded once per model; every mask of every
protocol is then applied at the fusion (exact for late fusion and ensembles)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .batch import MultiModalDataset
from .errors import DataError
from .methods.base import check_finite
from .metrics import compute_metric, metric_names
from .protocols import ProtocolMask, sample_masks
from .records import sweep_areas


def selection_masks(data: MultiModalDataset, modalities: Sequence[str]) -> list[ProtocolMask]:
    """``full`` and each single modality missing: the masks that select fused models."""
    observed = {m: data.present[m] for m in modalities}
    return [mask for p in ["full", *[f"miss:{m}" for m in sorted(modalities)]] for mask in sample_masks(p, observed, 0)]


def _scored_proba(method, encoded: Any, data: MultiModalDataset, mask: ProtocolMask) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and targets of the rows the mask scores and the method can score (it says
    which: a non-finite output on them is an error naming method, seed and condition)."""
    present = {m: torch.from_numpy(mask.present[m]) for m in method.modalities}
    rows = torch.from_numpy(mask.scored) & method.scorable(present)
    proba = method.proba_from_encoded(encoded, present)[rows]
    check_finite(proba, method, f"{mask.protocol}" + (f" rate {mask.rate}" if mask.rate is not None else "")
                 + (f" pattern {mask.pattern}" if mask.pattern else ""))
    return proba.numpy(), data.target.numpy()[rows.numpy()]


def mask_scores(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metric: str, encoded: Any = None) -> list[float | None]:
    """The metric under each mask (``None`` where no row can be scored)."""
    encoded = method.encode(data.inputs, data.present) if encoded is None else encoded
    scores = []
    for mask in masks:
        proba, target = _scored_proba(method, encoded, data, mask)
        scores.append(compute_metric(metric, target, proba) if len(target) else None)
    return scores


def selection_score(method, data: MultiModalDataset) -> float:
    """Mean of the method's metric over ``full`` and each single modality missing."""
    scores = [s for s in mask_scores(method, data, selection_masks(data, method.modalities), method.metric) if s is not None]
    if not scores:
        raise DataError(f"no validation row can be scored for {method.name}")
    return float(np.mean(scores))


def evaluate(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metrics: Sequence[str] | None = None) -> list[dict]:
    """One record per (mask, metric): protocol, rate, pattern, metric, value, rows scored."""
    metrics = list(metrics or metric_names(data.task, data.num_classes))
    encoded = method.encode(data.inputs, data.present)
    records = []
    for mask in masks:
        proba, target = _scored_proba(method, encoded, data, mask)
        for metric in metrics:
            value = compute_metric(metric, target, proba) if len(target) else None
            records.append({"protocol": mask.protocol, "rate": mask.rate, "pattern": mask.pattern, "metric": metric,
                            "value": value, "n_scored": int(len(target)), "n_rows": int(len(mask.scored))})
    return records + sweep_areas(records)
