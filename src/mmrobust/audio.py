"""One audio front-end: waveform -> fixed-size log spectrogram, with named presets.

Every dataset turns waveforms into spectrograms through :func:`spectrogram` and a preset,
so a model trained on one preset sees the same features at prediction time. Steps:
mono -> resample to ``sample_rate`` (scipy's polyphase filter) -> pad or crop to
``duration`` seconds -> magnitude STFT (``torch.stft``, Hann window) -> optional mel
filterbank (HTK formula) -> ``log(x + 1e-6)`` -> crop/pad to ``frames`` time frames.
Files are decoded by :func:`mmrobust.media.read_audio` (every common audio format).
"""
from __future__ import annotations

import functools

from dataclasses import asdict, dataclass
from math import gcd

import numpy as np
import torch

from .errors import UnknownNameError

LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class FrontEnd:
    """Settings of a waveform -> log spectrogram transform; output ``bins x frames``."""

    name: str
    sample_rate: int
    duration: float  # seconds; shorter clips are zero-padded at the end, longer ones cropped
    n_fft: int
    hop_length: int
    frames: int
    n_mels: int | None = None  # None: linear frequency bins (n_fft // 2 + 1)
    rms: float | None = None  # scale each clip to this root-mean-square level first (None: as recorded)

    @property
    def bins(self) -> int:
        return self.n_mels or self.n_fft // 2 + 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.bins, self.frames)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, FrontEnd] = {
    # the embedded digits dataset: 32 mel bins x 32 frames of 1 s at 8 kHz, each clip at the same
    # loudness (people record at different gains; a model should not learn the microphone)
    "digits": FrontEnd("digits", sample_rate=8000, duration=1.0, n_fft=256, hop_length=250, frames=32, n_mels=32,
                       rms=0.1),
    # AV-MNIST (MultiBench): 112 linear bins x 112 frames of 1 s at 8 kHz
    "avmnist": FrontEnd("avmnist", sample_rate=8000, duration=1.0, n_fft=222, hop_length=72, frames=112),
}


def get_preset(name: str) -> FrontEnd:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown audio front-end preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return wave.astype(np.float32)
    g = gcd(rate, target_rate)
    from scipy.signal import resample_poly  # here: scipy.signal takes a second to import, and most runs never resample

    return resample_poly(wave, target_rate // g, rate // g).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the clip's mean power."""
    power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-12
    noise = rng.normal(scale=np.sqrt(power / 10 ** (snr_db / 10)), size=wave.shape)
    return (wave + noise).astype(np.float32)


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def spectrogram(wave: np.ndarray, rate: int, preset: FrontEnd | str) -> np.ndarray:
    """A ``bins x frames`` float32 log spectrogram of a mono waveform."""
    fe = get_preset(preset) if isinstance(preset, str) else preset
    wave = fit_length(resample(np.asarray(wave, dtype=np.float32), rate, fe.sample_rate),
                      int(round(fe.duration * fe.sample_rate)))
    if fe.rms is not None:
        level = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
        wave = wave * np.float32(fe.rms / level) if level > 0 else wave
    stft = torch.stft(torch.from_numpy(wave), n_fft=fe.n_fft, hop_length=fe.hop_length,
                      window=torch.hann_window(fe.n_fft), center=True, return_complex=True)
    power = stft.abs().numpy()
    if fe.n_mels:
        power = mel_filterbank(fe.n_mels, fe.n_fft, fe.sample_rate) @ power
    log = np.log(power + LOG_FLOOR).astype(np.float32)
    if log.shape[1] < fe.frames:
        log = np.pad(log, ((0, 0), (0, fe.frames - log.shape[1])), constant_values=np.log(LOG_FLOOR))
    return log[:, : fe.frames]


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Triangular filters evenly spaced on the HTK mel scale from 0 Hz to Nyquist (read-only:
    one array per setting, shared by every clip)."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(0, to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    filters.setflags(write=False)
    return filters


OGM_GE_RATE, OGM_GE_SECONDS, OGM_GE_N_FFT, OGM_GE_HOP = 22050, 3, 512, 353


def ogm_ge_spectrogram(wave: np.ndarray, rate: int) -> np.ndarray:
    """The spectrogram OGM-GE (Peng et al., CVPR 2022) feeds its audio ResNet-18, ``1 x 257 x 188``:
    resample to 22,050 Hz; repeat the clip (``np.tile``, 3 times) and keep the first 3 s; clip to
    [-1, 1]; STFT with n_fft 512, hop 353, a periodic Hann window of 512, centred with zero
    padding (librosa's default); ``log(|S| + 1e-7)``."""
    wave = resample(np.asarray(wave, dtype=np.float32), rate, OGM_GE_RATE)
    n = OGM_GE_RATE * OGM_GE_SECONDS
    wave = np.clip(np.tile(wave, 3)[:n], -1.0, 1.0)
    if len(wave) < n:
        wave = np.pad(wave, (0, n - len(wave)))
    stft = torch.stft(torch.from_numpy(wave), n_fft=OGM_GE_N_FFT, hop_length=OGM_GE_HOP,
                      window=torch.hann_window(OGM_GE_N_FFT), center=True, pad_mode="constant", return_complex=True)
    return np.log(stft.abs().numpy() + 1e-7).astype(np.float32)[None]
