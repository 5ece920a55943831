"""Protocols -> tidy records. Each test row is encoded once per model and per set of inputs (the
clean ones, and each ``fail:`` or ``corrupt:`` condition's broken or degraded ones); every mask of every protocol is then
applied at the fusion (exact for late fusion and ensembles).

Given an input gate (:class:`Conditions`), every condition but the sweeps' is also scored with the inputs the
gate ignores treated as missing (``<metric>:gated``), with each input weighted by its plausibility
instead (``<metric>:soft``, :func:`soft_proba`), with the share of each modality's present rows it
ignored (``ignored:<m>``: false alarms on clean inputs, detections under ``fail:``), and a
``fail:`` or ``corrupt:`` condition with its modality declared missing (``<metric>:declared``); a
``corrupt:`` condition is also scored on the same rows with their inputs clean (``<metric>:clean``).

Beside the metric records, :func:`evaluate_method` keeps each row's decision (for the bootstrap
intervals of :mod:`mmrobust.evidence`) and, given a :class:`~mmrobust.calibration.Calibration`
fitted on validation (:func:`fit_calibration`), adds per presence pattern the calibration
metrics before and after temperature scaling and the conformal sets' coverage.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .batch import MultiModalDataset
from .calibration import Calibration, calibration_metrics, reliability_bins, set_metrics
from .errors import DataError, InputError
from .evidence import uniform_presence
from .methods.base import check_finite
from .metrics import compute_metric, metric_names
from .failures import Broken, InputRange, broken_inputs, is_corruption
from .gate import InputGate
from .protocols import ProtocolMask, get_protocol, sample_masks
from .records import sweep_areas


def selection_masks(data: MultiModalDataset, modalities: Sequence[str]) -> list[ProtocolMask]:
    """``full`` and each single modality missing: the masks that select fused models."""
    observed = {m: data.present[m] for m in modalities}
    return [mask for p in ["full", *[f"miss:{m}" for m in sorted(modalities)]] for mask in sample_masks(p, observed, 0)]


COVERAGE = 0.9  # the coverage the reports' conformal sets target


def _scored_proba(method, encoded: Any, data: MultiModalDataset, mask: ProtocolMask,
                  present: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, targets and row indices of the rows the mask scores and the method can
    score (it says which: a non-finite output on them is an error naming method, seed and condition).
    ``present``: another presence for the mask's rows (the gate's, or a failure declared)."""
    present = {m: torch.from_numpy((mask.present if present is None else present)[m]) for m in method.modalities}
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


class Conditions:
    """The test inputs each mask is scored on (broken under ``fail:``) and, with a gate, the
    gate's scores of them: computed once per seed for every method. The broken inputs are kept
    for every method while they fit in :data:`KEPT_BROKEN_BYTES` (the embedded digits' do);
    beyond that only the last set is kept and the next method builds its own again."""

    def __init__(self, data: MultiModalDataset, ranges: dict[str, InputRange] | None = None,
                 gate: InputGate | None = None, seed: int = 0, specs: dict[str, dict] | None = None) -> None:
        self.data, self.ranges, self.gate, self.seed, self.specs = data, ranges or {}, gate, seed, specs or {}
        self._key, self._broken, self._scores = (), Broken(data.inputs, data.raw), {}
        self._kept: dict[tuple, Broken] = {}
        self._kept_bytes = 0

    def inputs(self, mask: ProtocolMask) -> dict:
        """The inputs of ``mask``."""
        return self._of(mask).inputs

    def _of(self, mask: ProtocolMask) -> Broken:
        """The inputs and raw inputs of ``mask``."""
        key = (mask.protocol,) if mask.failure else ()
        if key != self._key:
            self._key = key
            if not mask.failure:
                self._broken = Broken(self.data.inputs, self.data.raw)
            elif key in self._kept:
                self._broken = self._kept[key]
            else:
                self._broken = broken_inputs(self.data.inputs, mask, self.ranges, self.seed, self.specs, self.data.raw,
                                             self.data.cells)
                m = mask.failure[0]  # the arrays the broken set adds
                size = _nbytes(self._broken.inputs[m]) + (_nbytes(self._broken.raw[m]) if m in self.data.raw else 0)
                if self._kept_bytes + size <= KEPT_BROKEN_BYTES:
                    self._kept[key], self._kept_bytes = self._broken, self._kept_bytes + size
        return self._broken

    def scores(self, mask: ProtocolMask) -> dict[str, np.ndarray]:
        """The gate's score of every observed input under ``mask``'s inputs (NaN where absent),
        kept for every set of inputs (the methods of a seed share them)."""
        if () not in self._scores:
            self._scores[()] = self.gate.scores(self.data.inputs, self._observed(self.gate.modalities), self.data.raw)
        broken = self._of(mask)
        if self._key not in self._scores:  # under fail:, only the broken modality is scored again
            failed = self.gate.scores(broken.inputs, self._observed([mask.failure[0]]), broken.raw)
            self._scores[self._key] = {**self._scores[()], **failed}
        return self._scores[self._key]

    def _observed(self, modalities) -> dict[str, np.ndarray]:
        return {m: self.data.present[m].numpy() for m in modalities if m in self.data.present}


KEPT_BROKEN_BYTES = 512 * 2**20  # broken test inputs kept across the methods of a seed


def _nbytes(x: Any) -> int:
    return int(getattr(x, "nbytes", 0))  # numpy arrays and torch tensors alike


def evaluate_method(method, data: MultiModalDataset, masks: Sequence[ProtocolMask], metrics: Sequence[str] | None = None,
                    calibration: Calibration | None = None, conditions: Conditions | None = None) -> MethodEvaluation:
    metrics = list(metrics or metric_names(data.task, data.num_classes))
    conditions = conditions or Conditions(data)
    out = MethodEvaluation()
    clean = method.encode(data.inputs, data.present)
    key, encoded = data.inputs, clean
    for mask in masks:
        inputs = conditions.inputs(mask)
        if inputs is not key:  # a fail: mask's inputs: only the broken modality is encoded again
            key, encoded = inputs, (method.encode_replacing(clean, mask.failure[0], inputs, data.present)
                                    if mask.failure else method.encode(inputs, data.present))
        proba, target, rows = _scored_proba(method, encoded, data, mask)
        record = {"protocol": mask.protocol, "rate": mask.rate, "pattern": mask.pattern,
                  "n_scored": int(len(target)), "n_rows": int(len(mask.scored))}
        out.records += [{**record, "metric": metric, "value": compute_metric(metric, target, proba) if len(target) else None}
                        for metric in metrics]
        if mask.failure is not None and is_corruption(mask.failure[1]):  # the same rows, their inputs clean
            clean_proba, clean_target, _ = _scored_proba(method, clean, data, mask)
            out.records += [{**record, "metric": f"{metric}:clean",
                             "value": compute_metric(metric, clean_target, clean_proba) if len(clean_target) else None}
                            for metric in metrics]
        if get_protocol(mask.protocol).kind != "sweep" and len(rows):
            out.decisions[(mask.protocol, mask.rate, mask.pattern)] = (rows, decisions(proba, data.task),
                                                                        uniform_presence(mask.present, rows))
        if calibration is not None and mask.pattern and len(target):
            values, bins = pattern_calibration(calibration, proba, target, mask.pattern)
            out.records += [{**record, "metric": metric, "value": value} for metric, value in values.items()]
            out.reliability += [{"pattern": mask.pattern, **b} for b in bins]
        if conditions.gate is not None and get_protocol(mask.protocol).kind != "sweep":  # a sweep's many rates: not gated
            out.records += [{**record, **r} for r in gated_records(method, encoded, data, mask, conditions, metrics)]
    out.records += sweep_areas(out.records)
    return out


def gated_records(method, encoded: Any, data: MultiModalDataset, mask: ProtocolMask, conditions: Conditions,
                  metrics: Sequence[str]) -> list[dict]:
    """Under ``mask``: the metrics with the gate (and, under ``fail:``, with the failure declared),
    and the share of each modality's present, scored rows the gate ignored."""
    scores = conditions.scores(mask)
    mods = [m for m in method.modalities if m in scores]
    ignored = conditions.gate.ignored({m: np.where(mask.present[m], scores[m], np.nan) for m in mods})
    gated = {m: mask.present[m] & ~ignored[m] if m in ignored else mask.present[m] for m in method.modalities}
    variants = {"gated": gated}
    if mask.failure is not None and mask.failure[0] in method.modalities:
        variants["declared"] = {**mask.present, mask.failure[0]: np.zeros_like(mask.present[mask.failure[0]])}
    records = []
    for name, present in variants.items():
        proba, target, _ = _scored_proba(method, encoded, data, mask, present)
        records += [{"metric": f"{metric}:{name}", "value": compute_metric(metric, target, proba) if len(target) else None,
                     "n_scored": int(len(target))} for metric in metrics]
    weights = conditions.gate.weights({m: np.where(mask.present[m], scores[m], np.nan) for m in mods})
    proba, target, _ = soft_proba(method, encoded, data, mask, weights, gated)
    records += [{"metric": f"{metric}:soft", "value": compute_metric(metric, target, proba) if len(target) else None,
                 "n_scored": int(len(target))} for metric in metrics]
    for m in mods:
        rows = mask.scored & mask.present[m]
        records.append({"metric": f"ignored:{m}", "value": float(ignored[m][rows].mean()) if rows.any() else None,
                        "n_scored": int(rows.sum())})
    return records


def soft_proba(method, encoded: Any, data: MultiModalDataset, mask: ProtocolMask, weights: Mapping[str, np.ndarray],
               gated: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The soft gate's answer on the rows ``gated`` can score: the mixture, over every subset of the
    gated modalities, of the method's probabilities with that subset present (and the modalities
    without a gate as they are), each subset weighted by the product of its inputs' weights and the
    others' complements (:meth:`InputGate.weights`). The weight of keeping nothing goes to the hard
    gate's answer (``gated``: the least implausible input stays). With weights of 0 or 1 it is the
    hard gate; with weights of 1 wherever an input is present, the ungated model."""
    soft = list(weights)
    hard = {m: torch.from_numpy(gated[m]) for m in method.modalities}
    rows = torch.from_numpy(mask.scored) & method.scorable(hard)
    mixed = 0.0
    for keep in itertools.product((False, True), repeat=len(soft)):
        share = np.ones(len(mask.scored))
        for m, k in zip(soft, keep):
            share = share * (weights[m] if k else 1.0 - weights[m])
        kept = dict(zip(soft, keep))
        present = hard if not any(keep) else {
            m: torch.from_numpy(mask.present[m] & kept[m] if m in kept else mask.present[m]) for m in method.modalities}
        proba = method.proba_from_encoded(encoded, present).numpy()
        mixed = mixed + share[:, None] * np.where(method.scorable(present).numpy()[:, None], proba, 0.0)
    index = np.flatnonzero(rows.numpy())
    return mixed[index], data.target.numpy()[index], index


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
