"""Stage 1: one model per modality, trained alone (Li, Du et al. 2023, arXiv 2310.06383).

Within one seed Stage 1 runs once; every method that needs uni-modal models gets copies
of the same ones. The uni-modal model of a modality is the *reference* for rows where only
that modality is present.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..batch import Batch, MultiModalDataset
from ..encoding import encode_rows
from ..encoders import EncoderLike, build_encoder, build_encoder_seeded
from ..errors import ConfigError
from ..files import file_name
from ..records import REFERENCE, reference_name
from ..models import UnimodalClassifier, proba_from_logits, task_loss
from ..runtime import derive_seed, encoder_seed, seeded
from ..train import stage_checkpoints, train_module
from .base import Method


class UnimodalMethod(Method):
    """The uni-modal model of one modality: its encoder and a linear head."""

    name = REFERENCE

    @property
    def registry_name(self) -> str:
        return REFERENCE

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, modality: str, **kwargs: Any) -> None:
        if modality not in encoders:
            raise ConfigError(f"unknown modality {modality!r}; encoders are given for {sorted(encoders)}")
        super().__init__({modality: encoders[modality]}, num_classes, **kwargs)
        self.modality = modality
        self.name = reference_name(modality)
        self.input_modalities = sorted(encoders)

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, *,
            stage1: "Stage1 | None" = None, log_dir: str | Path | None = None,
            checkpoint_dir: str | Path | None = None, **_: Any) -> "UnimodalMethod":
        """Train on the rows where the modality is present (or copy it from ``stage1``)."""
        if stage1 is not None:
            fitted = stage1.methods[self.modality]
            self.model_ = copy.deepcopy(fitted.model_)
            self.history_, self.val_score_ = fitted.history_, fitted.val_score_
            return self
        m = self.modality
        seed = derive_seed(self.seed, self.name)
        encoder = build_encoder_seeded(self.encoders[m], m, encoder_seed(self.seed, m))  # paired with the fused models'
        with seeded(seed):
            self.model_ = UnimodalClassifier(encoder, self.num_classes)
        rows = only_present(train, m)
        val_rows = only_present(val, m) if val is not None else None
        validate = (lambda: self.score(val_rows)) if val_rows is not None and len(val_rows) else None
        log_path = Path(log_dir) / file_name(self.name, ".jsonl") if log_dir else None
        self.history_ = train_module(self.model_, self.training_step, rows, self.train_config, seed=seed,
                                     validate=validate, log_path=log_path, desc=self.name,
                                     checkpoint_dir=stage_checkpoints(checkpoint_dir, self.name))
        self.val_score_ = validate() if validate else None
        return self

    def build_architecture(self) -> UnimodalClassifier:
        return UnimodalClassifier(build_encoder(self.encoders[self.modality], self.modality), self.num_classes)

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        logits = self.model_(batch.inputs[self.modality])
        return {"loss": task_loss(logits, batch.target, self.task), "logits": logits}

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        m = self.modality  # logits, zeros where absent (encode_rows leaves them so)
        return encode_rows(self.model_.eval(), inputs.get(m), present[m], self.num_classes,
                           self.train_config.eval_batch_size, self.device)

    def encode_replacing(self, encoded, modality, inputs, present):
        return self.encode(inputs, present) if modality == self.modality else encoded

    def proba_from_encoded(self, encoded: Tensor, present: Mapping[str, Tensor]) -> Tensor:
        return proba_from_logits(encoded, self.task)


def only_present(data: MultiModalDataset, modality: str) -> MultiModalDataset:
    """The rows of ``data`` where ``modality`` is present, with that modality alone."""
    alone = data.select_modalities([modality])
    if bool(data.present[modality].all()):
        return alone  # no copy (the arrays may be large memory maps)
    return alone.subset(torch.nonzero(data.present[modality]).flatten())


@dataclass
class Stage1:
    """The uni-modal models of one seed, fitted once and shared by every method."""

    seed: int
    methods: dict[str, UnimodalMethod] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, UnimodalClassifier]:
        return {m: method.model_ for m, method in self.methods.items()}


def train_stage1(
    encoders: Mapping[str, EncoderLike], train: MultiModalDataset, val: MultiModalDataset | None, *,
    num_classes: int, seed: int, log_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
    **kwargs: Any,
) -> Stage1:
    """Stage 1: a uni-modal model per modality, each trained on the rows where it is present."""
    stage1 = Stage1(seed)
    for m in sorted(encoders):
        method = UnimodalMethod(encoders, num_classes, modality=m, seed=seed, **kwargs)
        stage1.methods[m] = method.fit(train, val, log_dir=log_dir, checkpoint_dir=checkpoint_dir)
    return stage1
