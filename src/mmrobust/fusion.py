"""Mask-aware fusions behind a registry (:data:`mmrobust.registry.FUSIONS`).

A fusion takes the branch outputs and the presence mask explicitly and never reads the values of
absent modalities (they may be anything, NaN included): the property every fusion's contract test
checks. A fusion with ``heads = True`` sees per-modality logits (each branch ends in its own
linear head); otherwise it sees features and maps them to logits itself. Every fusion is built as
``cls(in_dims=..., num_classes=..., task=..., **options)`` and knows how to start from the
Stage-1 heads (``init_from_heads``), so a fused model can be initialised from uni-modal models.

To add a fusion: a subclass here (or in your own file) and one ``FUSIONS.register`` line.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .registry import FUSIONS


class Fusion(nn.Module):
    """Base class: ``forward(branches, present) -> logits``."""

    heads = True  # the branches end in per-modality heads (logits); False: the fusion sees features

    def init_from_heads(self, heads: Mapping[str, nn.Linear]) -> None:
        """Start from the Stage-1 heads (copied into the branches when ``heads``; else here)."""


class MeanFusion(Fusion):
    """Presence-normalised mean of the branch logits: ``z = sum_m p_m l_m / sum_m p_m`` (method.md).

    ``average="probs"`` averages probabilities instead and returns their log (multi-class)
    or logit (multi-label), so the output is a logit either way. Rows with no modality
    present get zeros (they are never scored).
    """

    heads = True

    def __init__(self, in_dims: Mapping[str, int] | None = None, num_classes: int | None = None, *,
                 task: str = "multiclass", average: str = "logits") -> None:
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


class WeightedMeanFusion(Fusion):
    """Presence-normalised weighted mean of the branch logits:
    ``z = sum_m p_m w_m l_m / sum_m p_m w_m``, one weight per modality (a buffer, saved with the
    model; equal at first). With one modality present it is that modality's logits, whatever the
    weights. :meth:`fit_weights` fits them by validation negative log-likelihood (a weighted UME)."""

    heads = True

    def __init__(self, in_dims: Mapping[str, int], num_classes: int | None = None, *, task: str = "multiclass") -> None:
        super().__init__()
        self.task, self.modalities = task, sorted(in_dims)
        self.register_buffer("weights", torch.full((len(self.modalities),), 1.0 / len(self.modalities)))

    def forward(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        return self._combine(self.weights, branches, present)

    def _combine(self, weights: Tensor, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        weights = weights.clamp_min(1e-6)  # a modality alone is its own logits, however small its weight
        acc, total = None, None
        for j, m in enumerate(self.modalities):
            w = present[m].to(branches[m].dtype) * weights[j]
            term = torch.where(present[m][:, None], w[:, None] * branches[m], torch.zeros_like(branches[m]))
            acc, total = (term, w) if acc is None else (acc + term, total + w)
        return acc / torch.where(total > 0, total, torch.ones_like(total))[:, None]

    def weight_map(self) -> dict[str, float]:
        return {m: float(w) for m, w in zip(self.modalities, self.weights)}

    @torch.no_grad()
    def fit_weights(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor], target: Tensor) -> dict:
        """Weights (a softmax over free parameters) minimising the negative log-likelihood of the
        fused logits on the given rows (rows with two or more modalities are the ones they
        change); kept only where they beat equal weights. Returns the fit's summary."""
        from .models import task_loss

        equal = torch.full_like(self.weights, 1.0 / len(self.modalities))
        branches = {m: torch.nan_to_num(branches[m].float()) for m in self.modalities}
        loss_at = lambda w: float(task_loss(self._combine(w, branches, present), target, self.task))  # noqa: E731
        theta = torch.zeros(len(self.modalities), requires_grad=True)
        optimizer = torch.optim.LBFGS([theta], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            with torch.enable_grad():
                loss = task_loss(self._combine(theta.softmax(0), branches, present), target, self.task)
                loss.backward()
            return loss

        if len(target):
            with torch.enable_grad():
                optimizer.step(closure)
        fitted = theta.detach().softmax(0)
        before, after = (loss_at(equal), loss_at(fitted)) if len(target) else (None, None)
        kept = after is not None and math.isfinite(after) and after < before
        self.weights.copy_(fitted if kept else equal)
        return {"rows": int(len(target)), "nll_equal": before, "nll_fitted": after if kept else before,
                "fallback": None if kept else ("no rows with two or more modalities" if not len(target)
                                               else "fitted weights no better than equal ones")}


class ConcatFusion(Fusion):
    """Concatenated features, a fill in missing slots (``missing``: zeros, or a learned vector per
    modality, the "missing token"), one linear layer. From Stage 1 the layer is
    ``[W_1 ... W_K] / K`` and ``mean(b_m)``: equal to the ensemble on full inputs."""

    heads = False

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, missing: str = "zeros", *,
                 task: str = "multiclass") -> None:
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

    @torch.no_grad()
    def init_from_heads(self, heads: Mapping[str, nn.Linear]) -> None:
        k = len(self.modalities)
        self.linear.weight.copy_(torch.cat([heads[m].weight for m in self.modalities], 1) / k)
        self.linear.bias.copy_(sum(heads[m].bias for m in self.modalities) / k)


class EntropyFusion(Fusion):
    """Per-row confidence weights over the present modalities' logits:
    ``w_m ∝ exp(H_max − H_m)``, with ``H_m`` the entropy of modality m's prediction *for that row*
    (multi-label: Bernoulli entropies summed) and ``H_max`` the largest possible entropy, the same
    for every modality, so it cancels in the normalisation: ``w = softmax_m(−H_m)`` over the
    present modalities. Training-free; with one modality present it is that modality's logits.

    MLA's test-time fusion (Zhang et al., "Multimodal Representation Learning by Alternating
    Unimodal Adaptation", CVPR 2024). Its released code takes the entropy over the batch axis;
    here it is per row, as the paper describes.
    """

    heads = True

    def __init__(self, in_dims: Mapping[str, int] | None = None, num_classes: int | None = None, *,
                 task: str = "multiclass") -> None:
        super().__init__()
        self.task = task

    def entropy(self, logits: Tensor) -> Tensor:
        if self.task == "multilabel":
            p = logits.sigmoid()
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, p, reduction="none").sum(1)
        return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(1)

    def weights(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's weight per row (zero where absent; the present ones sum to one)."""
        modalities = sorted(branches)
        scores = torch.stack([torch.where(present[m], -self.entropy(torch.nan_to_num(branches[m])),
                                          torch.full_like(present[m], -math.inf, dtype=branches[m].dtype))
                              for m in modalities], dim=1)
        any_present = torch.stack([present[m] for m in modalities], dim=1).any(dim=1, keepdim=True)
        weights = torch.where(any_present, scores.softmax(dim=1), torch.zeros_like(scores))
        return {m: weights[:, j] for j, m in enumerate(modalities)}

    def forward(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        weights = self.weights(branches, present)
        out = None
        for m in sorted(branches):
            term = torch.where(present[m][:, None], weights[m][:, None] * branches[m], torch.zeros_like(branches[m]))
            out = term if out is None else out + term
        return out


FUSIONS.register("mean", MeanFusion, doc="presence-normalised mean of per-modality logits (average: logits | probs)")
FUSIONS.register("weighted", WeightedMeanFusion,
                 doc="presence-normalised weighted mean of per-modality logits, weights fitted on validation (weighted UME)")
FUSIONS.register("entropy", EntropyFusion, doc="per-row confidence weights exp(H_max - H_m) over present logits (MLA)")
FUSIONS.register("concat", ConcatFusion,
                 doc="concatenated features, a fill in missing slots (missing: zeros | learned), one linear layer")


def create_fusion(name: str, in_dims: Mapping[str, int], num_classes: int, task: str, **options) -> Fusion:
    """A fusion by registry name, with its options."""
    return FUSIONS.create(name, in_dims=in_dims, num_classes=num_classes, task=task, **options)
