"""``ogm-ge``: On-the-fly Gradient Modulation with Generalisation Enhancement.

Peng, Wei, Deng, Wang, Hu, "Balanced Multimodal Learning via On-the-fly Gradient Modulation",
CVPR 2022 (written from the paper's description). Per training batch, each modality's score
is s_m = Σ_i softmax(branch_m(x_i))[y_i] over the rows where every modality is present (for
multi-label: the mean probability given to each label's true value). The dominant modality d
(largest score) has ρ = s_d / mean_{k≠d} s_k; when ρ > 1 the gradients of its encoder are
multiplied by 1 − tanh(α·ρ) and Gaussian noise N(0, std(g)) is added to each of its parameter
gradients (GE); the other modalities are untouched. For two modalities this is the paper's
rule; for K > 2 the others' mean score is the reference (our generalisation). Modulation runs
during the first ``modulation_fraction`` of the epochs (the paper: 50 of 100), α = 0.1.
Trained from scratch without modality dropout, like the paper; needs a fusion with
per-modality heads (each branch's own logits give its score). Under torchrun each rank
computes the coefficient from its share of the batch.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Mapping

import torch
from torch import Tensor

from ..batch import Batch
from ..encoders import EncoderLike
from ..errors import ConfigError
from ..models import proba_from_logits, task_loss
from ..registry import FUSIONS
from ..config import TrainConfig
from .fused import FusedMethod
from .unimodal import Stage1


def modulation_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """``{dominant modality: 1 − tanh(α·ρ)}`` when its score exceeds the others' mean (ρ > 1), else {}."""
    dominant = max(sorted(scores), key=lambda m: scores[m])
    others = [scores[m] for m in scores if m != dominant]
    reference = sum(others) / len(others)
    if reference <= 0:
        return {}
    ratio = scores[dominant] / reference
    return {dominant: 1.0 - math.tanh(alpha * ratio)} if ratio > 1 else {}


class OGMGE(FusedMethod):
    """Late fusion from scratch whose dominant modality's encoder gradients are damped and noised."""

    name = "ogm-ge"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, alpha: float = 0.1,
                 modulation_fraction: float = 0.5, **kwargs: Any) -> None:
        super().__init__(encoders, num_classes, **kwargs)
        if not FUSIONS.get(self.fusion).heads:
            raise ConfigError(f"ogm-ge scores each modality by its own logits: it needs a fusion with per-modality "
                              f"heads, not {self.fusion!r}")
        self.alpha, self.modulation_fraction = alpha, modulation_fraction

    def start_training(self, stage1: Stage1 | None, config: TrainConfig) -> None:
        self.modulated_epochs_ = math.ceil(config.epochs * self.modulation_fraction)
        self.coefficients_: dict[str, float] = {}
        self.hooks_ = [parameter.register_hook(partial(self._modulate, m))
                       for m in self.modalities for parameter in self.model_.branches[m].encoder.parameters()
                       if parameter.requires_grad]

    def end_training(self) -> None:
        for hook in self.hooks_:
            hook.remove()
        del self.hooks_, self.coefficients_, self.modulated_epochs_

    def _modulate(self, modality: str, grad: Tensor) -> Tensor:
        coefficient = self.coefficients_.get(modality)
        if coefficient is None:
            return grad
        noise = torch.randn_like(grad) * grad.std() if grad.numel() > 1 else torch.zeros_like(grad)
        return grad * coefficient + noise

    def scores(self, branches: Mapping[str, Tensor], target: Tensor, present: Mapping[str, Tensor]) -> dict[str, float] | None:
        """Each modality's summed probability of the true label on rows with every modality; None without such rows."""
        rows = torch.stack([present[m] for m in self.modalities]).all(dim=0)
        if not bool(rows.any()):
            return None
        out = {}
        for m in self.modalities:
            proba = proba_from_logits(branches[m][rows].detach().float(), self.task)
            if self.task == "multilabel":
                truth = target[rows].float()
                out[m] = float((truth * proba + (1 - truth) * (1 - proba)).mean(dim=1).sum())
            else:
                out[m] = float(proba.gather(1, target[rows].long()[:, None]).sum())
        return out

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        host, present, keep = self.step_presence(batch, epoch)
        branches = self.model_.encode(batch.inputs, present, host)
        logits = self.model_.fuse(branches, present)
        loss = task_loss(logits.index_select(0, keep), batch.target.index_select(0, keep), self.task)
        scores = self.scores(branches, batch.target, present) if epoch < self.modulated_epochs_ else None
        self.coefficients_ = modulation_coefficients(scores, self.alpha) if scores else {}
        return {"loss": loss, "logits": logits, "rows": len(keep)}
