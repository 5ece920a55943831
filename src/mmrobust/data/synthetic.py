"""A synthetic paired dataset with a known structure, for tests and quick checks.

Each modality ``m`` observes a class prototype ``mu_m[y]`` through independent Gaussian
noise, so each modality alone is imperfect and their fusion is better than either. With
``task="multilabel"`` the prototypes are sums over the active labels.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..batch import MultiModalDataset
from ..encoders import EncoderSpec
from ..registry import DATASETS
from ..validate import BadInputs
from .splits import Splits


def make_synthetic(
    sizes: Mapping[str, int] = {"train": 600, "val": 200, "test": 400},
    shapes: Mapping[str, int | Sequence[int]] = {"a": 8, "b": 8},
    *,
    num_classes: int = 4,
    noise: float | Mapping[str, float] = 1.0,
    task: str = "multiclass",
    seed: int = 0,
) -> dict[str, MultiModalDataset]:
    """Splits of a synthetic dataset; all splits share the class prototypes."""
    rng = np.random.default_rng(seed)
    modalities = sorted(shapes)
    shape_of = {m: (shapes[m],) if isinstance(shapes[m], int) else tuple(shapes[m]) for m in modalities}
    prototypes = {m: rng.normal(size=(num_classes, *shape_of[m])).astype(np.float32) for m in modalities}
    noise_of = {m: float(noise[m] if isinstance(noise, Mapping) else noise) for m in modalities}
    splits = {}
    for split, n in sizes.items():
        target = _sample_target(rng, n, num_classes, task)
        weights = np.eye(num_classes, dtype=np.float32)[target] if task == "multiclass" else target.astype(np.float32)
        inputs = {}
        for m in modalities:
            signal = np.tensordot(weights, prototypes[m], axes=1)
            inputs[m] = (signal + noise_of[m] * rng.normal(size=signal.shape)).astype(np.float32)
        splits[split] = MultiModalDataset(inputs, target, num_classes=num_classes, task=task)
    return splits


def _sample_target(rng: np.random.Generator, n: int, num_classes: int, task: str) -> np.ndarray:
    if task == "multiclass":
        return rng.integers(0, num_classes, size=n)
    target = (rng.random((n, num_classes)) < 0.3).astype(np.int64)
    target[np.arange(n), rng.integers(0, num_classes, size=n)] = 1  # at least one label per row
    return target


@DATASETS.register("synthetic")
def synthetic(seed: int = 0, *, bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """Two noisy 8-d views of 4 classes (600 / 200 / 400 rows); fusion beats each view."""
    splits = make_synthetic(noise={"a": 1.3, "b": 1.3}, seed=seed)
    encoders = {m: EncoderSpec("mlp", in_dim=8, hidden=(64,), out_dim=32) for m in ("a", "b")}
    return Splits(**splits, encoders=encoders, info={"name": "synthetic", "seed": seed})
