"""Baselines that learn from the Stage-1 models (or from the model itself) by distillation.

- ``umt``, Uni-Modal Teacher: Du, Teng, Hou, Ghamisi, Zhao, Zhao, "On Uni-Modal Feature
  Learning in Supervised Multi-Modal Learning", ICML 2023. A late-fusion student trained
  jointly from scratch; each student encoder's features are pulled towards the frozen
  Stage-1 encoder's: loss = task + s · Σ_m MSE(f_m^student, f_m^Stage-1) over the rows where m
  is present, s = 10.
- ``kd-unimodal``: logit distillation from the Stage-1 models into a multi-modal student, as in
  Wang, Zhang, Wang, Chen, Lu, "Multimodal Learning with Incomplete Modalities by Knowledge
  Distillation", KDD 2020: loss = task + α · Σ_m T² KL(p_T(Stage-1_m) ‖ p_T(student)) over the
  rows where m reaches the student, T = 2, α = 0.5. The student is trained from scratch, with
  modality dropout (choice: the comparison is about missing modalities; ``augment=False``
  gives the plain recipe).
- ``kd-full``: self-distillation across presence patterns, SMIL's distillation loss (Ma, Ren,
  Zhao, Testuggine, Peng, "SMIL: Multimodal Learning with Severely Missing Modality", AAAI
  2021): the model on the full row teaches the same model on its dropped-out copy,
  loss = (1 − α) · task + α · T² KL(p_T(full row) ‖ p_T(dropped row)), the teacher side without
  gradient; initialised from Stage 1 and trained with modality dropout (it needs dropped
  copies), T = 2, α = 0.5.

All are late-fusion models (any K ≥ 2, the fused methods' fusion and selection rule) and
select their checkpoint like every fused model.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import Tensor

from ..batch import Batch, encode_present
from ..encoders import EncoderLike
from ..models import UnimodalClassifier, distillation_loss, task_loss
from ..config import TrainConfig
from .fused import FusedMethod
from .unimodal import Stage1


def _frozen(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of a Stage-1 module that never trains (eval mode, no gradients)."""
    module = copy.deepcopy(module).to(device).eval()
    return module.requires_grad_(False)


class Stage1Teachers(FusedMethod):
    """A fused student taught by frozen copies of the Stage-1 models (or of a part of them)."""

    @property
    def needs_stage1(self) -> bool:  # type: ignore[override]
        return True

    def teacher(self, model: UnimodalClassifier) -> torch.nn.Module:
        """The part of a Stage-1 model that teaches."""
        raise NotImplementedError

    def start_training(self, stage1: Stage1 | None, config: TrainConfig) -> None:
        self.teachers_ = {m: _frozen(self.teacher(stage1.models[m]), self.device) for m in self.modalities}

    def end_training(self) -> None:
        del self.teachers_

    @torch.no_grad()
    def teacher_outputs(self, batch: Batch, present: Mapping[str, Tensor], host: Mapping[str, Tensor],
                        out_dim: int) -> dict[str, Tensor]:
        """Each teacher's output on the rows where its modality reaches the student (modalities absent
        from the whole batch left out)."""
        return {m: encode_present(self.teachers_[m], batch.inputs.get(m), present[m], out_dim, host[m])
                for m in self.modalities if bool(host[m].any())}


class UniModalTeacher(Stage1Teachers):
    """UMT: student encoders trained from scratch, their features pulled to Stage 1's."""

    name = "umt"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, feature_weight: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(encoders, num_classes, **kwargs)
        self.feature_weight = feature_weight

    def teacher(self, model: UnimodalClassifier) -> torch.nn.Module:
        return model.encoder

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        host, present, keep = self.step_presence(batch, epoch)
        features = self.model_.features(batch.inputs, present, host)
        logits = self.model_.fuse(self.model_.branch_outputs(features), present)
        loss = task_loss(logits.index_select(0, keep), batch.target.index_select(0, keep), self.task)
        return {"loss": loss + self.feature_weight * self.feature_loss(batch, features, present, host),
                "logits": logits, "rows": len(keep)}

    def feature_loss(self, batch: Batch, features: Mapping[str, Tensor], present: Mapping[str, Tensor],
                     host: Mapping[str, Tensor]) -> Tensor:
        """Σ_m mean squared distance between student and Stage-1 features, on m's present rows."""
        loss = features[self.modalities[0]].new_zeros(())
        dim = features[self.modalities[0]].shape[1]
        for m, teacher in self.teacher_outputs(batch, present, host, dim).items():
            rows = present[m]
            loss = loss + torch.nn.functional.mse_loss(features[m][rows], teacher[rows])
        return loss


class UnimodalDistillation(Stage1Teachers):
    """kd-unimodal: the fused student matches each present modality's Stage-1 logits (softened)."""

    name = "kd-unimodal"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, temperature: float = 2.0,
                 distill_weight: float = 0.5, **kwargs: Any) -> None:
        kwargs.setdefault("augment", True)
        super().__init__(encoders, num_classes, **kwargs)
        self.temperature, self.distill_weight = temperature, distill_weight

    def teacher(self, model: UnimodalClassifier) -> torch.nn.Module:
        return model

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        host, present, keep = self.step_presence(batch, epoch)
        logits = self.model_.fuse(self.model_.encode(batch.inputs, present, host), present)
        loss = task_loss(logits.index_select(0, keep), batch.target.index_select(0, keep), self.task)
        for m, teacher in self.teacher_outputs(batch, present, host, self.num_classes).items():
            rows = present[m]
            loss = loss + self.distill_weight * distillation_loss(logits[rows], teacher[rows], self.task, self.temperature)
        return {"loss": loss, "logits": logits, "rows": len(keep)}


class FullRowDistillation(FusedMethod):
    """kd-full: the model's prediction on the full row teaches its prediction on the dropped copy."""

    name = "kd-full"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, temperature: float = 2.0,
                 distill_weight: float = 0.5, **kwargs: Any) -> None:
        kwargs.setdefault("init", "unimodal")
        kwargs.setdefault("augment", True)
        super().__init__(encoders, num_classes, **kwargs)
        self.temperature, self.distill_weight = temperature, distill_weight

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        observed, device_observed = self.observed_presence(batch)
        host, present, keep = self.step_presence(batch, epoch)
        branches = self.model_.encode(batch.inputs, device_observed, observed)  # every observed modality, once
        logits = self.model_.fuse(branches, present)  # the dropped-out copy
        with torch.no_grad():
            full = self.model_.fuse(branches, device_observed)
        target = batch.target.index_select(0, keep)
        loss = (1 - self.distill_weight) * task_loss(logits.index_select(0, keep), target, self.task)
        loss = loss + self.distill_weight * distillation_loss(
            logits.index_select(0, keep), full.index_select(0, keep), self.task, self.temperature)
        return {"loss": loss, "logits": logits, "rows": len(keep)}
