import os
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

import mmrobust as mm
from mmrobust.data.avmnist import FSDD_INDEX, list_fsdd, prepare_avmnist, split_of

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("MMROBUST_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mnist"


def fake_fsdd(folder: Path, indices=range(0, 12)) -> Path:
    """Real-format WAVs (8 kHz, 16-bit): a tone per digit, two speakers."""
    folder.mkdir(parents=True)
    t = np.arange(4000) / 8000
    for digit in range(10):
        for speaker in ("ann", "bob"):
            for i in indices:
                wave = 0.3 * np.sin(2 * np.pi * (300 + 150 * digit) * t)
                wavfile.write(folder / f"{digit}_{speaker}_{i}.wav", 8000, (wave * 32767).astype(np.int16))
    return folder


def test_fsdd_listing_and_split_ranges(tmp_path):
    recordings = list_fsdd(fake_fsdd(tmp_path / "rec"))
    assert len(recordings) == 240 and recordings[0].digit == 0
    assert {split_of(r) for r in recordings} == {"train", "val", "test"}
    assert FSDD_INDEX["test"] == range(0, 5) and FSDD_INDEX["val"] == range(5, 10)
    (tmp_path / "rec" / "bad-name.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="bad-name.wav: not an FSDD file name"):
        list_fsdd(tmp_path / "rec")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .wav files"):
        list_fsdd(tmp_path / "empty")


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST} (set MMROBUST_SHARED_DATA)")
def test_prepare_and_load(tmp_path):
    fsdd = fake_fsdd(tmp_path / "rec")
    out = tmp_path / "data" / "av"  # its folder does not exist yet (the README's `--out data/avmnist`)
    meta = prepare_avmnist(MNIST, fsdd, out, limit=40, snr_db=10.0, interference_db=6.0, log=lambda m: None)
    assert meta["sizes"] == {"train": 40, "val": 40, "test": 40} and meta["pca"]["components"] >= 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["av"]  # no temporary folder left beside it
    (tmp_path / "av").symlink_to(out)
    data = mm.DATASETS.create("avmnist", root=tmp_path / "av")
    assert data.train.inputs["audio"].shape == (40, 1, 112, 112) and data.train.inputs["image"].shape == (40, 1, 28, 28)
    assert isinstance(data.train.inputs["audio"], np.memmap)
    for split in ("train", "val", "test"):
        names = (tmp_path / "av" / split / "recordings.txt").read_text().split()
        assert {int(n.split("_")[2].split(".")[0]) for n in names} <= set(FSDD_INDEX[split]), "no recording shared"
    recordings = list_fsdd(fsdd)
    used = np.load(tmp_path / "av" / "test" / "recording.npy")
    assert all(recordings[i].digit == y for i, y in zip(used, data.test.target.tolist()))
    competing = np.load(tmp_path / "av" / "test" / "competing.npy")  # another digit, from the same split's pool
    assert all(recordings[i].digit != y for i, y in zip(competing, data.test.target.tolist()))
    assert {recordings[i].path.name for i in competing} <= set((tmp_path / "av" / "test" / "recordings.txt").read_text().split())
    assert np.array_equal(data.test.sources["audio"], np.stack([used, competing], axis=1))
    with pytest.raises(FileExistsError):
        prepare_avmnist(MNIST, fsdd, tmp_path / "av", limit=5, log=lambda m: None)


def test_prepare_leaves_nothing_on_failure(tmp_path):
    fsdd = fake_fsdd(tmp_path / "rec", indices=range(10, 12))  # no test or validation recordings
    mnist = MNIST if MNIST.is_dir() else tmp_path / "no-mnist"
    with pytest.raises((ValueError, FileNotFoundError)):
        prepare_avmnist(mnist, fsdd, tmp_path / "av", limit=5, log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_multibench_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "image").mkdir()
    (tmp_path / "audio").mkdir()
    for split, n in (("train", 10), ("test", 4)):
        np.save(tmp_path / "image" / f"{split}_data.npy", rng.integers(0, 256, (n, 784)).astype(np.float32))
        np.save(tmp_path / "audio" / f"{split}_data.npy", (255 * rng.random((n, 112, 112))).astype(np.float32))
        np.save(tmp_path / f"{split}_labels.npy", np.arange(n) % 10)
    data = mm.DATASETS.create("avmnist-multibench", root=tmp_path, val_start=8)
    assert [len(data.train), len(data.val), len(data.test)] == [8, 2, 4]
    assert data.train.inputs["image"].shape == (8, 1, 28, 28) and float(data.train.inputs["image"].max()) <= 1.0
    # both modalities divided by 255, as MultiBench's loader does (issue 18: the audio was left unscaled)
    raw = np.load(tmp_path / "audio" / "test_data.npy")
    assert np.allclose(np.asarray(data.test.inputs["audio"])[:, 0], raw / 255.0, atol=1e-6)
    assert "share recordings" in data.info["note"]
    np.save(tmp_path / "audio" / "test_data.npy", rng.random((4, 100, 112)).astype(np.float32))
    with pytest.raises(ValueError, match=r"test_data.npy: expected rows of shape \(112, 112\)"):
        mm.DATASETS.create("avmnist-multibench", root=tmp_path, val_start=8)
    np.save(tmp_path / "audio" / "test_data.npy", rng.random((4, 112, 112)).astype(np.float32))
    (tmp_path / "test_labels.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable .npy"):
        mm.DATASETS.create("avmnist-multibench", root=tmp_path, val_start=8)
    with pytest.raises(FileNotFoundError, match="not a prepared AV-MNIST folder"):
        mm.DATASETS.create("avmnist", root=tmp_path)
