"""Protocols -> tidy records. Each test row is encoded once per model; every mask of every
protocol is then applied at the fusion (exact for late fusion and ensembles).

Beside the metric records, :func:`evaluate_method` keeps each row's decision (for the bootstrap
intervals of :mod:`mmrobust.evidence`) and, given a :class:`~mmrobust.calibration.Calibration`
fitted on validation (:func:`fit_calibration`), adds per presence pattern the calibration
metrics before and after temperature scaling and the conformal sets' coverage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .batch import MultiModalDataset
from .calibration import Calibration, calibration_metrics, reliability_bins, set_metrics
from .errors import DataError, InputError
from .evidence import uniform_presence
from .methods.base import check_finite
from .metrics import compute_metric, metric_names
from .protocols import ProtocolMask, get_protocol, sample_masks
from .records import sweep_areas


def selection_masks(data: MultiModalDataset, modalities: Sequence[str]) -> list[ProtocolMask]:
    """``full`` and each single modality missing: the masks that select fused models."""
    observed = {m: data.present[m] for m in modalities}
    return [mask for p in ["full", *[f"miss:{m}" for m in sorted(modalities)]] for mask in sample_masks(p, observed, 0)]


COVERAGE = 0.9  # the coverage the reports' conformal sets target


def _scored_proba(method, encoded: Any, data: MultiModalDataset, mask: ProtocolMask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, targets and row indices of the rows the mask scores and the method can
    score (it says which: a non-finite output on them is an error naming method, seed and condition)."""
    present = {m: torch.from_numpy(mask.present[m]) for m in method.modalities}
    rows = torch.from_numpy(mask.scored) & method.scorable(present)
    proba = method.proba_from_encoded(encoded, present)[rows]
    check_finite(proba, method, f"{mask.protocol}" + (f" rate {mask.rate}" if mask.rate is not None else "")
                 + (f" pattern {mask.pattern}" if mask.pattern else ""))
    index = np.flatnonzero(rows.numpy())
    return proba.numpy(), data.target.numpy()[index], index


def mask_scores(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metric: str, encoded: Any = None) -> list[float | None]:
    """The metric under each mask (``None`` where no row can be scored)."""
    encoded = method.encode(data.inputs, data.present) if encoded is None else encoded
    scores = []
    for mask in masks:
        proba, target, _ = _scored_proba(method, encoded, data, mask)
        scores.append(compute_metric(metric, target, proba) if len(target) else None)
    return scores


def selection_score(method, data: MultiModalDataset, encoded: Any = None) -> float:
    """Mean of the method's metric over ``full`` and each single modality missing (``encoded``:
    the rows already encoded by ``method.encode``, when the caller has them)."""
    scores = [s for s in mask_scores(method, data, selection_masks(data, method.modalities), method.metric, encoded)
              if s is not None]
    if not scores:
        raise DataError(f"no validation row can be scored for {method.name}")
    return float(np.mean(scores))


def evaluate(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metrics: Sequence[str] | None = None) -> list[dict]:
    """One record per (mask, metric): protocol, rate, pattern, metric, value, rows scored."""
    return evaluate_method(method, data, masks, metrics).records


@dataclass
class MethodEvaluation:
    """A method on the test split: its records, each row's decision per condition (not for the
    sweeps' many rates; with the presence every scored row shares, if any), and per pattern the
    reliability bins before and after calibration."""

    records: list[dict] = field(default_factory=list)
    decisions: dict[tuple, tuple] = field(default_factory=dict)  # (protocol, rate, pattern) -> (rows, decisions, presence)
    reliability: list[dict] = field(default_factory=list)


def evaluate_method(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metrics: Sequence[str] | None = None,
                    calibration: Calibration | None = None) -> MethodEvaluation:
    metrics = list(metrics or metric_names(data.task, data.num_classes))
    encoded = method.encode(data.inputs, data.present)
    out = MethodEvaluation()
    for mask in masks:
        proba, target, rows = _scored_proba(method, encoded, data, mask)
        record = {"protocol": mask.protocol, "rate": mask.rate, "pattern": mask.pattern,
                  "n_scored": int(len(target)), "n_rows": int(len(mask.scored))}
        out.records += [{**record, "metric": metric, "value": compute_metric(metric, target, proba) if len(target) else None}
                        for metric in metrics]
        if get_protocol(mask.protocol).kind != "sweep" and len(rows):
            out.decisions[(mask.protocol, mask.rate, mask.pattern)] = (rows, decisions(proba, data.task),
                                                                        uniform_presence(mask.present, rows))
        if calibration is not None and mask.pattern and len(target):
            values, bins = pattern_calibration(calibration, proba, target, mask.pattern)
            out.records += [{**record, "metric": metric, "value": value} for metric, value in values.items()]
            out.reliability += [{"pattern": mask.pattern, **b} for b in bins]
    out.records += sweep_areas(out.records)
    return out


def decisions(proba: np.ndarray, task: str) -> np.ndarray:
    """What the model answers per row: the label (multi-class), or the labels at 0.5 (multi-label)."""
    return (proba >= 0.5) if task == "multilabel" else proba.argmax(axis=1).astype(np.int32)


def pattern_calibration(calibration: Calibration, proba: np.ndarray, target: np.ndarray, pattern: str) -> tuple[dict, list[dict]]:
    """Under one presence pattern: ECE / NLL / Brier before and after temperature scaling, the
    temperature, and the conformal sets at :data:`COVERAGE` (per pattern and pattern-blind);
    ``None`` where the pattern has too few validation rows for the coverage."""
    patterns = [pattern] * len(target)
    calibrated = calibration.calibrate(proba, patterns)
    values = {**calibration_metrics(proba, target),
              **{f"{k}:calibrated": v for k, v in calibration_metrics(calibrated, target).items()},
              "temperature": calibration.temperature(pattern),  # 1.0 in mode none (no temperatures)
              "validation_rows": float(calibration.validation_rows(pattern))}
    blind = set_metrics(calibration.prediction_sets(proba, patterns, COVERAGE, mondrian=False), target)
    values.update({f"{k}@{COVERAGE:g}:blind": v for k, v in blind.items()})
    try:
        per_pattern = set_metrics(calibration.prediction_sets(proba, patterns, COVERAGE), target)
    except InputError:  # too few validation rows of this pattern: said so (n/a), not guessed
        per_pattern = dict.fromkeys(blind)
    values.update({f"{k}@{COVERAGE:g}": v for k, v in per_pattern.items()})
    bins = [{"calibrated": False, **reliability_bins(proba, target)}, {"calibrated": True, **reliability_bins(calibrated, target)}]
    return values, bins


def fit_calibration(method, val: MultiModalDataset, mode: str) -> Calibration | None:
    """Temperatures and conformal scores from the validation rows under every presence pattern
    (``subsets``: each pattern on the rows that have it); ``None`` for multi-label tasks."""
    if val.task == "multilabel":
        return None
    encoded = method.encode(val.inputs, val.present)
    parts = [(*_scored_proba(method, encoded, val, mask)[:2], mask.pattern)
             for mask in sample_masks("subsets", {m: val.present[m] for m in method.input_modalities}, 0)]
    parts = [p for p in parts if len(p[1])]
    if not parts:
        raise DataError(f"no validation row can be scored for {method.name}: nothing to calibrate on")
    return Calibration.fit(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                           np.concatenate([np.full(len(p[1]), p[2], dtype=object) for p in parts]), mode)
