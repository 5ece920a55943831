"""Encoders for feature vectors: an MLP, and the identity (for pre-computed features)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import ENCODERS


class MLP(nn.Module):
    """Linear layers, each followed by ReLU (and optional dropout); flattens its input first."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (128,), out_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float())


class Identity(nn.Module):
    """Flattens the input: the features are the input (pre-computed embeddings)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = int(in_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().flatten(1)
        if x.shape[1] != self.out_dim:
            raise ConfigError(f"identity encoder expects {self.out_dim} features, got {x.shape[1]}")
        return x


@ENCODERS.register("mlp")
def mlp(in_dim: int, hidden: Sequence[int] = (256,), out_dim: int = 128, dropout: float = 0.0) -> MLP:
    """MLP for feature vectors (one 256-unit hidden layer, 128-d features)."""
    return MLP(in_dim, hidden, out_dim, dropout)


@ENCODERS.register("mlp-tiny")
def mlp_tiny(in_dim: int) -> MLP:
    """Tiny MLP for tests (8 hidden units, 8-d features)."""
    return MLP(in_dim, (8,), 8)


@ENCODERS.register("identity")
def identity(in_dim: int) -> Identity:
    """No parameters: the (flattened) input is the feature vector."""
    return Identity(in_dim)
