import numpy as np
import pytest
from scipy.io import wavfile

from mmrobust.audio import PRESETS, add_noise, get_preset, mel_filterbank, resample, spectrogram
from mmrobust.media import read_audio


def tone(rate=22050, seconds=0.7, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_give_their_shape(name):
    preset = get_preset(name)
    for seconds in (0.2, 1.0, 2.5):  # padded or cropped to the preset's duration
        spec = spectrogram(tone(seconds=seconds), 22050, preset)
        assert spec.shape == preset.shape and spec.dtype == np.float32 and np.isfinite(spec).all()
    assert max(get_preset("digits").shape) <= 64 and get_preset("avmnist").shape == (112, 112)


def test_a_tone_lights_up_its_frequency_band():
    spec = spectrogram(tone(rate=8000, freq=1000.0), 8000, "avmnist")
    expected_bin = round(1000.0 / (8000 / 2) * (112 - 1))
    assert abs(int(spec[:, 10].argmax()) - expected_bin) <= 1


def test_wav_round_trip_and_resampling(tmp_path):
    wave = tone()
    wavfile.write(tmp_path / "a.wav", 22050, (wave * 32767).astype(np.int16))
    read, rate = read_audio(tmp_path / "a.wav")
    assert rate == 22050 and np.allclose(read, wave, atol=1e-3)
    assert len(resample(read, 22050, 8000)) == pytest.approx(len(read) * 8000 / 22050, abs=1)


def test_bad_wavs_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    with pytest.raises(ValueError, match="junk.wav: not a readable .wav audio file"):
        read_audio(tmp_path / "junk.wav")


def test_noise_snr():
    wave = tone(seconds=2.0)
    noisy = add_noise(wave, -9.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(-9.0, abs=0.2)


def test_mel_filterbank_covers_the_band():
    bank = mel_filterbank(32, 256, 8000)
    assert bank.shape == (32, 129) and (bank.sum(axis=1) > 0).all() and bank.max() <= 1.0
    with pytest.raises(KeyError, match="unknown audio front-end preset"):
        get_preset("nope")


def _tone(n=8000):
    return (0.5 * np.sin(np.linspace(0, 50, n))).astype(np.float32)


def test_every_wav_format_decodes_to_the_same_wave(tmp_path):
    """Issue 17: scale per format first, then mix channels; unsigned 8-bit is centred."""
    tone = _tone()
    as_int16 = (tone * 32767).astype(np.int16)
    wavfile.write(tmp_path / "mono16.wav", 8000, as_int16)
    wavfile.write(tmp_path / "stereo16.wav", 8000, np.stack([as_int16, as_int16], axis=1))
    wavfile.write(tmp_path / "u8.wav", 8000, np.round(tone * 127 + 128).astype(np.uint8))
    wavfile.write(tmp_path / "f32.wav", 8000, tone)
    for name, tolerance in (("mono16", 1e-4), ("stereo16", 1e-4), ("u8", 1e-2), ("f32", 0)):
        wave, rate = read_audio(tmp_path / f"{name}.wav")
        assert rate == 8000 and np.abs(wave - tone).max() <= tolerance, name
    wavfile.write(tmp_path / "silence8.wav", 8000, np.full(800, 128, np.uint8))
    assert read_audio(tmp_path / "silence8.wav")[0].max() == 0  # no +0.5 offset


def test_implausible_or_broken_wavs_are_refused_naming_the_file(tmp_path):
    from mmrobust.errors import DataError

    wavfile.write(tmp_path / "rate1.wav", 1, _tone(2000))
    wavfile.write(tmp_path / "rate0.wav", 0, _tone(2000))
    nan = _tone()
    nan[5] = np.nan
    wavfile.write(tmp_path / "nan.wav", 8000, nan)
    for name, message in (("rate1", "says 1 Hz"), ("rate0", "says 0 Hz"), ("nan", "NaN or infinite samples")):
        with pytest.raises(DataError, match=rf"{name}.wav: .*{message}"):
            read_audio(tmp_path / f"{name}.wav")
