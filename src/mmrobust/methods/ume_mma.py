"""UME-MMA: choose between the Uni-Modal Ensemble and MMA on validation (Li, Du et al. 2023).

Both are built from the same Stage-1 models and compared by the criterion every fused model
uses (mean validation metric over ``full`` and each single modality missing). With
``routing=True``, each presence pattern is instead routed to whichever of the two was better
on validation rows with that pattern.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..batch import MultiModalDataset
from ..encoders import EncoderLike
from ..errors import ConfigError, ModelFileError
from ..protocols import nonempty_subsets, pattern_name, sample_masks
from .base import Method
from .unimodal import Stage1, train_stage1

ROLES = ("ume", "mma")


class UmeMma(Method):
    """A composite: it takes its parts (``parts``: role -> method name, default the run's
    ``ume`` and ``mma``) fitted from the runner, never a copy of its own making, and saves
    each part with its name and its own parameters, so a reload rebuilds exactly the parts
    that were fitted (whatever options they had). Used alone (no runner), it fits the
    registered parts with their defaults on the same Stage 1."""

    name = "ume-mma"
    needs_stage1 = True

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, routing: bool = False,
                 parts: Mapping[str, str] | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(encoders, num_classes, **kwargs)
        self.routing = routing
        self.parts = dict(parts or {role: role for role in ROLES})
        if sorted(self.parts) != sorted(ROLES):
            raise ConfigError(f"ume-mma parts must name a method for each of {ROLES}, got {self.parts}")
        self.name = name or ("ume-mma-routed" if routing else "ume-mma")

    @property
    def part_names(self) -> list[str]:
        """The methods this composite is made of, for the runner to fit first."""
        return [self.parts[role] for role in ROLES]

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, *,
            stage1: Stage1 | None = None, fitted: Mapping[str, Method] | None = None,
            log_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None, **_: Any) -> "UmeMma":
        """Take UME and MMA from ``fitted`` (the runner's), then choose on ``val``."""
        if val is None:
            raise ConfigError("ume-mma chooses between UME and MMA on validation data; pass val")
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

    def _choose(self, val: MultiModalDataset) -> None:
        from ..evaluation import mask_scores

        components = {role: getattr(self, f"{role}_") for role in ROLES}
        self.val_scores_ = {c: method.val_score_ for c, method in components.items()}
        self.selected_ = "mma" if self.val_scores_["mma"] > self.val_scores_["ume"] else "ume"
        masks = sample_masks("subsets", {m: val.present[m] for m in self.modalities}, self.seed)
        per_pattern = {c: mask_scores(method, val, masks, self.metric) for c, method in components.items()}
        self.pattern_scores_ = {
            mask.pattern: {c: per_pattern[c][i] for c in ROLES} for i, mask in enumerate(masks)
        }
        self.routing_ = {p: _better(s, self.selected_) for p, s in self.pattern_scores_.items()}

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> dict[str, Any]:
        return {"ume": self.ume_.encode(inputs, present), "mma": self.mma_.encode(inputs, present)}

    def proba_from_encoded(self, encoded: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        probas = {c: getattr(self, f"{c}_").proba_from_encoded(encoded[c], present) for c in ROLES}
        if not self.routing:
            return probas[self.selected_]
        use_mma = torch.zeros(len(probas["ume"]), dtype=torch.bool)
        for subset in nonempty_subsets(self.modalities):
            if self.routing_[pattern_name(subset)] == "mma":
                use_mma |= _rows_with_pattern(present, subset, self.modalities)
        return torch.where(use_mma[:, None], probas["mma"], probas["ume"])

    def state_tensors(self) -> dict[str, Tensor]:
        return {f"{c}.{k}": v for c in ROLES for k, v in getattr(self, f"{c}_").state_tensors().items()}

    def state_meta(self) -> dict:
        parts = {c: {"method": self.parts[c], "params": getattr(self, f"{c}_").get_params(),
                     "state": getattr(self, f"{c}_").state_meta()} for c in ROLES}
        return {"parts": parts, "selected": self.selected_, "val_scores": self.val_scores_,
                "pattern_scores": self.pattern_scores_, "routing": self.routing_}

    def restore(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> "UmeMma":
        """Each part rebuilt from its saved name and parameters, then its weights loaded."""
        if "parts" not in meta:
            raise ModelFileError(f"{self.name}: saved by an earlier mmrobust that did not record its parts' "
                                 f"parameters; train it again")
        for c in ROLES:
            saved = meta["parts"][c]
            if saved["method"] != self.parts[c]:
                raise ConfigError(f"{self.name}: the saved {c} part is {saved['method']!r}, this one expects {self.parts[c]!r}")
            prefix = f"{c}."
            weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            setattr(self, f"{c}_", self._create_part(saved["method"], saved["params"]).restore(weights, saved["state"]))
        self.selected_, self.val_scores_ = meta["selected"], dict(meta["val_scores"])
        self.pattern_scores_, self.routing_ = dict(meta["pattern_scores"]), dict(meta["routing"])
        return self

    def fit_summary(self) -> dict:
        return {"parts": dict(self.parts), "selected": self.selected_, "val_scores": self.val_scores_, "routing": self.routing,
                "pattern_choice": self.routing_, "pattern_scores": self.pattern_scores_}


def _better(scores: Mapping[str, float | None], default: str) -> str:
    ume, mma = scores["ume"], scores["mma"]
    if ume is None or mma is None:  # no validation rows with this pattern
        return default
    return "mma" if mma > ume else "ume"


def _rows_with_pattern(present: Mapping[str, Tensor], subset: tuple[str, ...], modalities: list[str]) -> Tensor:
    rows = torch.ones(len(present[modalities[0]]), dtype=torch.bool)
    for m in modalities:
        rows &= present[m] if m in subset else ~present[m]
    return rows
