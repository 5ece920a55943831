import shutil
import subprocess
import sys

import numpy as np
import pytest

import mmrobust as mm
from mmrobust.data.digits import digits_path, load_digits_arrays

from shared_data import FSDD, HAVE_REAL_DATA, MISSING, MNIST, ROOT


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


def test_voices_and_speakers_disjoint_and_images_unshared():
    _, meta = load_digits_arrays()
    variants, speakers = meta["variants"], meta["speakers"]
    assert not set(variants["train"]) & set(variants["val"]) and not set(variants["train"]) & set(variants["test"])
    assert not set(variants["val"]) & set(variants["test"])
    assert speakers["test"] == ["george", "lucas"], "the held-out people are never heard in training or validation"
    assert not {"george", "lucas"} & set(speakers["train"] + speakers["val"]) and not set(speakers["train"]) & set(speakers["val"])
    with np.load(digits_path()) as data:
        assert not set(data["train_mnist_index"]) & set(data["val_mnist_index"])  # both from MNIST's training file
        assert len(set(data["test_mnist_index"])) == len(data["test_mnist_index"])
        settings = meta["clip_settings"]
        for split in ("train", "val", "test"):
            clips = data[f"{split}_audio_index"]
            voices = {settings[i]["variant"] for i in clips if settings[i]["source"] == "espeak-ng"}
            people = {settings[i]["speaker"] for i in clips if settings[i]["source"] == "fsdd"}
            assert voices <= set(variants[split]) and people <= set(speakers[split]) and people
            assert (data["clip_label"][clips] == data[f"{split}_label"]).all(), "a pair's clip says its image's digit"
        total = sum(n for per_source in meta["clips"].values() for n in per_source.values())
        assert data["clip_spectrogram"].shape[0] == total, "each clip stored once"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (the generator needs it)")
@pytest.mark.skipif(not HAVE_REAL_DATA, reason=MISSING)
def test_generator_script(tmp_path):
    out = tmp_path / "d.npz"
    cmd = [sys.executable, str(ROOT / "scripts" / "make_digits.py"), "--mnist", str(MNIST), "--fsdd", str(FSDD), "--out", str(out),
           "--accents", "1", "--n-train", "300", "--n-val", "100", "--n-test", "200"]
    subprocess.run(cmd, check=True, capture_output=True)
    splits = mm.DATASETS.create("digits", path=out)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [300, 100, 200]
    arrays, meta = load_digits_arrays(out)
    assert meta["clips"] == {"train": {"espeak-ng": 450, "fsdd": 1500}, "val": {"espeak-ng": 0, "fsdd": 500},
                             "test": {"espeak-ng": 0, "fsdd": 1000}} and meta["pca"]["components"] >= 1
