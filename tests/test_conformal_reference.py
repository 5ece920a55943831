"""The vectorised conformal p-values and sets against crepes' (the library they replace at run
time): identical on random data, every bin, ties included, bins without calibration rows."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrobust.calibration import conformal_p_values, conformal_sets

crepes = pytest.importorskip("crepes", reason="crepes (the dev extra) is the reference")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_cal=st.integers(0, 40), n_test=st.integers(1, 30), classes=st.integers(2, 5),
       coarse=st.booleans(), coverage=st.sampled_from([0.5, 0.8, 0.9, 0.95]))
def test_p_values_and_sets_equal_crepes(seed, n_cal, n_test, classes, coarse, coverage):
    rng = np.random.default_rng(seed)
    grid = (lambda shape: rng.integers(0, 5, shape) / 4) if coarse else (lambda shape: rng.random(shape))  # ties
    cal, test = grid(n_cal), grid((n_test, classes))
    cal_bins = rng.choice(["a", "a+b", "b"], n_cal)
    bins = rng.choice(["a", "a+b", "b", "c"], n_test)  # "c": no calibration row at all
    from crepes.base import p_values_batch

    expected = p_values_batch(cal, test, cal_bins, bins, smoothing=False)
    assert np.array_equal(conformal_p_values(cal, test, cal_bins, bins), expected)
    assert np.array_equal(conformal_p_values(cal, test), p_values_batch(cal, test, smoothing=False))
    proba = test  # as probabilities: the sets' non-conformity is 1 - p, computed once on each side
    classifier = crepes.ConformalClassifier().fit(cal, bins=cal_bins)
    sets = classifier.predict_set(1.0 - proba, bins=bins, confidence=coverage, smoothing=False)
    assert np.array_equal(conformal_sets(cal, proba, coverage, cal_bins=cal_bins, bins=bins), np.asarray(sets, dtype=bool))
