"""Composed models: a uni-modal classifier and a late-fusion classifier over any K >= 2, and
what a logit means for each task (its loss and its probabilities)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch import encode_present
from .fusion import create_fusion


def task_loss(logits: Tensor, target: Tensor, task: str) -> Tensor:
    """Cross-entropy (multi-class) or binary cross-entropy (multi-label)."""
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.float())
    return F.cross_entropy(logits, target.long())


def proba_from_logits(logits: Tensor, task: str) -> Tensor:
    return logits.sigmoid() if task == "multilabel" else logits.softmax(-1)


def distillation_loss(student: Tensor, teacher: Tensor, task: str, temperature: float) -> Tensor:
    """``T² · KL(p_teacher ‖ p_student)`` at temperature ``T`` (Hinton et al. 2015), the mean over
    rows; for multi-label, the KL of each label's Bernoulli, summed over labels. Zero exactly when
    the two distributions agree; the teacher gets no gradient."""
    t, s = teacher.detach().float() / temperature, student.float() / temperature
    if task == "multilabel":
        p = t.sigmoid()
        kl = F.binary_cross_entropy_with_logits(s, p, reduction="none") - F.binary_cross_entropy_with_logits(t, p, reduction="none")
        return temperature ** 2 * kl.sum(1).mean()
    return temperature ** 2 * F.kl_div(s.log_softmax(-1), t.log_softmax(-1), reduction="batchmean", log_target=True)


class UnimodalClassifier(nn.Module):
    """An encoder and a linear head: ``W phi(x) + b``."""

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: Any) -> Tensor:
        return self.head(self.encoder(x))


class Branch(nn.Module):
    """One modality's path to the fusion: the encoder, then its head when the fusion has heads."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.out_dim = head.out_features if head is not None else encoder.out_dim

    def forward(self, x: Any) -> Tensor:
        features = self.encoder(x)
        return self.head(features) if self.head is not None else features


class LateFusionClassifier(nn.Module):
    """Late fusion over modalities iterated by sorted name, tolerant of any missing subset.

    ``fusion``: a registered fusion (``mean``: per-modality heads and the presence-normalised
    mean of their logits, method.md; ``concat``: features concatenated with a fill in missing
    slots, then one linear layer), with its ``fusion_options``. Encoders run on present rows only.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        num_classes: int,
        *,
        fusion: str = "mean",
        task: str = "multiclass",
        fusion_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = sorted(encoders)
        in_dims = {m: encoders[m].out_dim for m in self.modalities}
        self.fusion = create_fusion(fusion, in_dims, num_classes, task, **dict(fusion_options or {}))
        heads = {m: nn.Linear(in_dims[m], num_classes) if self.fusion.heads else None for m in self.modalities}
        self.branches = nn.ModuleDict({m: Branch(encoders[m], heads[m]) for m in self.modalities})

    @classmethod
    def from_unimodal(cls, models: Mapping[str, UnimodalClassifier], num_classes: int, **kwargs: Any) -> "LateFusionClassifier":
        """Copy encoders and heads from uni-modal models (never shares their parameters).

        With mean fusion the result equals their ensemble for every presence pattern; a fusion
        without heads starts from them as it defines (concat: equal on full inputs).
        """
        models = {m: copy.deepcopy(models[m]) for m in sorted(models)}
        fused = cls({m: model.encoder for m, model in models.items()}, num_classes, **kwargs)
        with torch.no_grad():
            if fused.fusion.heads:
                for m, model in models.items():
                    fused.branches[m].head.load_state_dict(model.head.state_dict())
            else:
                fused.fusion.init_from_heads({m: model.head for m, model in models.items()})
        return fused

    def row_modules(self) -> dict[str, nn.Module]:
        """What :meth:`encode` runs on each modality's present rows: its branch."""
        return dict(self.branches)

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor],
               host_present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Branch outputs (logits for mean fusion, features for concat), present rows only."""
        return {
            m: encode_present(self.branches[m], inputs.get(m), present[m], self.branches[m].out_dim,
                              None if host_present is None else host_present[m])
            for m in self.modalities
        }

    def features(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor],
                 host_present: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Encoder features (before any head), present rows only (zeros elsewhere)."""
        return {
            m: encode_present(self.branches[m].encoder, inputs.get(m), present[m], self.branches[m].encoder.out_dim,
                              None if host_present is None else host_present[m])
            for m in self.modalities
        }

    def branch_outputs(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """What the fusion sees, from features: each head's logits (or the features themselves)."""
        return {m: self.branches[m].head(f) if self.branches[m].head is not None else f for m, f in features.items()}

    def fuse(self, branches: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        return self.fusion(branches, present)

    def forward(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> Tensor:
        return self.fuse(self.encode(inputs, present), present)
