"""``proxy``: absent modalities filled by features predicted from the present ones.

After CMPT / U2A (Reza, Prater-Bennette, Asif, "Robust Multimodal Learning via Cross-Modal
Proxy Tokens", TMLR 2025, arXiv 2501.17823; written from the paper's description). For each
modality j a small network (one hidden layer) predicts j's encoder feature from the features
of the other modalities, a learned token standing in for each of them that is absent too; the
prediction fills j's slot only where j is absent, and the fused model then sees every slot.
Generalised to any K ≥ 2 this way: each proxy reads all K − 1 other slots. Trained from
Stage 1 with modality dropout; on the rows where dropout removed j (so its true feature is
known) loss = task + λ · MSE(prediction_j, stop-gradient(feature_j)), λ = 0.2.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..encoders import EncoderLike
from ..models import LateFusionClassifier, task_loss
from ..runtime import derive_seed, seeded
from .fused import FusedMethod
from .unimodal import Stage1


class ProxyModel(nn.Module):
    """A late-fusion model whose absent slots hold features predicted from the present ones."""

    def __init__(self, late: LateFusionClassifier, hidden: int) -> None:
        super().__init__()
        self.late, self.modalities = late, late.modalities
        dims = {m: late.branches[m].encoder.out_dim for m in self.modalities}
        self.tokens = nn.ParameterDict({m: nn.Parameter(torch.zeros(dims[m])) for m in self.modalities})
        self.proxies = nn.ModuleDict({
            j: nn.Sequential(nn.Linear(sum(dims[m] for m in self.modalities if m != j), hidden), nn.ReLU(),
                             nn.Linear(hidden, dims[j]))
            for j in self.modalities})

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor],
               host_present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Encoder features of the present rows (what evaluation computes once per row)."""
        return self.late.features(inputs, present, host_present)

    def predict_features(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's feature as its proxy predicts it from the other slots (a token where absent)."""
        sources = {m: torch.where(present[m][:, None], features[m], self.tokens[m].to(features[m].dtype).expand_as(features[m]))
                   for m in self.modalities}
        return {j: self.proxies[j](torch.cat([sources[m] for m in self.modalities if m != j], dim=1))
                for j in self.modalities}

    def fill(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The features with every absent slot replaced by its prediction (present slots untouched)."""
        predicted = self.predict_features(features, present)
        return {m: torch.where(present[m][:, None], features[m], predicted[m]) for m in self.modalities}

    def fuse(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        filled = self.fill(features, present)
        every_slot = {m: torch.ones_like(present[m]) for m in self.modalities}
        return self.late.fuse(self.late.branch_outputs(filled), every_slot)

    def forward(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        return self.fuse(self.encode(inputs, present), present)


class ProxyMethod(FusedMethod):
    """Late fusion from Stage 1 whose absent slots are filled by cross-modal proxies."""

    name = "proxy"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, proxy_weight: float = 0.2,
                 proxy_hidden: int = 128, **kwargs: Any) -> None:
        kwargs.setdefault("init", "unimodal")
        kwargs.setdefault("augment", True)
        super().__init__(encoders, num_classes, **kwargs)
        self.proxy_weight, self.proxy_hidden = proxy_weight, proxy_hidden

    def build_model(self, stage1: Stage1 | None) -> ProxyModel:  # type: ignore[override]
        late = super().build_model(stage1)
        with seeded(derive_seed(self.seed, self.name, "proxies")):
            return ProxyModel(late, self.proxy_hidden)

    def build_architecture(self) -> ProxyModel:  # type: ignore[override]
        return ProxyModel(super().build_architecture(), self.proxy_hidden)

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        observed, device_observed = self.observed_presence(batch)
        host, present, keep = self.step_presence(batch, epoch)
        features = self.model_.encode(batch.inputs, device_observed, observed)
        predicted = self.model_.predict_features(features, present)
        logits = self.model_.fuse(features, present)
        loss = task_loss(logits.index_select(0, keep), batch.target.index_select(0, keep), self.task)
        for m in self.modalities:
            dropped = batch.present[m] & ~present[m]  # the true feature is known: the proxy learns it
            if bool((observed[m] & ~host[m]).any()):
                loss = loss + self.proxy_weight * nn.functional.mse_loss(predicted[m][dropped], features[m][dropped].detach())
        return {"loss": loss, "logits": logits, "rows": len(keep)}
