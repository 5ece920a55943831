"""``proxy``: absent modalities filled by features predicted from the present ones.

After CMPT / U2A (Reza, Prater-Bennette, Asif, "Robust Multimodal Learning via Cross-Modal
Proxy Tokens", TMLR 2025, arXiv 2501.17823; written from the paper's description). For each
modality j a small network (one hidden layer) predicts j's encoder feature from the features
of the other modalities, a learned token standing in for each of them that is absent too; the
prediction fills j's slot only where j is absent, and the fused model then sees every slot.
Generalised to any K ≥ 2 this way: each proxy reads all K − 1 other slots. Trained from
Stage 1 with modality dropout; on the rows where dropout removed j (so its true feature is
known) loss = task + λ · MSE(prediction_j, stop-gradient(feature_j)), λ = 0.2.

The proxies start random, and the joint fine-tuning runs at a tenth of the Stage-1 learning rate
for half its epochs: too little to learn them (their validation error stayed near that of
predicting the mean feature). So they are first **warmed up** on the frozen Stage-1 features of
the training rows with every modality: Adam at the Stage-1 learning rate, batches of
:data:`WARMUP_BATCH`, until the validation error has not improved for :data:`WARMUP_PATIENCE`
epochs (at most ``proxy_warmup_epochs``, 0 to skip; the best epoch is kept). The error is the
*normalised* one: mean squared error over the variance of the true feature (1 = no better than
the mean feature); the fit records it after the warm-up and after the fine-tuning
(``proxy_error`` in ``fits.json``).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..batch import Batch, MultiModalDataset
from ..config import TrainConfig
from ..encoders import EncoderLike
from ..errors import ConfigError
from ..models import LateFusionClassifier, task_loss
from ..runtime import derive_seed, seeded
from .fused import FusedMethod
from .unimodal import Stage1

WARMUP_BATCH = 256
WARMUP_PATIENCE = 3  # epochs without a better validation error before the warm-up stops


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

    def row_modules(self) -> dict[str, nn.Module]:
        """What :meth:`encode` runs on each modality's present rows: its encoder."""
        return {m: self.late.branches[m].encoder for m in self.modalities}

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
                 proxy_hidden: int = 128, proxy_warmup_epochs: int = 50, **kwargs: Any) -> None:
        kwargs.setdefault("init", "unimodal")
        kwargs.setdefault("augment", True)
        super().__init__(encoders, num_classes, **kwargs)
        if int(proxy_warmup_epochs) < 0:
            raise ConfigError(f"proxy_warmup_epochs must be 0 or more, got {proxy_warmup_epochs!r}")
        self.proxy_weight, self.proxy_hidden, self.proxy_warmup_epochs = proxy_weight, proxy_hidden, int(proxy_warmup_epochs)

    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, **context: Any) -> "ProxyMethod":
        self._splits = (train, val)
        try:
            super().fit(train, val, **context)
        finally:
            del self._splits
        if val is not None:
            self.proxy_fit_["final"] = self.proxy_error(val)
        return self

    def start_training(self, stage1: Stage1 | None, config: TrainConfig) -> None:
        train, val = getattr(self, "_splits", (None, None))  # a training step driven by hand has no splits
        self.proxy_fit_ = {"warmup_epochs": 0}
        if self.proxy_warmup_epochs and val is not None:
            self.proxy_fit_ = self.warm_up(train, val)

    def warm_up(self, train: MultiModalDataset, val: MultiModalDataset) -> dict:
        """Train the proxies on frozen features (see the module's docstring); what it reached."""
        sources = {name: self._full_rows_features(split) for name, split in (("train", train), ("val", val))}
        if not len(sources["train"][self.modalities[0]]) or not len(sources["val"][self.modalities[0]]):
            return {"warmup_epochs": 0, "skipped": "no rows with every modality"}
        parameters = list(self.model_.proxies.parameters())
        optimiser = torch.optim.Adam(parameters, lr=self.train_config.lr)
        start = self._normalised_error(sources["val"])
        best, best_state, epochs, stale = start, copy.deepcopy(self.model_.proxies.state_dict()), 0, 0
        n = len(sources["train"][self.modalities[0]])
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "proxy-warmup"))
        every = {m: torch.ones(n, dtype=torch.bool) for m in self.modalities}
        for epoch in range(self.proxy_warmup_epochs):
            self.model_.proxies.train()
            for rows in torch.randperm(n, generator=generator).split(WARMUP_BATCH):
                features = {m: f[rows].to(self.device) for m, f in sources["train"].items()}
                predicted = self.model_.predict_features(features, {m: p[rows].to(self.device) for m, p in every.items()})
                loss = sum(nn.functional.mse_loss(predicted[m], features[m]) for m in self.modalities)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            error = self._normalised_error(sources["val"])
            epochs = epoch + 1
            if np.mean(list(error.values())) < np.mean(list(best.values())):
                best, best_state, stale = error, copy.deepcopy(self.model_.proxies.state_dict()), 0
            else:
                stale += 1
                if stale >= WARMUP_PATIENCE:
                    break
        self.model_.proxies.load_state_dict(best_state)
        return {"warmup_epochs": epochs, "before_warmup": start, "after_warmup": best}

    def proxy_error(self, data: MultiModalDataset) -> dict[str, float]:
        """Per modality, the proxies' normalised validation error on the rows with every modality."""
        return self._normalised_error(self._full_rows_features(data))

    def _full_rows_features(self, data: MultiModalDataset) -> dict[str, Tensor]:
        rows = torch.stack([data.present[m] for m in self.modalities]).all(dim=0)
        with torch.no_grad():
            features = self.encode(data.inputs, data.present)
        return {m: f[rows] for m, f in features.items()}

    @torch.no_grad()
    def _normalised_error(self, features: Mapping[str, Tensor]) -> dict[str, float]:
        """Each proxy's mean squared error over the variance of its true feature (1: the mean feature)."""
        self.model_.proxies.eval()
        every = {m: torch.ones(len(f), dtype=torch.bool, device=self.device) for m, f in features.items()}
        on_device = {m: f.to(self.device) for m, f in features.items()}
        predicted = self.model_.predict_features(on_device, every)
        out = {}
        for m in self.modalities:
            truth = on_device[m]
            spread = float(((truth - truth.mean(0)) ** 2).sum(1).mean())
            out[m] = float(((predicted[m] - truth) ** 2).sum(1).mean()) / max(spread, 1e-12)
        return out

    def state_meta(self) -> dict:
        return {**super().state_meta(), "proxy_fit": getattr(self, "proxy_fit_", None)}

    def restore(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> "ProxyMethod":
        super().restore(tensors, meta)
        self.proxy_fit_ = meta.get("proxy_fit")
        return self

    def fit_summary(self) -> dict:
        summary = super().fit_summary()
        return {**summary, "proxy_error": self.proxy_fit_} if getattr(self, "proxy_fit_", None) else summary

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
