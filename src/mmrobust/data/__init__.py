"""Datasets behind a registry; each returns ``{"train", "val", "test"}`` of MultiModalDataset."""
from __future__ import annotations

from ..registry import Registry

DATASETS: Registry[dict] = Registry("dataset")

from . import synthetic  # noqa: E402,F401  (register the built-in datasets)
from .synthetic import make_synthetic  # noqa: E402

__all__ = ["DATASETS", "make_synthetic"]
