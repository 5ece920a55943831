"""Metrics as method.md fixes them, computed with scikit-learn.

Multi-class: accuracy (and, with two classes, AUROC; the positive class is the last label).
Multi-label: F1-macro and F1-micro at threshold 0.5 with ``zero_division=0``.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from .errors import ConfigError

METRICS = ("accuracy", "auroc", "f1_macro", "f1_micro")


def default_metric(task: str) -> str:
    """The metric that selects models: accuracy (multi-class), F1-macro (multi-label)."""
    return "f1_macro" if task == "multilabel" else "accuracy"


def metric_names(task: str, num_classes: int) -> list[str]:
    if task == "multilabel":
        return ["f1_macro", "f1_micro"]
    return ["accuracy", "auroc"] if num_classes == 2 else ["accuracy"]


def compute_metric(name: str, target: np.ndarray, proba: np.ndarray) -> float:
    """One metric from targets and predicted probabilities (rows already filtered)."""
    if name == "accuracy":
        return float(accuracy_score(target, proba.argmax(axis=1)))
    if name in ("f1_macro", "f1_micro"):
        return float(f1_score(target, (proba >= 0.5).astype(int), average=name[3:], zero_division=0))
    if name == "auroc":
        if proba.shape[1] != 2:
            raise ConfigError("AUROC is defined here for binary tasks only")
        if len(np.unique(target)) < 2:
            return float("nan")  # undefined when only one class is among the scored rows
        return float(roc_auc_score(target, proba[:, 1]))
    raise ConfigError(f"unknown metric {name!r}; known: {METRICS}")


def compute_metrics(task: str, target: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: compute_metric(name, target, proba) for name in metric_names(task, proba.shape[1])}
