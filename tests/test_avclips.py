"""Kinetics-Sound and AVE in OGM-GE's layout, on small fixtures written with real JPEGs and WAVs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmrobust.audio import ogm_ge_spectrogram
from mmrobust.cli import main
from mmrobust.data import DATASETS
from mmrobust.errors import DataError
from mmrobust.validate import BadInputs
from vl_fixtures import write_tone_wav

CLASSES = ("playing drums", "playing piano", "tapping guitar")


def _wav(path, freq, seconds=1.2):
    write_tone_wav(path, seconds, freq, rate=16000)


def _frames(folder, colour, count):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.new("RGB", (40, 30), tuple(min(255, c + 10 * k) for c in colour)).save(folder / f"frame_{k:03d}.jpg")


def write_kinetics_sound(root, per_class=10):
    for split, n in (("train", per_class), ("test", 2)):
        rows = ["clip,label"]
        for c, label in enumerate(CLASSES):
            for i in range(n):
                clip = f"{label.split()[1]}_{split}_{i}"
                _frames(root / split / clip, (80 * c, 40, 200 - 60 * c), 2 + i % 3)
                _wav(root / split / clip / f"{clip}.wav", 220 * (c + 1))
                rows.append(f"{clip},{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def write_ave(root):
    for split, name, n in (("train", "trainSet.txt", 3), ("val", "valSet.txt", 1), ("test", "testSet.txt", 1)):
        lines = ["Category&VideoID&Quality&StartTime&EndTime"]
        for c, label in enumerate(("Church bell", "Male speech, man speaking")):
            for i in range(n):
                clip = f"v{c}{split}{i}"
                _frames(root / "visual" / clip, (100 * c, 90, 30), 3)
                (root / "audio").mkdir(parents=True, exist_ok=True)
                _wav(root / "audio" / f"{clip}.wav", 300 * (c + 1), seconds=2.0)
                lines.append(f"{label}&{clip}&good&0&10")
        (root / name).write_text("\n".join(lines) + "\n")
    return root


OPTIONS = dict(size=32, max_frames=3, frames=2)


def test_kinetics_sound_layout(tmp_path):
    splits = DATASETS.create("kinetics-sound", root=str(write_kinetics_sound(tmp_path / "ks")), **OPTIONS)
    assert splits.train.label_names == list(CLASSES) and len(splits.test) == 6
    assert (len(splits.train), len(splits.val)) == (27, 3)  # no val.csv: 10% of each class held out
    video, audio = splits.train.inputs["video"], splits.train.inputs["audio"]
    assert video.shape[1:] == (3, 3, 32, 32) and video.dtype == np.uint8 and audio.shape[1:] == (1, 257, 188)
    first = splits.ids["train"][0]
    clip = tmp_path / "ks" / "train" / first
    expected = Image.open(sorted(clip.glob("*.jpg"))[0]).convert("RGB").resize((32, 32), Image.BILINEAR)
    assert np.array_equal(video[0, 0], np.asarray(expected).transpose(2, 0, 1))
    import scipy.io.wavfile as wavfile

    rate, samples = wavfile.read(clip / f"{first}.wav")
    # int16 scaled by its range (/ 32768), as librosa reads it
    assert np.allclose(audio[0], ogm_ge_spectrogram(samples.astype(np.float32) / 32768, rate), atol=1e-5)
    again = DATASETS.create("kinetics-sound", root=str(tmp_path / "ks"), **OPTIONS)  # from the decoded cache
    assert np.array_equal(np.asarray(again.test.inputs["audio"]), np.asarray(splits.test.inputs["audio"]))


def test_ave_layout(tmp_path):
    splits = DATASETS.create("ave", root=str(write_ave(tmp_path / "ave")), **OPTIONS)
    assert splits.train.label_names == ["Church bell", "Male speech, man speaking"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 2)
    assert splits.info["expected_classes"] == 28 and splits.info["classes"] == 2


def test_missing_clips_are_named_or_become_missing(tmp_path):
    root = write_kinetics_sound(tmp_path / "ks")
    (root / "train" / "drums_train_1" / "drums_train_1.wav").unlink()
    for frame in (root / "test" / "piano_test_0").glob("*.jpg"):
        frame.unlink()
    with pytest.raises(DataError, match="clip 'drums_train_1', audio: .*drums_train_1.wav: audio file not found"):
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "c1"), **OPTIONS)
    splits = DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "c2"), bad_inputs=BadInputs("missing"),
                             **OPTIONS)
    assert splits.info["bad_inputs"]["marked_missing"] == 2
    ids = splits.ids["test"]
    assert not bool(splits.test.present["video"][ids.index("piano_test_0")])
    with pytest.raises(DataError, match="clip 'drums_train_1', audio"):  # the decoded cache keeps the error
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "c2"), **OPTIONS)
    with pytest.raises(DataError, match="test.csv: missing"):
        (root / "test.csv").unlink() or DATASETS.create("kinetics-sound", root=str(root), **OPTIONS)


def test_tiny_run_on_the_fixtures(tmp_path):
    root = write_kinetics_sound(tmp_path / "ks")
    out = tmp_path / "run"
    assert main(["run", "--config", "kinetics-sound", "--set", f"data.root={root}", "--set", "data.options.size=32",
                 "--set", "data.options.max_frames=3", "--set", "data.options.frames=2", "--set", "train.epochs=1",
                 "--set", "train.batch_size=4", "--set", "methods=[unimodal, ume, mma, ume-mma]", "--seeds", "0",
                 "--set", "train.device=cpu", "--out", str(out)]) == 0
    assert "| ume-mma |" in (out / "report.md").read_text() and (out / "model" / "config.json").is_file()
