"""UME-MMA (Li, Du et al. 2023), and per-pattern routing that includes the uni-modal models.

Both selections start from the same fitted parts: an ensemble of the Stage-1 models (the UME
role) and MMA, and they look only at validation rows.

- ``selection="paper"`` (``ume-mma-paper``): the paper's rule. UME or MMA for every input,
  whichever has the better selection score (mean validation metric over ``full`` and each single
  modality missing; a tie keeps UME).
- ``selection="per-pattern"`` (``ume-mma``, the default): for each presence pattern, the
  candidates are the uni-modal model of each present modality, the ensemble (weighted UME by
  default) and MMA, from simplest to most complex. On the validation rows under that pattern,
  a candidate is *within reach* when its score is at most one standard error below the best
  candidate's (the standard error of their paired difference, by bootstrap over the rows, or over
  groups of rows that share a source of a present modality; each candidate has its own). The
  paper's choice stands while it is within reach, unless a simpler candidate within reach scores
  at least as well; when it is out of reach, the simplest candidate within reach takes over. So noise never moves the choice, a tie goes to the simpler candidate, and a
  uni-modal model that is clearly better than every fusion answers alone. A uni-modal candidate
  is the ensemble with only its modality present, which is exactly that modality's Stage-1
  model. A pattern no validation row can take gets the paper's choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..batch import MultiModalDataset
from ..encoders import EncoderLike
from ..errors import ConfigError, ModelFileError
from ..evidence import SUPPORTED, source_weights, weighted_metric
from ..metrics import compute_metric
from ..protocols import ProtocolMask, nonempty_subsets, pattern_name, sample_masks
from ..records import candidate_order, reference_modality, reference_name
from ..runtime import derive_seed
from .base import Method
from .unimodal import Stage1, train_stage1

ROLES = ("ume", "mma")
SELECTIONS = ("per-pattern", "paper")
RESAMPLES = 200  # bootstrap resamples behind each validation standard error


class UmeMma(Method):
    """A composite: it takes its parts (``parts``: role -> method name, default ``ume-weighted``
    and ``mma``) fitted from the runner, never a copy of its own making, and saves each part with
    its name and its own parameters, so a reload rebuilds exactly the parts that were fitted.
    Used alone (no runner), it fits the registered parts with their defaults on the same Stage 1."""

    name = "ume-mma"
    needs_stage1 = True

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, selection: str = "per-pattern",
                 parts: Mapping[str, str] | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(encoders, num_classes, **kwargs)
        if selection not in SELECTIONS:
            raise ConfigError(f"ume-mma selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.parts = dict(parts or {"ume": "ume-weighted", "mma": "mma"})
        if sorted(self.parts) != sorted(ROLES):
            raise ConfigError(f"ume-mma parts must name a method for each of {ROLES}, got {self.parts}")
        self.name = name or self.name

    @property
    def part_names(self) -> list[str]:
        """The methods this composite is made of, for the runner to fit first."""
        return [self.parts[role] for role in ROLES]

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, *,
            stage1: Stage1 | None = None, fitted: Mapping[str, Method] | None = None,
            log_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None, **_: Any) -> "UmeMma":
        """Take the parts from ``fitted`` (the runner's), then choose on ``val``."""
        if val is None:
            raise ConfigError("ume-mma chooses among its candidates on validation data; pass val")
        fitted = dict(fitted or {})
        missing = [name for name in self.part_names if name not in fitted]
        if missing:  # used alone: fit the registered parts on one Stage 1
            if stage1 is None:
                stage1 = train_stage1(self.encoders, train, val, num_classes=self.num_classes, log_dir=log_dir,
                                      checkpoint_dir=checkpoint_dir, task=self.task, seed=self.seed,
                                      train_config=self.train_config, metric=self.metric)
            for name in missing:
                fitted[name] = self._create_part(name, {}).fit(train, val, stage1=stage1, log_dir=log_dir,
                                                                checkpoint_dir=checkpoint_dir)
        for role in ROLES:
            setattr(self, f"{role}_", fitted[self.parts[role]])
        self._choose(val)
        return self

    def _create_part(self, name: str, params: Mapping[str, Any]) -> Method:
        from . import create_method

        return create_method(name, encoders=self.encoders, num_classes=self.num_classes, task=self.task,
                             seed=self.seed, train_config=self.train_config, metric=self.metric, **params)

    # --- the choice, on validation rows only ------------------------------------------------
    def _choose(self, val: MultiModalDataset) -> None:
        from ..evaluation import selection_score

        self.val_scores_ = {role: getattr(self, f"{role}_").val_score_ for role in ROLES}
        self.selected_ = "mma" if self.val_scores_["mma"] > self.val_scores_["ume"] else "ume"
        encoded = self.encode(val.inputs, val.present)
        masks = sample_masks("subsets", {m: val.present[m] for m in self.modalities}, self.seed)
        self.pattern_scores_, self.pattern_se_, self.routing_ = {}, {}, {}
        for mask in masks:
            scores, se = self._pattern_evidence(mask, encoded, val)
            self.pattern_scores_[mask.pattern], self.pattern_se_[mask.pattern] = scores, se
            self.routing_[mask.pattern] = (simplest_within(scores, se, incumbent=self.selected_)
                                           if self.selection == "per-pattern" and scores else self.selected_)
        self.val_score_ = selection_score(self, val, encoded)  # the rows encoded once, above

    def _pattern_evidence(self, mask: ProtocolMask, encoded: Mapping[str, Any],
                          val: MultiModalDataset) -> tuple[dict[str, float], dict[str, float]]:
        """Each candidate's validation score under one pattern (simplest first), and the standard
        error of its gap to the best (resampling the sources of the modalities present)."""
        rows = np.flatnonzero(mask.scored)
        if not len(rows):
            return {}, {}
        present = {m: torch.from_numpy(mask.present[m]) for m in self.modalities}
        target = val.target.numpy()[rows]
        probas = {c: self._candidate_proba(c, encoded, present)[rows].numpy() for c in self._candidates(mask.pattern)}
        scores = {c: compute_metric(self.metric, target, p) for c, p in probas.items()}
        scores = {c: scores[c] for c in candidate_order(scores)}
        shared = {m: val.sources[m] for m in mask.pattern.split("+") if m in val.sources}
        _, weights, _ = source_weights(shared, len(val), RESAMPLES, derive_seed(self.seed, "routing"))
        return scores, paired_standard_errors(self.metric, self.task, probas, target, weights[:, rows], best_of(scores))

    def _candidates(self, pattern: str) -> list[str]:
        return [reference_name(m) for m in pattern.split("+")] + list(ROLES)

    def _candidate_proba(self, candidate: str, encoded: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        """A part's probabilities, or a uni-modal model's: the ensemble with only its modality present."""
        modality = reference_modality(candidate)
        if modality is None:
            return getattr(self, f"{candidate}_").proba_from_encoded(encoded[candidate], present)
        only = {m: present[m] & (m == modality) for m in self.modalities}
        return self.ume_.proba_from_encoded(encoded["ume"], only)

    # --- predictions --------------------------------------------------------------------------
    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> dict[str, Any]:
        return {role: getattr(self, f"{role}_").encode(inputs, present) for role in ROLES}

    def encode_replacing(self, encoded, modality, inputs, present):
        return {role: getattr(self, f"{role}_").encode_replacing(encoded[role], modality, inputs, present) for role in ROLES}

    def proba_from_encoded(self, encoded: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        """Each row answered by the candidate its presence pattern is routed to."""
        out = None
        for subset in nonempty_subsets(self.modalities):
            rows = _rows_with_pattern(present, subset, self.modalities)
            if not bool(rows.any()):
                continue
            proba = self._candidate_proba(self.routing_[pattern_name(subset)], encoded, present)
            out = torch.zeros_like(proba) if out is None else out
            out[rows] = proba[rows]
        if out is None:  # no row has any modality: nothing is scored
            out = self.ume_.proba_from_encoded(encoded["ume"], present)
        return out

    def routing_summary(self) -> dict[str, str]:
        """What each presence pattern uses: ``unimodal:<m>``, or the part's method name."""
        return {p: self.answered_by(p) for p in self.routing_}

    def answered_by(self, pattern: str) -> str:
        choice = self.routing_[pattern]
        return choice if reference_modality(choice) else self.parts[choice]

    # --- saving ---------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        return {f"{c}.{k}": v for c in ROLES for k, v in getattr(self, f"{c}_").state_tensors().items()}

    def state_meta(self) -> dict:
        parts = {c: {"method": self.parts[c], "params": getattr(self, f"{c}_").get_params(),
                     "state": getattr(self, f"{c}_").state_meta()} for c in ROLES}
        return {"parts": parts, "selection": self.selection, "selected": self.selected_, "val_scores": self.val_scores_,
                "val_score": self.val_score_, "pattern_scores": self.pattern_scores_, "pattern_se": self.pattern_se_,
                "routing": self.routing_}

    def restore(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> "UmeMma":
        """Each part rebuilt from its saved name and parameters, then its weights loaded."""
        if "selection" not in meta or "parts" not in meta:
            raise ModelFileError(f"{self.name}: saved by an earlier mmrobust (before per-pattern routing); train it again")
        for c in ROLES:
            saved = meta["parts"][c]
            if saved["method"] != self.parts[c]:
                raise ConfigError(f"{self.name}: the saved {c} part is {saved['method']!r}, this one expects {self.parts[c]!r}")
            prefix = f"{c}."
            weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            setattr(self, f"{c}_", self._create_part(saved["method"], saved["params"]).restore(weights, saved["state"]))
        self.selected_, self.val_scores_, self.val_score_ = meta["selected"], dict(meta["val_scores"]), meta["val_score"]
        self.pattern_scores_, self.pattern_se_ = dict(meta["pattern_scores"]), dict(meta["pattern_se"])
        self.routing_ = dict(meta["routing"])
        return self

    def fit_summary(self) -> dict:
        return {**super().fit_summary(), "parts": dict(self.parts), "selection": self.selection, "selected": self.selected_,
                "val_scores": self.val_scores_, "pattern_choice": self.routing_summary(),
                "pattern_scores": self.pattern_scores_, "pattern_se": self.pattern_se_}


def best_of(scores: Mapping[str, float]) -> str | None:
    """The candidate with the highest score (the simplest among equals)."""
    order = candidate_order(scores)
    return max(order, key=lambda c: (scores[c], -order.index(c))) if scores else None


def simplest_within(scores: Mapping[str, float], standard_errors: Mapping[str, float], incumbent: str | None = None) -> str:
    """The one-standard-error rule. A candidate is within reach when the best score minus its
    score is at most its own standard error (that of its paired difference with the best). The
    answer: with an ``incumbent`` (the paper's choice) within reach, the simplest candidate within
    reach that scores at least as well as the incumbent (often the incumbent itself); otherwise
    the simplest candidate within reach."""
    best = scores[best_of(scores)]
    within = [c for c in candidate_order(scores) if best - scores[c] <= standard_errors.get(c, 0.0)]
    if incumbent in within:
        return next(c for c in within if scores[c] >= scores[incumbent])
    return within[0]


def paired_standard_errors(metric: str, task: str, probas: Mapping[str, np.ndarray], target: np.ndarray,
                           weights: np.ndarray, best: str | None) -> dict[str, float]:
    """Per candidate, the bootstrap standard error of ``metric(best) - metric(candidate)`` (0 for
    the best itself, and for a metric the bootstrap does not cover)."""
    if best is None or metric not in SUPPORTED or not len(target):
        return {c: 0.0 for c in probas}
    decide = (lambda p: p >= 0.5) if task == "multilabel" else (lambda p: p.argmax(axis=1))
    spread = {c: weighted_metric(metric, decide(p), target, weights) for c, p in probas.items()}
    return {c: float(np.nanstd(spread[best] - spread[c])) for c in probas}


def _rows_with_pattern(present: Mapping[str, Tensor], subset: tuple[str, ...], modalities: list[str]) -> Tensor:
    rows = torch.ones(len(present[modalities[0]]), dtype=torch.bool)
    for m in modalities:
        rows &= present[m].bool().cpu() if m in subset else ~present[m].bool().cpu()
    return rows
