"""Late-fusion methods: UME, MMA and the fused baselines of method.md.

Li, Du, Zhao, Huang, Zhao, "What Makes for Robust Multi-Modal Models in the Face of Missing
Modalities?", arXiv 2310.06383 (2023); Du et al., ICML 2023 (the Uni-Modal Ensemble).

One class covers the whole table of method.md, by two switches:

============================  ============  ====================
method                        init          missing augmentation
============================  ============  ====================
``late-fusion``               scratch       no
``late-fusion-dropout``       scratch       yes
``late-fusion-unimodal-init`` uni-modal     no
``mma``                       uni-modal     yes
``ume``                       uni-modal     (not trained)
============================  ============  ====================

Models initialised from Stage 1 are fine-tuned at ``finetune_lr_scale`` x the Stage-1
learning rate for ``finetune_epoch_fraction`` of its epochs. Every fused model selects its
checkpoint on the mean validation metric over ``full`` and each single modality missing.

Comparisons are paired (common random numbers): every method of a run seed sees the same batch
order and the same modality-dropout draws; a model trained from scratch starts from the same
encoder weights as the uni-modal models (:func:`mmrobust.runtime.encoder_seed`) and from the same
head weights as any other fused model of its architecture. So a per-seed difference between two
methods is the methods', not their initial draws'.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from ..batch import Batch, MultiModalDataset, to_device
from ..encoding import encode_rows
from ..encoders import EncoderLike, build_encoder, build_encoder_seeded
from ..errors import ConfigError
from ..files import file_name
from ..masking import sample_modality_dropout
from ..protocols import sample_masks
from ..models import LateFusionClassifier, proba_from_logits, task_loss
from ..registry import FUSIONS
from ..runtime import derive_seed, encoder_seed, seeded
from ..config import TrainConfig
from ..train import stage_checkpoints, train_module
from .base import Method
from .unimodal import Stage1, train_stage1

INITS = ("scratch", "unimodal")


class FusedMethod(Method):
    """A late-fusion model, trained from scratch or from Stage 1, with or without MMA."""

    name = "late-fusion"

    def __init__(
        self,
        encoders: Mapping[str, EncoderLike],
        num_classes: int,
        *,
        init: str = "scratch",
        augment: bool = False,
        fusion: str = "mean",
        fusion_options: Mapping[str, Any] | None = None,
        p_drop: float = 0.5,
        unimodal_loss_weight: float = 0.0,
        finetune_lr_scale: float = 0.1,
        finetune_epoch_fraction: float = 0.5,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(encoders, num_classes, **kwargs)
        if init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {init!r}")
        if not FUSIONS.get(fusion).heads and unimodal_loss_weight:
            raise ConfigError(f"unimodal_loss_weight needs a fusion with per-modality heads, such as 'mean' ({fusion!r} has none)")
        if len(self.encoders) < 2:
            raise ConfigError(f"a fused method needs at least two modalities, got {self.modalities}")
        if not 0.0 <= p_drop < 1.0:
            raise ConfigError(f"p_drop must be a probability in [0, 1), got {p_drop!r}")
        self.init, self.augment, self.fusion = init, augment, fusion
        self.fusion_options, self.p_drop = dict(fusion_options or {}), p_drop
        self.unimodal_loss_weight = unimodal_loss_weight
        self.finetune_lr_scale, self.finetune_epoch_fraction = finetune_lr_scale, finetune_epoch_fraction
        self.name = name or self.name

    @property
    def needs_stage1(self) -> bool:  # type: ignore[override]
        return self.init == "unimodal"

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, *,
            stage1: Stage1 | None = None, log_dir: str | Path | None = None,
            checkpoint_dir: str | Path | None = None, **_: Any) -> "FusedMethod":
        stage1 = self._stage1(stage1, train, val, log_dir, checkpoint_dir)
        self.model_ = self.build_model(stage1 if self.init == "unimodal" else None).to(self.device)
        self.weight_fit_ = self._fit_weights(val) if self.fusion == "weighted" and self.init == "unimodal" else None
        config = self.train_config.scaled(self.finetune_lr_scale, self.finetune_epoch_fraction) \
            if self.init == "unimodal" else self.train_config
        self.start_training(stage1, config)
        validate = (lambda: self.selection_score(val)) if val is not None else None
        log_path = Path(log_dir) / file_name(self.name, ".jsonl") if log_dir else None
        self.history_ = train_module(self.model_, self.training_step, train, config,
                                     seed=derive_seed(self.seed, "train"),  # one batch order per seed (paired)
                                     validate=validate, log_path=log_path, desc=self.name,
                                     checkpoint_dir=stage_checkpoints(checkpoint_dir, self.name))
        self.end_training()
        self.val_score_ = validate() if validate else None
        return self

    def _fit_weights(self, val: MultiModalDataset | None) -> dict:
        """The weighted fusion's weights, fitted on the validation rows under every presence
        pattern of two or more modalities (each observed row once per pattern it can take): the
        weighted UME, and the step-0 model of a fused model initialised from Stage 1."""
        fusion = self.model_.fusion
        if val is None:
            return {"rows": 0, "fallback": "no validation data", "weights": fusion.weight_map()}
        encoded = self.encode(val.inputs, val.present)
        masks = [mask for mask in sample_masks("subsets", {m: val.present[m] for m in self.modalities}, self.seed)
                 if "+" in mask.pattern]
        rows = [torch.from_numpy(np.flatnonzero(mask.scored)) for mask in masks]
        branches = {m: torch.cat([encoded[m][r] for r in rows]) if rows else encoded[m][:0] for m in self.modalities}
        present = {m: torch.cat([torch.from_numpy(mask.present[m])[r] for mask, r in zip(masks, rows)])
                   if rows else torch.zeros(0, dtype=torch.bool) for m in self.modalities}
        target = torch.cat([val.target[r] for r in rows]) if rows else val.target[:0]
        with torch.no_grad():
            fit = fusion.fit_weights(branches, present, target)
        return {**fit, "weights": fusion.weight_map()}

    def state_meta(self) -> dict:
        return {**super().state_meta(), "weight_fit": getattr(self, "weight_fit_", None)}

    def restore(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> "FusedMethod":
        super().restore(tensors, meta)
        self.weight_fit_ = meta.get("weight_fit")
        return self

    def fit_summary(self) -> dict:
        summary = super().fit_summary()
        return {**summary, "weight_fit": self.weight_fit_} if getattr(self, "weight_fit_", None) else summary

    def start_training(self, stage1: Stage1 | None, config: TrainConfig) -> None:
        """Called before the loop (a subclass keeps teachers from Stage 1, registers hooks)."""

    def end_training(self) -> None:
        """Called after the loop (a subclass drops what only training needed)."""

    def _stage1(self, stage1, train, val, log_dir, checkpoint_dir=None) -> Stage1 | None:
        if not self.needs_stage1:
            return None
        if stage1 is None:  # standalone use: train this seed's Stage 1 here
            return train_stage1(self.encoders, train, val, num_classes=self.num_classes, seed=self.seed,
                                task=self.task, train_config=self.train_config, metric=self.metric, log_dir=log_dir,
                                checkpoint_dir=checkpoint_dir)
        missing = set(self.modalities) - set(stage1.methods)
        if missing or stage1.seed != self.seed:
            raise ConfigError(f"Stage 1 of seed {stage1.seed} with {sorted(stage1.methods)} does not fit "
                             f"{self.name} of seed {self.seed} with {self.modalities}")
        return stage1

    def _model_options(self) -> dict:
        return dict(fusion=self.fusion, task=self.task, fusion_options=self.fusion_options)

    def build_model(self, stage1: Stage1 | None) -> LateFusionClassifier:
        """The model at step 0: copied from Stage 1 (``init="unimodal"``) or built fresh."""
        if stage1 is not None:
            return LateFusionClassifier.from_unimodal(
                {m: stage1.models[m] for m in self.modalities}, self.num_classes, **self._model_options())
        encoders = {m: build_encoder_seeded(self.encoders[m], m, encoder_seed(self.seed, m)) for m in self.modalities}
        with seeded(derive_seed(self.seed, "heads")):
            return LateFusionClassifier(encoders, self.num_classes, **self._model_options())

    def build_architecture(self) -> LateFusionClassifier:
        encoders = {m: build_encoder(self.encoders[m], m) for m in self.modalities}
        return LateFusionClassifier(encoders, self.num_classes, **self._model_options())

    def observed_presence(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The batch's own presence (before modality dropout), on the host and on the device."""
        return batch.host_present or batch.present, {m: batch.present[m] for m in self.modalities}

    def step_presence(self, batch: Batch, epoch: int) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """The presence a training step uses (after modality dropout when ``augment``), on the
        host and on the device, and the index (on the device) of the rows left with a modality."""
        host = self.observed_presence(batch)[0]  # decided on the host: no wait for the GPU
        if self.augment:
            host = sample_modality_dropout(host, batch.index, seed=self.seed, epoch=epoch, p_drop=self.p_drop, device="cpu")
        device = batch.present[self.modalities[0]].device
        present = {m: to_device(host[m], device) for m in self.modalities}
        rows = torch.stack([host[m] for m in self.modalities]).any(dim=0)
        return host, present, to_device(torch.nonzero(rows).flatten(), device)

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        host, present, keep = self.step_presence(batch, epoch)
        branches = self.model_.encode(batch.inputs, present, host)
        logits = self.model_.fuse(branches, present)
        loss = task_loss(logits.index_select(0, keep), batch.target.index_select(0, keep), self.task)
        if self.unimodal_loss_weight:
            for m in self.modalities:
                if bool(present[m].any()):
                    loss = loss + self.unimodal_loss_weight * task_loss(
                        branches[m][present[m]], batch.target[present[m]], self.task)
        return {"loss": loss, "logits": logits, "rows": len(keep)}

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each branch's outputs on its present rows (shared with any method whose module for that
        modality has the same weights, within :func:`~mmrobust.encoding.shared_encodings`)."""
        modules = self.model_.eval().row_modules()  # what the model's own encode runs, per modality
        return {m: encode_rows(modules[m], inputs.get(m), present[m], modules[m].out_dim,
                               self.train_config.eval_batch_size, self.device) for m in self.modalities}

    def encode_replacing(self, encoded, modality, inputs, present):  # each branch encodes its own modality alone
        if modality not in self.modalities:
            return encoded
        alone = {m: present[m] if m == modality else torch.zeros_like(present[m]) for m in self.modalities}
        return {**encoded, modality: self.encode(inputs, alone)[modality]}

    @torch.no_grad()
    def proba_from_encoded(self, encoded: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        device, size = self.device, self.train_config.eval_batch_size * 16
        n = len(present[self.modalities[0]])
        out = []
        for start in range(0, n, size):
            part = slice(start, start + size)
            chunk_present = {m: present[m][part].to(device) for m in self.modalities}
            logits = self.model_.fuse({m: encoded[m][part].to(device) for m in self.modalities}, chunk_present)
            out.append(proba_from_logits(logits.float(), self.task).cpu())
        return torch.cat(out)

    def selection_score(self, val: MultiModalDataset) -> float:
        """Mean validation metric over ``full`` and each single modality missing (method.md)."""
        from ..evaluation import selection_score

        return selection_score(self, val)


class UME(FusedMethod):
    """Uni-Modal Ensemble: the mean over present modalities of the Stage-1 logits (not trained).

    ``fusion`` may name another training-free fusion with per-modality heads (``entropy``:
    ``ume-entropy``; ``weighted``: ``ume-weighted``, one weight per modality fitted on validation
    negative log-likelihood); ``average`` is the mean fusion's option (logits or probabilities)."""

    name = "ume"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, fusion: str = "mean",
                 average: str = "logits", name: str | None = None, **kwargs: Any) -> None:
        if not FUSIONS.get(fusion).heads:
            raise ConfigError(f"an ensemble of Stage-1 models needs a fusion with per-modality heads, not {fusion!r}")
        kwargs.update(init="unimodal", augment=False, fusion_options={"average": average} if fusion == "mean" else {})
        super().__init__(encoders, num_classes, fusion=fusion, name=name, **kwargs)
        self.average = average

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, *,
            stage1: Stage1 | None = None, log_dir: str | Path | None = None,
            checkpoint_dir: str | Path | None = None, **_: Any) -> "UME":
        self.model_ = self.build_model(self._stage1(stage1, train, val, log_dir, checkpoint_dir)).to(self.device).eval()
        self.history_ = []
        self.weight_fit_ = self._fit_weights(val) if self.fusion == "weighted" else None
        self.val_score_ = self.selection_score(val) if val is not None else None
        return self
