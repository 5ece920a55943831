"""Degraded inputs in grades: what a sensor sends between clean and broken (``corrupt:`` masks).

A *corruption* changes one raw input (a picture, a clip, a text) at a severity from 1 (mild) to
5 (severe), drawing what it draws from the generator it is given. Its parameter at each severity
comes from the benchmark the field uses for that kind, where there is one:

- pictures (``C x H x W`` in [0, 1], grey or RGB) — ImageNet-C's (Hendrycks & Dietterich, ICLR
  2019) levels for ``gaussian-noise``, ``contrast``, ``brightness``, ``jpeg`` and ``pixelate``;
  its blur's, on CIFAR-10-C's scale (a picture's side of 32 pixels, in proportion for others);
  ImageNet-C's ``impulse-noise``; ``shift``, ``rotation``, ``scale`` (MNIST-C's kinds, Mu &
  Gilmer 2019) and ``occlusion`` (a grey square, cutout-style) in steps of our choosing, each
  stated in :data:`IMAGE`;
- clips (mono float waveforms, with their rate) — ``gaussian-noise`` at a signal-to-noise ratio of
  20 to 0 dB (READ, ICLR 2024, and audiomentations' ``AddGaussianSNR``), ``clipping`` of the
  loudest 5-40% of samples (audiomentations' ``ClippingDistortion``), ``gain`` down 6 to 30 dB,
  ``low-pass`` (a 4th-order Butterworth filter, cut-off 1/2 to 1/16 of the Nyquist frequency) and
  ``codec`` (MP3 at 64 to 8 kbit/s through FFmpeg, PyAV);
- texts — ``blank-words`` (QMF, ICML 2023: each word blanked with probability 0.1·ε, ε = 2 ×
  severity), ``drop-words`` (each word removed) and ``typos`` (each word given one swapped,
  dropped or repeated character), with probability 0.1 to 0.5.

Pure NumPy/SciPy, Pillow for JPEG and pixelation and PyAV for the codec (both already read media
files here). The same generator state gives the same corruption (the protocol seeds it per
modality, kind and severity).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage, signal

from .errors import ProtocolError

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption: its parameter at severities 1-5 (in ``unit``) and what it does."""

    name: str
    levels: tuple
    unit: str
    apply: Callable[..., Any]  # (input, level, rng[, rate]) -> corrupted input

    def level(self, severity: int) -> Any:
        if severity not in SEVERITIES:
            raise ProtocolError(f"corruption {self.name!r}: severity {severity!r}, expected one of 1-5")
        return self.levels[severity - 1]


# --- pictures ------------------------------------------------------------------------------

def _gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0.0, sigma, x.shape), 0.0, 1.0)


def _blur(x: np.ndarray, sigma_at_32: float, rng: np.random.Generator) -> np.ndarray:
    sigma = sigma_at_32 * max(x.shape[1:]) / 32
    return np.stack([ndimage.gaussian_filter(channel, sigma, mode="nearest") for channel in x])


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - mean) * factor + mean, 0.0, 1.0)


def _brightness(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C's: ``amount`` added to the value channel in HSV (to the grey level of a grey picture)."""
    if len(x) == 1:
        return np.clip(x + amount, 0.0, 1.0)
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(np.moveaxis(x, 0, -1))
    hsv[..., 2] = np.clip(hsv[..., 2] + amount, 0.0, 1.0)
    return np.moveaxis(hsv_to_rgb(hsv), -1, 0)


def _to_pil(x: np.ndarray) -> Any:
    from PIL import Image

    pixels = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(pixels[0] if len(x) == 1 else np.moveaxis(pixels, 0, -1))


def _from_pil(image: Any, channels: int) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return pixels[None] if channels == 1 else np.moveaxis(pixels, -1, 0)


def _jpeg(x: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    _to_pil(x).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    from PIL import Image

    return _from_pil(Image.open(buffer).convert("L" if len(x) == 1 else "RGB"), len(x))


def _pixelate(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    image = _to_pil(x)
    small = image.resize((max(1, int(image.width * factor)), max(1, int(image.height * factor))), Image.BOX)
    return _from_pil(small.resize(image.size, Image.BOX), len(x))


def _shift(x: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Moved by ``share`` of its side in a random direction (the background, 0, fills in)."""
    angle = rng.uniform(0, 2 * np.pi)
    side = max(x.shape[1:])
    offset = (0.0, share * side * np.sin(angle), share * side * np.cos(angle))
    return np.clip(ndimage.shift(x, offset, order=1, mode="constant", cval=0.0), 0.0, 1.0)


def _rotation(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Turned by ``degrees`` either way about its centre (the background, 0, fills in)."""
    turn = degrees * rng.choice([-1.0, 1.0])
    return np.clip(ndimage.rotate(x, turn, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0), 0.0, 1.0)


def _impulse_noise(x: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: ``share`` of the pixels (all channels of each) set to 0 or 1, half each."""
    hit = rng.random(x.shape[1:]) < share
    salt = rng.random(x.shape[1:]) < 0.5
    return np.where(hit, salt.astype(float), x)


def _scale(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Shrunk by ``factor`` about its centre (the background, 0, fills in)."""
    h, w = x.shape[1:]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    # output pixel p samples the input at centre + (p - centre) / factor
    return np.stack([ndimage.affine_transform(channel, np.eye(2) / factor, offset=centre - centre / factor,
                                              order=1, mode="constant", cval=0.0) for channel in x])


def _occlusion(x: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A grey (0.5) square of side ``share`` of the picture's, at a random place inside it."""
    h, w = x.shape[1:]
    size_h, size_w = max(1, round(share * h)), max(1, round(share * w))
    top, left = rng.integers(0, h - size_h + 1), rng.integers(0, w - size_w + 1)
    out = x.copy()
    out[:, top:top + size_h, left:left + size_w] = 0.5
    return out


IMAGE = {c.name: c for c in (
    Corruption("gaussian-noise", (0.08, 0.12, 0.18, 0.26, 0.38), "standard deviation (ImageNet-C)", _gaussian_noise),
    Corruption("blur", (0.4, 0.6, 0.7, 0.8, 1.0), "Gaussian sigma in pixels at a side of 32 (CIFAR-10-C)", _blur),
    Corruption("contrast", (0.4, 0.3, 0.2, 0.1, 0.05), "contrast factor (ImageNet-C)", _contrast),
    Corruption("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), "added to the value channel (ImageNet-C)", _brightness),
    Corruption("jpeg", (25, 18, 15, 10, 7), "JPEG quality (ImageNet-C)", _jpeg),
    Corruption("pixelate", (0.6, 0.5, 0.4, 0.3, 0.25), "resolution kept (ImageNet-C)", _pixelate),
    Corruption("shift", (0.05, 0.1, 0.15, 0.2, 0.25), "share of the side moved", _shift),
    Corruption("rotation", (15, 30, 45, 60, 90), "degrees turned", _rotation),
    Corruption("occlusion", (0.2, 0.3, 0.4, 0.5, 0.6), "side of the grey square, a share of the picture's", _occlusion),
    Corruption("impulse-noise", (0.03, 0.06, 0.09, 0.17, 0.27), "share of pixels set to 0 or 1 (ImageNet-C)", _impulse_noise),
    Corruption("scale", (0.9, 0.8, 0.7, 0.6, 0.5), "size kept, about the centre (MNIST-C's kind)", _scale),
)}


# --- clips ---------------------------------------------------------------------------------

def _noise_at_snr(x: np.ndarray, snr_db: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    power = float(np.mean(np.square(x, dtype=np.float64)))
    return x + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.shape)


def _clipping(x: np.ndarray, share: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    """The loudest ``share`` of samples cut to the level of the quietest of them."""
    level = float(np.quantile(np.abs(x), 1 - share))
    return np.clip(x, -level, level)


def _gain(x: np.ndarray, db: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    return x * 10 ** (db / 20)


def _low_pass(x: np.ndarray, share_of_nyquist: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    sos = signal.butter(4, share_of_nyquist, btype="low", output="sos")
    return signal.sosfiltfilt(sos, x)


def _codec(x: np.ndarray, kbits: int, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Through an MP3 encoder at ``kbits`` kbit/s and back (FFmpeg's, in PyAV), length kept."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("mp3", rate=rate)
        stream.bit_rate = int(kbits) * 1000
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.clip(x, -1, 1).astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) if f.format.is_planar else f.to_ndarray().reshape(-1)
                                  for f in container.decode(audio=0)])
    out = np.zeros(len(x))
    out[:min(len(x), len(decoded))] = decoded[:len(x)]
    return out


AUDIO = {c.name: c for c in (
    Corruption("gaussian-noise", (20, 15, 10, 5, 0), "signal-to-noise ratio in dB", _noise_at_snr),
    Corruption("clipping", (0.05, 0.1, 0.2, 0.3, 0.4), "share of samples clipped", _clipping),
    Corruption("gain", (-6, -12, -18, -24, -30), "dB", _gain),
    Corruption("low-pass", (0.5, 0.25, 0.125, 0.09375, 0.0625), "cut-off, a share of the Nyquist frequency", _low_pass),
    Corruption("codec", (64, 32, 24, 16, 8), "MP3 kbit/s", _codec),
)}


# --- texts ---------------------------------------------------------------------------------

def _blank_words(text: str, share: float, rng: np.random.Generator) -> str:
    return " ".join("" if rng.random() < share else word for word in text.split())


def _drop_words(text: str, share: float, rng: np.random.Generator) -> str:
    return " ".join(word for word in text.split() if rng.random() >= share)


def _typos(text: str, share: float, rng: np.random.Generator) -> str:
    return " ".join(_typo(word, rng) if rng.random() < share else word for word in text.split())


def _typo(word: str, rng: np.random.Generator) -> str:
    """One swapped (two neighbours), dropped or repeated character."""
    i = int(rng.integers(0, len(word)))
    kind = rng.integers(0, 3) if len(word) > 1 else 2
    if kind == 0:
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i + 1] + word[i:]


TEXT = {c.name: c for c in (
    Corruption("blank-words", (0.2, 0.4, 0.6, 0.8, 1.0), "probability a word is blanked (QMF's 0.1·ε, ε = 2 × severity)",
               _blank_words),
    Corruption("drop-words", (0.1, 0.2, 0.3, 0.4, 0.5), "probability a word is removed", _drop_words),
    Corruption("typos", (0.1, 0.2, 0.3, 0.4, 0.5), "probability a word gets a typo", _typos),
)}

KINDS = {"image": IMAGE, "audio": AUDIO, "text": TEXT}


def get_corruption(kind: str, name: str) -> Corruption:
    """The corruption ``name`` of an input ``kind`` (image, audio or text)."""
    table = KINDS.get(kind, {})
    if name not in table:
        raise ProtocolError(f"no {kind} corruption {name!r}; expected one of {', '.join(table) or '(none)'}")
    return table[name]


def corrupt_picture(x: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A picture (``C x H x W`` in [0, 1]) under corruption ``name`` at ``severity``, as float32."""
    corruption = get_corruption("image", name)
    return corruption.apply(np.asarray(x, dtype=np.float64), corruption.level(severity), rng).astype(np.float32)


def corrupt_clip(x: np.ndarray, rate: int, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A mono clip at ``rate`` Hz under corruption ``name`` at ``severity``, as float32."""
    corruption = get_corruption("audio", name)
    return corruption.apply(np.asarray(x, dtype=np.float64), corruption.level(severity), rng, rate).astype(np.float32)


def corrupt_text(text: str, name: str, severity: int, rng: np.random.Generator) -> str:
    corruption = get_corruption("text", name)
    return corruption.apply(text, corruption.level(severity), rng)
