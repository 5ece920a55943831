"""Kinetics-Sound and AVE in OGM-GE's layout, on small fixtures written with real JPEGs and WAVs."""
from __future__ import annotations

import os

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


def write_ave_as_released(root):
    """AVE's lists in their released form (rows Category&VideoID&Quality&StartTime&EndTime, a
    header, CRLF): one video listed twice in training with two categories (one video, two events),
    one video in both training and test, one in both training and validation. AVE's own lists are
    not in any public repository we can fetch, so these are generated in their format."""
    rows = {"trainSet.txt": [("Church bell", "a0"), ("Church bell", "a1"), ("Male speech, man speaking", "b0"),
                             ("Male speech, man speaking", "b1"), ("Male speech, man speaking", "a1"),  # a1: twice
                             ("Church bell", "t0"), ("Church bell", "v0")],  # t0 also in test, v0 also in val
            "valSet.txt": [("Church bell", "v0"), ("Male speech, man speaking", "v1")],
            "testSet.txt": [("Church bell", "t0"), ("Male speech, man speaking", "t1")]}
    for name, listed in rows.items():
        lines = ["Category&VideoID&Quality&StartTime&EndTime"] + [f"{c}&{v}&good&0&10" for c, v in listed]
        (root).mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
        for c, clip in listed:
            _frames(root / "visual" / clip, (90, 90, 30), 2)
            (root / "audio").mkdir(parents=True, exist_ok=True)
            _wav(root / "audio" / f"{clip}.wav", 300 if c == "Church bell" else 600, seconds=1.0)
    return root


def test_ave_released_lists_one_row_per_video_never_in_training_if_evaluated(tmp_path):
    """Issue 27: the released lists stopped the run ('appears twice'); through Python a repeated
    video became two training rows with identical inputs and different labels."""
    root = write_ave_as_released(tmp_path / "ave")
    with pytest.warns(UserWarning, match=r"AVE lists: 1 repeated listing\(s\) in train dropped \(the last kept\); "
                                         r"2 video\(s\) left out of train"):
        splits = DATASETS.create("ave", root=str(root), **OPTIONS)
    assert splits.ids["train"] == ["a0", "b0", "b1", "a1"]  # a1's last listing: male speech
    names = splits.train.label_names
    assert names[int(splits.train.target[splits.ids["train"].index("a1")])] == "Male speech, man speaking"
    assert sorted(splits.ids["val"]) == ["v0", "v1"] and sorted(splits.ids["test"]) == ["t0", "t1"]
    assert splits.info["list_repairs"] == {"repeated": {"train": 1}, "cross_split": {"train": 2}}
    out = tmp_path / "run"
    assert main(["run", "--config", "ave", "--set", f"data.root={root}", "--set", "data.options.size=32",
                 "--set", "data.options.max_frames=3", "--set", "data.options.frames=2", "--set", "train.epochs=1",
                 "--set", "train.batch_size=4", "--set", "methods=[unimodal, ume]", "--seeds", "0",
                 "--set", "protocols=[full, miss:audio]", "--set", "train.device=cpu", "--out", str(out)]) == 0
    provenance = (out / "provenance.json").read_text()
    assert "repeated listing" in provenance and "repeated listing" in (out / "report.md").read_text()


KS_TRAIN = [(f"-{i}q_33gN{label:02d}_{10 * i:06d}_{10 * i + 10:06d}", label) for i in range(6) for label in (4, 27, 0)]
KS_TEST = [("-2oxE_Uygtc_000000_000010", 4), ("-3g7Ujx5cpM_000019_000029", 27), ("-4RyCwHuG9k_000030_000040", 0)]


def write_ks_published(root, media):
    """The published lists as OGM-GE ships them (data/KineticSound/my_train.txt, my_test.txt, MIT:
    CRLF, no header, 'clip,10,label_index') with
    tiny media (ids shaped like its clips') in one of the layouts peers read: ``wav`` (visual/ + audio/<clip>.wav), ``npy`` or
    ``pkl`` (visual/ + audio_spec/<clip>.npy | .pkl, 257 x 188), ``folders`` ({train,test}/<clip>/)."""
    import pickle

    for name, rows in (("my_train.txt", KS_TRAIN), ("my_test.txt", KS_TEST)):
        root.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes("".join(f"{clip},10,{label}\r\n" for clip, label in rows).encode())
        split = "train" if name == "my_train.txt" else "test"
        for clip, label in rows:
            frames = root / (split if media == "folders" else "visual") / clip
            _frames(frames, (6 * label, 40, 90), 3)
            spectrogram = np.full((257, 188), float(label), dtype=np.float32)
            if media == "folders":
                _wav(frames / f"{clip}.wav", 200 + 20 * label)
            elif media == "wav":
                (root / "audio").mkdir(exist_ok=True)
                _wav(root / "audio" / f"{clip}.wav", 200 + 20 * label)
            else:
                (root / "audio_spec").mkdir(exist_ok=True)
                if media == "npy":
                    np.save(root / "audio_spec" / f"{clip}.npy", spectrogram)
                else:
                    (root / "audio_spec" / f"{clip}.pkl").write_bytes(pickle.dumps(spectrogram))
    return root


@pytest.mark.parametrize("media", ["wav", "npy", "pkl", "folders"])
def test_kinetics_sound_published_lists_with_each_media_layout(tmp_path, media):
    """Issue 27: the published lists were refused (train.csv wanted), and their labels sorted as text."""
    root = write_ks_published(tmp_path / "ks", media)
    splits = DATASETS.create("kinetics-sound", root=str(root), **OPTIONS)
    assert splits.train.label_names == ["0", "4", "27"]  # numeric order, not '0', '27', '4'
    ids = splits.ids["train"] + splits.ids["val"]
    assert sorted(ids) == sorted(c for c, _ in KS_TRAIN) and splits.ids["test"] == [c for c, _ in KS_TEST]
    if media in ("npy", "pkl"):  # the precomputed spectrogram as stored
        row = splits.ids["test"].index("-3g7Ujx5cpM_000019_000029")
        assert np.array_equal(np.asarray(splits.test.inputs["audio"][row]), np.full((1, 257, 188), 27.0, dtype=np.float32))
    if media == "npy":  # the whole pipeline on the published lists, to a report
        out = tmp_path / "run"
        assert main(["run", "--config", "kinetics-sound", "--set", f"data.root={root}", "--set", "data.options.size=32",
                     "--set", "data.options.max_frames=3", "--set", "data.options.frames=2", "--set", "train.epochs=1",
                     "--set", "train.batch_size=4", "--set", "methods=[unimodal, ume]", "--seeds", "0",
                     "--set", "protocols=[full, miss:audio]", "--set", "train.device=cpu", "--out", str(out)]) == 0
        assert "| ume |" in (out / "report.md").read_text()
    (root / "classes.txt").write_text("\n".join(f"class {i}" for i in range(31)) + "\n")
    named = DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "c2"), **OPTIONS)
    assert named.train.label_names == ["class 0", "class 4", "class 27"]


def test_a_pickled_spectrogram_may_only_hold_an_array(tmp_path):
    import pickle

    root = write_ks_published(tmp_path / "ks", "pkl")
    class Payload:  # what a hostile pickle does: name a callable to run while loading
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    (root / "audio_spec" / f"{KS_TEST[0][0]}.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match="not a readable spectrogram .*refused: the pickle names .*system"):
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "a"), **OPTIONS)
    assert not (tmp_path / "ran").exists()
    (root / "audio_spec" / f"{KS_TEST[0][0]}.pkl").write_bytes(pickle.dumps({"not": "an array"}))
    with pytest.raises(DataError, match="not a readable spectrogram .holds a dict, not an array"):
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "b"), **OPTIONS)
    (root / "audio_spec" / f"{KS_TEST[0][0]}.pkl").write_bytes(pickle.dumps(np.zeros((3, 4), dtype=np.float32)))
    with pytest.raises(DataError, match=r"a spectrogram of shape \[3, 4\]; expected \[257, 188\]"):
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "c"), **OPTIONS)


def write_ave_videos(root):
    """AVE as released: AVE/<VideoID>.mp4 (frames and sound in one file) and the three lists."""
    from media_fixtures import tone, write_video

    for split, name, n in (("train", "trainSet.txt", 3), ("val", "valSet.txt", 1), ("test", "testSet.txt", 1)):
        lines = ["Category&VideoID&Quality&StartTime&EndTime"]
        for c, label in enumerate(("Church bell", "Male speech, man speaking")):
            for i in range(n):
                clip = f"v{c}{split}{i}"
                write_video(root / "AVE" / f"{clip}.mp4", frames=12, fps=6, audio=tone(rate=22050, freq=300.0 * (c + 1)),
                            rate=22050, shade=40 + 150 * c)
                lines.append(f"{label}&{clip}&good&0&10")
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_ave_and_kinetics_sound_read_the_downloaded_videos(tmp_path):
    """Issue 37: the videos themselves, no frames or WAVs extracted beforehand."""
    from media_fixtures import frame_colours, tone

    splits = DATASETS.create("ave", root=str(write_ave_videos(tmp_path / "ave")), **OPTIONS)
    video = np.asarray(splits.train.inputs["video"])
    assert video.shape == (len(splits.train), 3, 3, 32, 32)
    colours = np.array(frame_colours(12))
    for k, index in enumerate((0, 6, 11)):  # 3 frames evenly spaced over 12: round(linspace(0, 11, 3))
        assert np.abs(video[0, k, :, 16, 20].astype(int) - colours[index]).max() <= 8
    row = splits.ids["test"].index("v1test0")
    expected = ogm_ge_spectrogram(tone(rate=22050, freq=600.0), 22050)  # the source's sound, not the decoded one
    decoded = np.asarray(splits.test.inputs["audio"])[row][0, :, 5:55]  # the first second (the clip repeats after)
    source = expected[0, :, 5:55]
    assert np.array_equal(decoded.argmax(0), source.argmax(0))  # the tone's bin (600 Hz: 14 of 257), every frame
    loud = source > 0  # the tone's bins; the codec's noise floor lies far below them
    assert loud.sum() >= 50 and np.abs(decoded[loud] - source[loud]).max() < 0.1
    (tmp_path / "ave" / "AVE" / "v0train1.mp4").write_bytes(b"")  # a damaged download: missing, or named
    import shutil

    shutil.rmtree(tmp_path / "ave" / ".mmrobust")
    with pytest.raises(DataError, match="train clip 'v0train1', video: .*v0train1.mp4: not a readable video file"):
        DATASETS.create("ave", root=str(tmp_path / "ave"), **OPTIONS)
    missing = DATASETS.create("ave", root=str(tmp_path / "ave"), bad_inputs=BadInputs("missing"), **OPTIONS)
    assert len(missing.train) == 5  # the damaged clip has nothing readable left


def test_odd_lists_and_pickles_are_one_line_or_read_as_meant(tmp_path):
    """Issue 38: a BOM in AVE's lists made a phantom class; a published label beyond 0-30 with no
    class names became a new class; three clips a class left no validation clip; a pickled
    spectrogram of strings, or one calling numpy.dtype('zzz'), was a traceback."""
    import pickle

    ave = write_ave(tmp_path / "ave")
    plain = DATASETS.create("ave", root=str(ave), **OPTIONS).train.label_names
    for name in ("trainSet.txt", "valSet.txt", "testSet.txt"):
        (ave / name).write_bytes(b"\xef\xbb\xbf" + (ave / name).read_bytes())
    assert DATASETS.create("ave", root=str(ave), cache_dir=str(tmp_path / "bom"), **OPTIONS).train.label_names == plain

    root = write_ks_published(tmp_path / "ks", "npy")
    lines = (root / "my_train.txt").read_bytes().decode().splitlines(keepends=True)
    (root / "my_train.txt").write_text("".join(lines[:-1]) + lines[-1].replace(lines[-1].split(",")[2], "31\r\n"))
    with pytest.raises(DataError, match=r"my_train.txt, line \d+: label 31, but Kinetics-Sound's published labels run "
                                        r"from 0 to 30"):
        DATASETS.create("kinetics-sound", root=str(root), cache_dir=str(tmp_path / "k1"), **OPTIONS)

    few = write_ave(tmp_path / "few")
    (few / "valSet.txt").unlink()  # 3 training clips a class and no validation list: one each is held out
    splits = DATASETS.create("ave", root=str(few), **OPTIONS)
    assert len(splits.val) == 2 and sorted(splits.val.target.tolist()) == [0, 1]

    spec = write_ks_published(tmp_path / "ks2", "pkl") / "audio_spec" / f"{KS_TEST[0][0]}.pkl"
    strings = np.array([["a"] * 188] * 257)
    dtype_call = b"cnumpy\ndtype\n(Vzzz\ntR."  # a pickle that calls numpy.dtype('zzz')
    class Huge:  # a few dozen bytes asking numpy for 931 GiB of float32 (or 1.8 TiB of float64)
        def __init__(self, call):
            self.call = call

        def __reduce__(self):
            return self.call

    from numpy._core.multiarray import _reconstruct

    huge = pickle.dumps(Huge((np.ndarray, ((250_000_000_000,),))), protocol=2)
    huge_reconstruct = pickle.dumps(Huge((_reconstruct, (np.ndarray, (250_000_000_000,), "f"))), protocol=2)
    assert len(huge) < 100
    for i, content in enumerate((pickle.dumps(strings), dtype_call, huge, huge_reconstruct)):
        spec.write_bytes(content)
        with pytest.raises(DataError, match=f"{KS_TEST[0][0]}.pkl: not a readable spectrogram") as caught:
            DATASETS.create("kinetics-sound", root=str(spec.parent.parent), cache_dir=str(tmp_path / f"p{i}"), **OPTIONS)
        assert i < 2 or "it asks for an array of 250,000,000,000 values" in str(caught.value)
