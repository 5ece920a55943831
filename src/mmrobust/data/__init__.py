"""Datasets behind a registry (:data:`mmrobust.registry.DATASETS`), one file per dataset family.

Each factory takes its own options plus ``bad_inputs`` (the run's :class:`~mmrobust.validate.BadInputs`:
the policy for a bad cell, and where what was found is recorded) and ``device`` (where feature
extraction runs), and returns :class:`Splits`.
"""
from ..registry import DATASETS
from . import avclips, avmnist, digits, food101, manifest, mmimdb, synthetic  # noqa: F401  (register the built-in datasets)
from .splits import Splits
from .synthetic import make_synthetic

__all__ = ["DATASETS", "Splits", "make_synthetic"]
