import numpy as np
import pytest

from mmrobust.metrics import compute_metric, compute_metrics, default_metric


def test_accuracy_by_hand():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.4, 0.35, 0.25]])
    assert compute_metric("accuracy", np.array([0, 2, 0, 0]), proba) == 0.75


def test_multilabel_f1_threshold_and_zero_division():
    target = np.array([[1, 0, 0], [1, 1, 0]])
    proba = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.0]])  # predicts [1,0,0], [1,0,0]
    # label 0: f1 1; label 1: no prediction, one positive -> 0; label 2: nothing at all -> 0 (zero_division)
    assert compute_metric("f1_macro", target, proba) == pytest.approx(1 / 3)
    assert compute_metric("f1_micro", target, proba) == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert default_metric("multilabel") == "f1_macro" and default_metric("multiclass") == "accuracy"


def test_auroc_uses_the_last_label_as_positive():
    target = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.35, 0.65], [0.2, 0.8]])
    assert compute_metrics("multiclass", target, proba) == {"accuracy": 1.0, "auroc": 1.0}
    assert compute_metric("auroc", target, proba[:, ::-1]) == 0.0
