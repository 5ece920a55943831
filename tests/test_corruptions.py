"""Corruptions (issue 39): each against a hand computation or a second implementation, severities
that grow where they should, and the same draw from the same seed."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from mmrobust.corruptions import AUDIO, IMAGE, SEVERITIES, TEXT, corrupt_clip, corrupt_picture, corrupt_text
from mmrobust.errors import ProtocolError


@pytest.fixture(scope="module")
def digits():
    """Forty real MNIST test pictures (the embedded digits keep them), 1 x 28 x 28 in [0, 1]."""
    from mmrobust.data.digits import load_digits_arrays

    splits, _ = load_digits_arrays()
    return splits["test"]["image_raw"][:40].astype(np.float64)


@pytest.fixture(scope="module")
def speech():
    """A real recording where the shared data is here, else a voiced synthetic vowel (8 kHz)."""
    from pathlib import Path

    from mmrobust.media import read_audio

    files = sorted(Path(__file__).resolve().parents[2].glob("shared/data/fsdd/recordings/*.wav"))
    if files:
        clip = read_audio(files[0])
        return (clip[0] if isinstance(clip, tuple) else clip).astype(np.float64), 8000
    t = np.arange(8000) / 8000
    return 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * np.sin(2 * np.pi * 900 * t), 8000


@pytest.mark.parametrize("name", [n for n in IMAGE if n not in ("brightness", "contrast")])
def test_every_image_corruption_grows_with_severity_on_real_digits(name, digits):
    changed = [np.mean([np.abs(corrupt_picture(x, name, s, np.random.default_rng(i)) - x).mean()
                        for i, x in enumerate(digits)]) for s in SEVERITIES]
    assert changed[0] > 0 and changed[-1] > changed[0]
    assert all(b >= a - 0.003 for a, b in zip(changed, changed[1:])), changed  # monotone up to JPEG's block noise


def test_gaussian_noise_contrast_and_brightness_by_hand(digits):
    x = digits[0]
    noise = np.random.default_rng(3).normal(0.0, 0.18, x.shape)  # severity 3: sigma 0.18 (ImageNet-C)
    assert np.allclose(corrupt_picture(x, "gaussian-noise", 3, np.random.default_rng(3)), np.clip(x + noise, 0, 1), atol=1e-6)
    assert np.allclose(corrupt_picture(x, "contrast", 1, None), np.clip((x - x.mean()) * 0.4 + x.mean(), 0, 1), atol=1e-6)
    assert np.allclose(corrupt_picture(x, "brightness", 5, None), np.clip(x + 0.5, 0, 1), atol=1e-6)
    rgb = np.random.default_rng(0).random((3, 4, 5))
    hand = np.empty_like(rgb)
    for i in range(4):
        for j in range(5):  # the standard library's HSV, pixel by pixel
            h, s, v = colorsys.rgb_to_hsv(*rgb[:, i, j])
            hand[:, i, j] = colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1.0))
    assert np.allclose(corrupt_picture(rgb, "brightness", 2, None), hand, atol=1e-6)


def test_pixelate_averages_blocks_and_blur_spreads_a_point_by_its_sigma():
    x = np.arange(16, dtype=float).reshape(1, 4, 4) / 15
    halved = corrupt_picture(x, "pixelate", 2, None)  # severity 2 keeps half the resolution: 2 x 2 blocks
    block = np.round(x * 255)[0, :2, :2].mean() / 255
    assert halved[0, 0, 0] == pytest.approx(block, abs=0.6 / 255) and np.allclose(halved[0, :2, :2], halved[0, 0, 0])
    point = np.zeros((1, 65, 65))
    point[0, 32, 32] = 1.0
    blurred = corrupt_picture(point, "blur", 5, None)[0].astype(np.float64)
    rows = np.arange(65) - 32
    variance = (blurred.sum(1) * rows ** 2).sum() / blurred.sum()
    assert variance == pytest.approx((1.0 * 65 / 32) ** 2, rel=0.02)  # sigma 1.0 at a side of 32, in proportion


def test_shift_moves_the_centre_of_mass_rotation_by_90_is_a_quarter_turn_occlusion_covers_its_square():
    x = np.zeros((1, 40, 40))
    x[0, 17:23, 15:21] = 1.0
    rng = np.random.default_rng(7)
    angle = np.random.default_rng(7).uniform(0, 2 * np.pi)  # the direction the corruption draws first
    moved = corrupt_picture(x, "shift", 4, rng)[0]  # 0.2 of 40 pixels
    rows, cols = np.indices(moved.shape)
    centre = np.array([(rows * moved).sum(), (cols * moved).sum()]) / moved.sum()
    assert centre == pytest.approx([19.5 + 8 * np.sin(angle), 17.5 + 8 * np.cos(angle)], abs=0.05)
    turned = corrupt_picture(x, "rotation", 5, np.random.default_rng(0))[0]
    assert any(np.allclose(turned, np.rot90(x[0], k), atol=1e-6) for k in (1, -1))
    covered = corrupt_picture(np.zeros((3, 20, 20)), "occlusion", 3, np.random.default_rng(0))
    assert (covered == 0.5).sum() == 3 * 8 * 8  # round(0.4 x 20) = 8


def test_impulse_noise_hits_its_share_and_scale_shrinks_about_the_centre():
    x = np.full((3, 100, 100), 0.5)
    salted = corrupt_picture(x, "impulse-noise", 4, np.random.default_rng(0))  # 17% of pixels (ImageNet-C)
    hit = salted[0] != 0.5
    assert hit.mean() == pytest.approx(0.17, abs=0.01) and np.all((salted[:, hit] == 0) | (salted[:, hit] == 1))
    assert np.array_equal(salted[0] != 0.5, salted[2] != 0.5), "a pixel is hit in every channel"
    blob = np.zeros((1, 41, 41))
    blob[0, 10:31, 15:26] = 1.0  # 21 x 11 about the centre (20, 20)
    shrunk = corrupt_picture(blob, "scale", 5, None)[0]  # half the size
    rows, cols = np.indices(shrunk.shape)
    assert [(rows * shrunk).sum() / shrunk.sum(), (cols * shrunk).sum() / shrunk.sum()] == pytest.approx([20, 20], abs=1e-6)
    assert shrunk.sum() == pytest.approx(blob.sum() / 4, rel=0.05)


def test_audio_noise_hits_its_signal_to_noise_ratio_and_gain_clipping_low_pass_do_what_they_say(speech):
    clip, rate = speech
    for severity, snr in zip(SEVERITIES, (20, 15, 10, 5, 0)):
        noisy = corrupt_clip(clip, rate, "gaussian-noise", severity, np.random.default_rng(severity))
        measured = 10 * np.log10(np.mean(clip ** 2) / np.mean((noisy - clip) ** 2))
        assert measured == pytest.approx(snr, abs=0.3)
    assert np.abs(corrupt_clip(clip, rate, "gain", 2, None)).max() == pytest.approx(np.abs(clip).max() * 10 ** (-12 / 20), rel=1e-5)
    clipped = corrupt_clip(clip, rate, "clipping", 3, None)
    assert np.mean(np.abs(clipped) >= np.abs(clipped).max() - 1e-7) == pytest.approx(0.2, abs=0.01)
    t = np.arange(8000) / 8000
    low, high = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 2500 * t)  # cut-off at severity 3: 500 Hz
    power = [np.mean(corrupt_clip(s, 8000, "low-pass", 3, None)[1000:-1000] ** 2) / np.mean(s ** 2) for s in (low, high)]
    assert 10 * np.log10(power[0]) > -1 and 10 * np.log10(power[1]) < -40


def test_the_codec_keeps_the_length_and_loses_more_at_lower_bit_rates(speech):
    clip, rate = speech
    errors = [np.mean((corrupt_clip(clip, rate, "codec", s, None) - clip) ** 2) for s in (1, 5)]
    assert corrupt_clip(clip, rate, "codec", 5, None).shape == clip.shape
    assert errors[1] > 1.5 * errors[0] > 0


def test_texts_blank_drop_and_mistype_words_at_their_rate():
    text = " ".join(f"word{i}" for i in range(2000))
    rng = np.random.default_rng(0)
    blanked = corrupt_text(text, "blank-words", 1, rng).split(" ")
    assert len(blanked) == 2000 and np.mean([w == "" for w in blanked]) == pytest.approx(0.2, abs=0.03)
    assert corrupt_text("a b c", "blank-words", 5, rng).strip() == ""  # QMF's epsilon 10: every word
    assert len(corrupt_text(text, "drop-words", 5, rng).split()) == pytest.approx(1000, abs=80)
    typed = corrupt_text(text, "typos", 2, rng).split(" ")
    changed = [(a, b) for a, b in zip(text.split(" "), typed) if a != b]
    assert len(changed) / 2000 == pytest.approx(0.2, abs=0.03)
    assert all(abs(len(a) - len(b)) <= 1 and (len(a) != len(b) or sorted(a) == sorted(b)) for a, b in changed)


@pytest.mark.parametrize("table, make", [(IMAGE, lambda: np.random.default_rng(1).random((1, 12, 12))),
                                         (TEXT, lambda: "one two three four five six")])
def test_the_same_seed_gives_the_same_corruption(table, make):
    apply = corrupt_picture if table is IMAGE else corrupt_text
    for name in table:
        first, second = (apply(make(), name, 4, np.random.default_rng(11)) for _ in range(2))
        assert np.array_equal(np.asarray(first), np.asarray(second))


def test_unknown_kinds_and_severities_are_refused_by_name():
    with pytest.raises(ProtocolError, match="no image corruption 'fog'; expected one of gaussian-noise, blur"):
        corrupt_picture(np.zeros((1, 4, 4)), "fog", 1, None)
    with pytest.raises(ProtocolError, match="severity 6, expected one of 1-5"):
        corrupt_clip(np.zeros(10), 8000, "gain", 6, None)
    assert set(AUDIO) == {"gaussian-noise", "clipping", "gain", "low-pass", "codec"}
