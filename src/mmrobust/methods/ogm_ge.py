"""``ogm-ge``: On-the-fly Gradient Modulation with Generalisation Enhancement.

Peng, Wei, Deng, Wang, Hu, "Balanced Multimodal Learning via On-the-fly Gradient Modulation",
CVPR 2022 (written from the paper's description). Per training batch, each modality's score
is s_m = Σ_i softmax(branch_m(x_i))[y_i] over the rows where every modality is present (for
multi-label: the mean probability given to each label's true value). The dominant modality d
(largest score) has ρ = s_d / mean_{k≠d} s_k; when ρ > 1 the gradients of its encoder are
multiplied by 1 − tanh(α·ρ) and Gaussian noise N(0, std(g)) is added to each of its parameter
gradients (GE); the other modalities are untouched. For K > 2 the others' mean score is the
reference (our generalisation).

This is the core rule on the project's mean fusion and optimiser, **not** the authors' loop; it
differs from it in four ways: the scores come from per-modality heads (theirs: the slices of
one concat layer), every parameter of the dominant encoder is damped (theirs: convolution
kernels only, not BatchNorm), the noise goes to the dominant encoder only (theirs: to every
encoder at every modulated step), and under Adam (the project's default) a constant gradient
scale is normalised away, so the coefficient barely acts (theirs: SGD with momentum). The
authors' variant is :class:`OGMGEAuthors` (``ogm-ge-authors``). Modulation runs
during the first ``modulation_fraction`` of the epochs (the paper: 50 of 100), α = 0.1.
Trained from scratch without modality dropout, like the paper; needs a fusion with
per-modality heads (each branch's own logits give its score). Under torchrun each rank
computes the coefficient from its share of the batch.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..encoders import EncoderLike
from ..errors import ConfigError
from ..models import proba_from_logits, task_loss
from ..registry import FUSIONS
from ..runtime import derive_seed, seeded
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
        self.check_fusion()
        self.alpha, self.modulation_fraction = alpha, modulation_fraction

    def check_fusion(self) -> None:
        if not FUSIONS.get(self.fusion).heads:
            raise ConfigError(f"ogm-ge scores each modality by its own logits: it needs a fusion with per-modality "
                              f"heads, not {self.fusion!r}")

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


AUTHORS_OPTIMISER = dict(optimizer="sgd", momentum=0.9, weight_decay=1e-4, schedule="step", gamma=0.1)
AUTHORS_STEP = 0.7  # the learning rate drops 10x after this share of the epochs (their 70 of 100)


def kernels(encoder: torch.nn.Module) -> list[Tensor]:
    """The parameters OGM-GE's authors modulate: convolution kernels (4-D); an encoder without
    any (an MLP) has its weight matrices (2-D) modulated instead, never biases or norms."""
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    convolutions = [p for p in trainable if p.dim() == 4]
    return convolutions or [p for p in trainable if p.dim() == 2]


def authors_initialisation(module: nn.Module) -> None:
    """OGM-GE's authors' initialisation (their ``weight_init``, applied to the whole model): linear
    layers Xavier-normal with zero biases, convolutions Kaiming-normal (fan out, ReLU), BatchNorm
    weights 1 and biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class OGMGEAuthors(OGMGE):
    """``ogm-ge-authors``: OGM-GE as its authors' training loop runs it (GeWu-Lab/OGM-GE_CVPR2022
    ``main.py``, read to match its behaviour, no code taken), beside ``ogm-ge``:

    - concat fusion; each modality's score uses its slice of the concat layer's weight and 1/K of
      its bias (their ``out_a``, ``out_v``), not a per-modality head;
    - the coefficient 1 − tanh(α·ρ) of the dominant modality scales its encoder's convolution
      kernels' gradients only (not biases nor BatchNorm), and Gaussian noise N(0, std(g)) is
      added to the kernels' gradients of **every** encoder at every modulated step
      (``noise=False``: their ``OGM``, no noise);
    - SGD with momentum 0.9, weight decay 1e-4, the learning rate divided by 10 after 70% of the
      epochs (their 70 of 100) — under Adam a constant gradient scale is normalised away, so the
      coefficient would barely act;
    - their initialisation (:func:`authors_initialisation`), so it does not start from the same
      weights as the other fused methods of its seed.

    What still differs from their code (each a choice of this project's, for a fair comparison):

    1. epochs: the run's (6 in the digits preset), not their 100 (the shares of 50% modulated and
       of the step at 70% are theirs);
    2. the checkpoint kept: the best on the validation split by the project's rule (the mean of full
       and each modality missing), where their loop keeps the best accuracy on the test split;
    3. the epochs modulated: the first ceil(50%) of the run's, where theirs are epochs 0 to 50
       inclusive, 51 of 100 (``modulation_starts <= epoch <= modulation_ends``);
    4. a tie (ratio exactly 1): nothing is modulated, where theirs damps the audio encoder;
    5. the scores come from the rows of a batch with every modality present (their data has no
       gaps, so every row counts there);
    6. an encoder without convolutions (an MLP) has its weight matrices modulated; theirs are
       always ResNets (their code would modulate nothing).
    """

    name = "ogm-ge-authors"

    def __init__(self, encoders: Mapping[str, EncoderLike], num_classes: int, *, noise: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("fusion", "concat")
        super().__init__(encoders, num_classes, **kwargs)
        self.noise = noise
        config = self.train_config
        self.train_config = replace(config, **AUTHORS_OPTIMISER, step_size=max(1, math.ceil(AUTHORS_STEP * config.epochs)))

    def check_fusion(self) -> None:
        if self.fusion != "concat":
            raise ConfigError(f"ogm-ge-authors scores each modality by its slice of the concat layer: it needs "
                              f"fusion 'concat', not {self.fusion!r}")

    def start_training(self, stage1: Stage1 | None, config: TrainConfig) -> None:
        if stage1 is None:  # from scratch, as their loop starts: their initialisation
            with seeded(derive_seed(self.seed, "authors-init")):
                self.model_.apply(authors_initialisation)
        self.modulated_epochs_ = math.ceil(config.epochs * self.modulation_fraction)
        self.coefficients_, self.modulating_ = {}, False
        self.hooks_ = [parameter.register_hook(partial(self._modulate, m))
                       for m in self.modalities for parameter in kernels(self.model_.branches[m].encoder)]

    def end_training(self) -> None:
        super().end_training()
        del self.modulating_

    def _modulate(self, modality: str, grad: Tensor) -> Tensor:
        if not self.modulating_:
            return grad
        scaled = grad * self.coefficients_.get(modality, 1.0)
        if not self.noise or grad.numel() < 2:
            return scaled
        return scaled + torch.randn_like(grad) * (grad.std() + 1e-8)  # the noise's scale: the unscaled gradient's

    def scores(self, branches: Mapping[str, Tensor], target: Tensor, present: Mapping[str, Tensor]) -> dict[str, float] | None:
        """As :meth:`OGMGE.scores`, from each modality's slice of the concat layer (plus 1/K of its bias)."""
        return super().scores(self.split_logits(branches), target, present)

    def split_logits(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        linear = self.model_.fusion.linear
        out, start = {}, 0
        for m in self.model_.fusion.modalities:
            width = features[m].shape[1]
            out[m] = features[m] @ linear.weight[:, start:start + width].T + linear.bias / len(self.modalities)
            start += width
        return out

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        out = super().training_step(batch, epoch)
        self.modulating_ = epoch < self.modulated_epochs_
        return out
