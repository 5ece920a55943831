"""Mask-aware fusions. Each takes the presence mask explicitly and never reads the values
of absent modalities (they may be anything, NaN included)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError

FUSIONS = ("mean", "concat")


class MeanFusion(nn.Module):
    """Presence-normalised late fusion: ``z = sum_m p_m l_m / sum_m p_m`` over branch logits.

    ``average="probs"`` averages probabilities instead and returns their log (multi-class)
    or logit (multi-label), so the output is a logit either way. Rows with no modality
    present get zeros (they are never scored).
    """

    def __init__(self, task: str = "multiclass", average: str = "logits") -> None:
        super().__init__()
        if average not in ("logits", "probs"):
            raise ConfigError(f"average must be 'logits' or 'probs', got {average!r}")
        self.task, self.average = task, average

    def forward(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        modalities = sorted(branches)
        total = sum(present[m].float() for m in modalities)
        acc = None
        for m in modalities:
            value = self._to_average(branches[m])
            term = torch.where(present[m][:, None], value, torch.zeros_like(value))
            acc = term if acc is None else acc + term
        mean = acc / total.clamp(min=1.0)[:, None]
        return self._to_logits(mean, total)

    def _to_average(self, logits: Tensor) -> Tensor:
        if self.average == "logits":
            return logits
        return logits.softmax(-1) if self.task == "multiclass" else logits.sigmoid()

    def _to_logits(self, mean: Tensor, total: Tensor) -> Tensor:
        if self.average == "logits":
            return mean
        eps = torch.finfo(mean.dtype).eps
        mean = mean.clamp(eps, 1 - eps)
        logits = mean.log() if self.task == "multiclass" else torch.logit(mean)
        return torch.where((total > 0)[:, None], logits, torch.zeros_like(logits))


class ConcatFusion(nn.Module):
    """Concatenated features, a fill in missing slots (zeros or a learned vector), one linear layer."""

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, missing: str = "zeros") -> None:
        super().__init__()
        if missing not in ("zeros", "learned"):
            raise ConfigError(f"missing must be 'zeros' or 'learned', got {missing!r}")
        self.modalities = sorted(in_dims)
        self.missing = missing
        self.fill = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(in_dims[m]), requires_grad=missing == "learned") for m in self.modalities}
        )
        self.linear = nn.Linear(sum(in_dims[m] for m in self.modalities), num_classes)

    def forward(self, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        slots = [
            torch.where(present[m][:, None], features[m], self.fill[m].to(features[m].dtype).expand_as(features[m]))
            for m in self.modalities
        ]
        return self.linear(torch.cat(slots, dim=1))
