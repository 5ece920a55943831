"""Media files (issue 37): audio in every common format and video frames, from real files encoded
inside the test by libsndfile and FFmpeg; every damaged file named in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media_fixtures import VIDEO_CODECS, frame_colours, tone, write_audio, write_video
from mmrobust.errors import DataError
from mmrobust.media import evenly_spaced, is_media_suffix, media_kind, read_audio, read_video_frames

AUDIO_TOLERANCE = {".wav": 1e-4, ".flac": 1e-4, ".aiff": 1e-4, ".ogg": 0.03, ".mp3": 0.03, ".opus": 0.03, ".m4a": 0.03}


def _agrees(decoded: np.ndarray, source: np.ndarray, tolerance: float) -> bool:
    """Within the codec's tolerance away from the ends (encoders prime and pad), the same length
    up to one codec frame, and no delay (the correlation peaks at lag 0)."""
    n = len(source)
    if not n - 8 <= len(decoded) <= n + 2048:
        return False
    middle = slice(n // 10, n - n // 10)
    return float(np.abs(decoded[middle] - source[middle]).max()) <= tolerance


@pytest.mark.parametrize("suffix", sorted(AUDIO_TOLERANCE))
def test_every_common_audio_format_decodes_to_its_source(tmp_path, suffix):
    rate = 48000 if suffix == ".opus" else 16000  # Opus encodes at 48 kHz
    source = tone(rate=rate)
    wave, got_rate = read_audio(write_audio(tmp_path / f"a{suffix}", source, rate))
    assert got_rate == rate and wave.dtype == np.float32
    assert _agrees(wave, source, AUDIO_TOLERANCE[suffix]), suffix


def test_channels_are_averaged_after_scaling(tmp_path):
    left, right = tone(level=0.4), tone(freq=1000.0, level=0.2)
    wave, _ = read_audio(write_audio(tmp_path / "s.flac", np.stack([left, right], axis=1), 16000))
    assert np.abs(wave - (left + right) / 2).max() < 1e-4


@pytest.mark.parametrize("suffix", sorted(VIDEO_CODECS))
def test_a_videos_frames_are_evenly_spaced_and_its_sound_is_its_track(tmp_path, suffix):
    rate = 48000 if suffix == ".webm" else 16000
    sound = tone(rate=rate)
    path = write_video(tmp_path / f"v{suffix}", frames=20, audio=sound, rate=rate, shade=30)
    frames = read_video_frames(path, 5, 32)
    assert frames.shape == (5, 3, 32, 32) and frames.dtype == np.uint8
    colours = np.array(frame_colours(20))
    for picture, index in zip(frames, [0, 5, 10, 14, 19]):  # round(linspace(0, 19, 5))
        assert np.abs(picture[:, 16, 20].astype(int) - colours[index]).max() <= 8  # which frame: its colour
        assert np.abs(picture[:, 16, 2].astype(int) - 30).max() <= 12  # the bar: resized, not cropped
    wave, got_rate = read_audio(path)
    assert got_rate == rate and _agrees(wave, sound, 0.05)


def test_evenly_spaced_matches_the_frame_encoders_evaluation_sampling():
    import torch

    for total, n in ((20, 5), (3, 8), (1, 4), (250, 8)):
        expected = torch.linspace(0, total - 1, n).round().long().numpy()
        assert np.array_equal(evenly_spaced(total, n), expected)


def test_damaged_audio_is_one_line_naming_the_file(tmp_path):
    source = tone()
    whole = write_audio(tmp_path / "whole.wav", source, 16000).read_bytes()
    cases = {
        "half.wav": (whole[: len(whole) // 2], "declares 32,000 bytes of samples but the file holds 15,978"),
        "empty.ogg": (b"", "not a readable .ogg audio file"),
        "junk.mp3": (np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "not a readable .mp3"),
        "cut.flac": (write_audio(tmp_path / "f.flac", source, 16000).read_bytes()[:3000], "cut.flac: "),
        "junk.m4a": (b"\x00\x00\x00\x18ftypM4A " + bytes(64), "junk.m4a: not a readable audio or video file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=message) as caught:
            read_audio(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and "\n" not in str(caught.value), name
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        read_audio(tmp_path / "gone.flac")


def test_a_video_without_sound_or_a_sound_without_video_is_named(tmp_path):
    silent_film = write_video(tmp_path / "film.mp4", frames=6)
    with pytest.raises(DataError, match="film.mp4: no audio stream"):
        read_audio(silent_film)
    song = write_audio(tmp_path / "song.m4a", tone(), 16000)
    with pytest.raises(DataError, match="song.m4a: no video stream"):
        read_video_frames(song, 4, 32)


def test_damaged_videos_are_one_line_naming_the_file(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", frames=30).read_bytes()
    mkv = write_video(tmp_path / "whole.mkv", frames=30).read_bytes()
    cases = {"empty.mp4": b"", "head.mp4": whole[:200], "junk.webm": bytes(range(256)) * 8, "cut.mkv": mkv[: len(mkv) // 3]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError) as caught:
            read_video_frames(tmp_path / name, 8, 32)
        assert str(caught.value).startswith(str(tmp_path / name)) and "\n" not in str(caught.value), name
    with pytest.raises(FileNotFoundError, match="no such video file"):
        read_video_frames(tmp_path / "gone.mp4", 8, 32)


@pytest.mark.parametrize("cell,kind", [
    ("a/b.png", "image"), ("x.JPEG", "image"), ("s.wav", "audio"), ("s.FLAC", "audio"), ("s.ogg", "audio"),
    ("s.opus", "audio"), ("s.mp3", "audio"), ("s.m4a", "audio"), ("s.aiff", "audio"), ("c.mp4", "video"),
    ("c.mkv", "video"), ("c.webm", "video"), ("c.avi", "video"), ("c.mov", "video"), ("f.npy", "features"),
    ("d.svg", None), ("c.3gp", None), ("notes.txt", None),
])
def test_media_kind_by_suffix(cell, kind):
    assert media_kind(cell) == kind


def test_media_suffixes_known_or_not():
    for cell in ("d.svg", "c.3gp", "s.wma", "x.npz", "s.OGG", "sounds/cat.ogg"):
        assert is_media_suffix(cell), cell
    for cell in ("a cat that meows.", "version 2.0", "Hello world.mp3 is great", "readme", "notes.txt"):
        assert not is_media_suffix(cell), cell


def test_predict_never_reads_a_file_path_as_a_models_text(tmp_path):
    """Issue 37: no media path reaches the text encoder, in `predict` either."""
    from mmrobust.errors import InputError
    from mmrobust.inputs import _check_texts as _no_paths

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "cat note").write_text("a cat")
    for value in ("sounds/cat/1.ogg", "clip.MP4", "notes/cat note", str(tmp_path / "notes" / "cat note")):
        with pytest.raises(InputError, match="is a file path, but this model reads caption as text"):
            _no_paths("caption", [value], tmp_path)
    _no_paths("caption", ["a cat that meows", "see figure.png below", "version 2.0", "N/A", np.zeros(3)], tmp_path)


def test_a_text_with_undecodable_bytes_is_one_line():
    """Issue 38: `--input text=` with non-UTF-8 bytes (a lone surrogate once decoded by Python)
    was a tokenizer traceback."""
    from mmrobust.errors import InputError
    from mmrobust.inputs import _check_texts

    undecodable = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # as sys.argv holds it
    with pytest.raises(InputError, match="caption: the text is not valid UTF-8 \\(an undecodable byte at character 4\\)"):
        _check_texts("caption", [undecodable], Path("."))
    _check_texts("caption", ["café au lait"], Path("."))
