import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmrobust as mm
from mmrobust.data.digits import digits_path, load_digits_arrays

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("MMROBUST_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mnist"


def test_embedded_digits_ship_and_load():
    assert digits_path().stat().st_size <= 10 * 2**20
    assert (digits_path().parent / "DIGITS.md").is_file()
    splits = mm.DATASETS.create("digits")
    assert [len(splits.train), len(splits.val), len(splits.test)] == [5000, 1000, 5000]
    assert splits.test.inputs["image"].shape == (5000, 1, 28, 28) and splits.test.inputs["audio"].shape == (5000, 1, 32, 32)
    assert set(splits.train.target.tolist()) == set(range(10))
    for m in ("image", "audio"):
        encoder = splits.encoders[m].build()
        assert encoder(mm.batch.take_rows(splits.train.inputs[m], np.arange(4))).shape == (4, encoder.out_dim)


def test_voices_disjoint_and_images_unshared():
    _, meta = load_digits_arrays()
    variants = meta["variants"]
    assert not set(variants["train"]) & set(variants["val"]) and not set(variants["train"]) & set(variants["test"])
    assert not set(variants["val"]) & set(variants["test"])
    with np.load(digits_path()) as data:
        assert not set(data["train_mnist_index"]) & set(data["val_mnist_index"])  # both from MNIST's training file
        assert len(set(data["test_mnist_index"])) == len(data["test_mnist_index"])
        settings = meta["clip_settings"]
        for split in ("train", "val", "test"):
            clips = data[f"{split}_audio_index"]
            assert {settings[i]["variant"] for i in clips} <= set(variants[split])
            assert (data["clip_label"][clips] == data[f"{split}_label"]).all(), "a pair's clip says its image's digit"
        assert data["clip_spectrogram"].shape[0] == sum(meta["clips"].values()), "each clip stored once"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (the generator needs it)")
@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST} (set MMROBUST_SHARED_DATA)")
def test_generator_script(tmp_path):
    out = tmp_path / "d.npz"
    cmd = [sys.executable, str(ROOT / "scripts" / "make_digits.py"), "--mnist", str(MNIST), "--out", str(out),
           "--accents", "1", "--n-train", "300", "--n-val", "100", "--n-test", "200"]
    subprocess.run(cmd, check=True, capture_output=True)
    splits = mm.DATASETS.create("digits", path=out)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [300, 100, 200]
    arrays, meta = load_digits_arrays(out)
    assert meta["clips"] == {"train": 290, "val": 60, "test": 100} and meta["pca"]["components"] >= 1
