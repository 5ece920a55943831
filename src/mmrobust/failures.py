"""Silent failures: a modality's raw input replaced by what a broken sensor sends (``fail:`` masks).

The ``fail:<m>@<kind>`` protocol (:mod:`mmrobust.protocols`) draws which rows break and, for a
stale feed, whose input they get; this module builds the broken inputs themselves, from the
scale of the training inputs (:class:`InputRange`):

- ``blank``: zeros (a black image; for the spectrograms of the presets, scaled to [0, 1], the
  floor: a silent clip),
- ``constant``: the training inputs' maximum everywhere (a white frame; 1 where the maximum is 0),
- ``noise``: uniform between the training inputs' minimum and maximum, seeded per row set,
- ``stale``: another row's input (:func:`mmrobust.protocols.stale_sources`).

Where the data says how a modality's raw input becomes the model's input (an input spec: a
picture, a WAV, :mod:`mmrobust.inputs`), the broken *raw* input goes through that same way
(:func:`raw_failure`): a black, white or pixel-noise picture (projected on the training images'
PCA where the digits do), a silent, DC or white-noise clip through the audio front-end.

A modality read through a pre-trained extractor (a manifest column) holds features in the
dataset; its broken raw input goes through the extractor instead (:func:`extracted_failure`): a
black or white picture, a silent or DC clip, the fixed placeholder text ``"N/A"`` (``blank``)
or one word repeated (``constant``), noise in the raw format's own range (8-bit pixels, audio
in [-0.5, 0.5], random letters); ``stale`` takes another row's features, which is what that
row's raw input gives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from .batch import MultiModalDataset
from .errors import ConfigError
from .protocols import ProtocolMask
from .runtime import derive_seed

RANGE_ROWS = 2000  # training rows read to measure a modality's range (memory maps stay unread)


@dataclass(frozen=True)
class InputRange:
    """The smallest and largest value of one modality's training inputs."""

    low: float
    high: float


def input_ranges(train: MultiModalDataset) -> dict[str, InputRange]:
    """Each array modality's range over (at most :data:`RANGE_ROWS` evenly spaced) training rows."""
    out = {}
    for m in train.modalities:
        x = train.inputs[m]
        if isinstance(x, Mapping):
            continue
        rows = np.unique(np.linspace(0, len(train) - 1, min(len(train), RANGE_ROWS)).astype(int))
        sample = np.asarray(x[torch.as_tensor(rows)] if isinstance(x, torch.Tensor) else x[rows], dtype=np.float32)
        out[m] = InputRange(float(sample.min()), float(sample.max()))
    return out


def broken_inputs(inputs: Mapping[str, Any], mask: ProtocolMask, ranges: Mapping[str, InputRange],
                  seed: int, specs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """``inputs`` with the failed modality of ``mask`` replaced on its scored rows (a copy; the
    other modalities are the same objects). ``specs``: how each modality's raw input (a file)
    becomes the model's input (:mod:`mmrobust.inputs`): a picture, a WAV or a pre-trained
    extractor's features break as that raw input; an array without a spec breaks in its range."""
    if mask.failure is None:
        return dict(inputs)
    m, kind = mask.failure
    spec = (specs or {}).get(m, {})
    if m not in ranges and not raw_kind(spec):
        raise ConfigError(f"{mask.protocol}: {m} is neither an array input nor read through an extractor "
                          "(tokens?); a silent failure replaces raw inputs")
    x = inputs[m]
    original = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    rows = np.flatnonzero(mask.scored)
    out = np.array(original, dtype=np.float32, copy=True)
    seed = derive_seed(seed, "fail", m, kind)
    if kind == "stale":  # another row's input, whatever the format: what that row's raw input gives
        out[rows] = original[mask.source[rows]]
    elif raw_kind(spec) == "extractor":
        out[rows] = extracted_failure(spec, kind, len(rows), seed)
    elif raw_kind(spec):
        out[rows] = raw_failure(spec, kind, len(rows), np.random.default_rng(seed))
    else:
        out[rows] = failed_rows(original.shape[1:], len(rows), kind, ranges[m], seed)
    return {**inputs, m: torch.from_numpy(out) if isinstance(x, torch.Tensor) else out}


def raw_kind(spec: Mapping[str, Any]) -> str | None:
    """``image``, ``wav`` or ``extractor`` where a modality has a raw input to break, else None."""
    kind = spec.get("kind")
    return kind if kind in ("image", "wav") or (kind == "extractor" and not spec.get("finetune")) else None


def raw_failure(spec: Mapping[str, Any], kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` model inputs from broken pictures (black, white, uniform pixel noise) or clips (silent,
    DC, white noise), through the spec's own preprocessing (the PCA projection, the audio front-end)."""
    from .audio import get_preset
    from .inputs import image_input, wav_input

    if spec["kind"] == "image":
        shape = tuple(spec["shape"])
        pictures = ([rng.uniform(0, 1, shape) for _ in range(n)] if kind == "noise"
                    else [np.full(shape, 0.0 if kind == "blank" else 1.0)])
        inputs = [image_input(p.astype(np.float32), spec) for p in pictures]
    else:
        frontend = get_preset(spec["frontend"]) if isinstance(spec["frontend"], str) else spec["frontend"]
        length = int(round(frontend.duration * frontend.sample_rate))
        clips = ([rng.uniform(-0.5, 0.5, length) for _ in range(n)] if kind == "noise"
                 else [np.full(length, 0.0 if kind == "blank" else 0.5)])
        inputs = [wav_input(c.astype(np.float32), frontend.sample_rate, spec) for c in clips]
    return np.stack(inputs) if kind == "noise" else np.repeat(inputs[0][None], n, axis=0)  # one black frame, n rows


def extracted_failure(spec: Mapping[str, Any], kind: str, n: int, seed: int) -> np.ndarray:
    """The extractor's features of ``n`` broken raw inputs (one input repeated for ``blank`` and
    ``constant``, one per row for ``noise``)."""
    from .inputs import frozen_features
    from .pretrained import get_extractor

    extractor = get_extractor(spec["extractor"])
    items = broken_raw(extractor, kind, n if kind == "noise" else 1, np.random.default_rng(seed))
    out = frozen_features(spec["extractor"], extractor.preprocess(items)).numpy()
    return out if kind == "noise" else np.repeat(out, n, axis=0)


def broken_raw(extractor: Any, kind: str, n: int, rng: np.random.Generator) -> list:
    """``n`` broken raw inputs of the extractor's kind (image, audio or text)."""
    if extractor.kind == "image":
        shape = (3, extractor.size, extractor.size)
        if kind == "noise":
            return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        return [np.full(shape, 0 if kind == "blank" else 255, dtype=np.uint8)] * n
    if extractor.kind == "audio":
        length = extractor.sample_rate
        if kind == "noise":
            return [rng.uniform(-0.5, 0.5, length).astype(np.float32) for _ in range(n)]
        return [np.full(length, 0.0 if kind == "blank" else 0.5, dtype=np.float32)] * n
    if kind == "noise":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        return [" ".join("".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(rng.integers(2, 8)))
                for _ in range(n)]
    return ["N/A" if kind == "blank" else " ".join(["the"] * 8)] * n


def failed_rows(shape: tuple[int, ...], n: int, kind: str, scale: InputRange, seed: int) -> np.ndarray:
    """``n`` rows of an array input of row ``shape`` under a ``blank``, ``constant`` or ``noise`` failure."""
    shape = (n, *shape)
    if kind == "blank":
        return np.zeros(shape, dtype=np.float32)
    if kind == "constant":
        return np.full(shape, scale.high if scale.high != 0 else 1.0, dtype=np.float32)
    if kind == "noise":
        return np.random.default_rng(seed).uniform(scale.low, scale.high, size=shape).astype(np.float32)
    raise ConfigError(f"unknown failure {kind!r}")
