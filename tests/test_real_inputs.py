"""The shipped model answers real inputs as its report says: `predict` on real MNIST digits
(PNG files) and on real recordings of the two speakers held out for the test split, each
within 5 points of the run's own test accuracy of that model with only that modality (which
`predict` reproduces), and of the uni-modal model's where UME-MMA kept UME (then they are one)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmrobust.cli import main
from shared_data import FSDD, HAVE_REAL_DATA, MISSING, MNIST, ROOT

sys.path.insert(0, str(ROOT / "benchmarks" / "predict"))
from real_inputs import measure  # noqa: E402  (the benchmark's own measurement, on a small sample)


@pytest.mark.skipif(not HAVE_REAL_DATA, reason=MISSING)
def test_predict_on_real_files_matches_the_reported_unimodal_accuracy(tmp_path: Path):
    args = ["run", "--set", "data.limit=3000", "--set", "train.epochs=4", "--seeds", "0", "--device", "cpu",
            "--set", "methods=[unimodal, ume, mma, ume-mma]", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    result = measure(tmp_path / "run", MNIST, FSDD, n=500)
    for modality in ("image", "audio"):
        reported = result["report"][f"ume-mma, {modality} only"]
        assert reported > 0.2, f"{modality}: the model learned little ({reported:.3f}); the check would mean nothing"
        assert abs(result["predict"][modality] - reported) <= 0.05, (modality, result)
