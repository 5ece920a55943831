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

A ``corrupt:`` mask degrades instead (:mod:`mmrobust.corruptions`): each row's own raw input
altered at a severity, then through the same preprocessing (:func:`_corrupted`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch

from .batch import MultiModalDataset
from .errors import ConfigError
from .protocols import ProtocolMask
from .runtime import derive_seed

RANGE_ROWS = 2000  # training rows read to measure a modality's range (memory maps stay unread)
NOISE_CHUNK = 256  # noise inputs drawn at once (float64 before they are stored as float32)


@dataclass(frozen=True)
class InputRange:
    """The smallest and largest value of one modality's training inputs."""

    low: float
    high: float


def input_ranges(train: MultiModalDataset) -> dict[str, InputRange]:
    """Each array modality's range over (at most :data:`RANGE_ROWS` evenly spaced) training rows
    where it is present (a missing row holds a placeholder, or a value marked missing for being
    bad: 1e300 in a float64 ``.npy``)."""
    out = {}
    for m in train.modalities:
        x = train.inputs[m]
        present = np.flatnonzero(np.asarray(train.present[m]))
        if isinstance(x, Mapping) or not len(present):
            continue
        rows = present[np.unique(np.linspace(0, len(present) - 1, min(len(present), RANGE_ROWS)).astype(int))]
        sample = np.asarray(x[torch.as_tensor(rows)] if isinstance(x, torch.Tensor) else x[rows], dtype=np.float32)
        out[m] = InputRange(float(sample.min()), float(sample.max()))
    return out


class Broken(NamedTuple):
    """The inputs under a ``fail:`` mask, and the raw inputs (:attr:`MultiModalDataset.raw`)."""

    inputs: dict[str, Any]
    raw: dict[str, Any]


def broken_inputs(inputs: Mapping[str, Any], mask: ProtocolMask, ranges: Mapping[str, InputRange],
                  seed: int, specs: Mapping[str, Mapping[str, Any]] | None = None,
                  raw: Mapping[str, Any] | None = None, cells: Mapping[str, Any] | None = None) -> Broken:
    """``inputs`` (and ``raw``) with the failed modality of ``mask`` replaced on its scored rows
    (a copy; the other modalities are the same objects). ``specs``: how each modality's raw input
    (a file) becomes the model's input (:mod:`mmrobust.inputs`): a picture, a WAV or a pre-trained
    extractor's features break as that raw input; an array without a spec breaks in its range."""
    raw = dict(raw or {})
    if mask.failure is None:
        return Broken(dict(inputs), raw)
    m, kind = mask.failure
    spec = (specs or {}).get(m, {})
    if is_corruption(kind):
        return _corrupted(inputs, raw, mask, spec, seed, cells)
    if m not in ranges and not raw_kind(spec):
        raise ConfigError(f"{mask.protocol}: {m} is neither an array input nor read through an extractor "
                          "(tokens?); a silent failure replaces raw inputs")
    if m in raw and kind != "stale" and not viewed(spec):
        raise ConfigError(f"{mask.protocol}: {m} keeps raw inputs, which only a picture's or an extracted cell's failure breaks")
    rows = np.flatnonzero(mask.scored)
    if not len(rows):  # no row has the modality: nothing to break
        return Broken(dict(inputs), raw)
    out, original = _copy(inputs[m])
    broken_raw, original_raw = _copy(raw[m], dtype=None) if m in raw else (None, None)
    seed = derive_seed(seed, "fail", m, kind)
    if kind == "stale":  # another row's input, whatever the format: what that row's raw input gives
        out[rows] = original[mask.source[rows]]
        if broken_raw is not None:
            broken_raw[rows] = original_raw[mask.source[rows]]
    elif raw_kind(spec) == "extractor":
        out[rows], views = extracted_failure(spec, kind, len(rows), seed)
        if broken_raw is not None:
            broken_raw[rows] = views
    elif raw_kind(spec):
        pictures = broken_raw_inputs(spec, kind, len(rows), np.random.default_rng(seed))
        out[rows] = model_inputs(spec, pictures)
        if broken_raw is not None:
            broken_raw[rows] = pictures
    else:
        out[rows] = failed_rows(original.shape[1:], len(rows), kind, ranges[m], seed)
    if broken_raw is not None:
        raw[m] = _like(raw[m], broken_raw)
    return Broken({**inputs, m: _like(inputs[m], out)}, raw)


def is_corruption(kind: str) -> bool:
    """Whether a mask's failure is a ``corrupt:`` one (``<kind>:<severity>``) rather than a breakage."""
    return ":" in kind


def _corrupted(inputs: Mapping[str, Any], raw: dict[str, Any], mask: ProtocolMask, spec: Mapping[str, Any],
               seed: int, cells: Mapping[str, Any] | None = None) -> Broken:
    """Under ``corrupt:<m>@<kind>:<severity>``: each altered row's raw input degraded (drawn from one
    generator seeded by the modality, kind and severity, row after row), then through the
    modality's own preprocessing: a picture kept by the data, or a cell read again through its
    pre-trained extractor (:func:`extracted_corruption`); the gate reads the degraded input's view."""
    from .corruptions import corrupt_picture
    from .protocols import corruption_parts

    m, corruption = mask.failure
    name, severity = corruption_parts(mask.protocol, corruption)
    rows = np.flatnonzero(mask.scored if mask.altered is None else mask.altered & mask.scored)
    if not len(rows):
        return Broken(dict(inputs), raw)
    check_corruptible(mask.protocol, spec, inputs[m], raw.get(m), (cells or {}).get(m))
    out, original = _copy(inputs[m])
    rng = np.random.default_rng(derive_seed(seed, "corrupt", m, name, severity))
    if raw_kind(spec) == "extractor":
        out[rows], views = extracted_corruption(spec, cells[m][rows], name, severity, rng)
    else:
        pictures = _copy(raw[m])[1] if m in raw else original
        views = np.stack([corrupt_picture(pictures[i], name, severity, rng) for i in rows])
        out[rows] = model_inputs(spec, views) if raw_kind(spec) == "image" else views
    if m in raw and views is not None:
        broken_raw = _copy(raw[m], dtype=None)[0]  # its own dtype: a text view holds code points
        broken_raw[rows] = views
        raw[m] = _like(raw[m], broken_raw)
    return Broken({**inputs, m: _like(inputs[m], out)}, raw)


CORRUPT_CHUNK = 64  # cells read, degraded and extracted at once


def extracted_corruption(spec: Mapping[str, Any], cells: Any, name: str, severity: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """The pre-trained extractor's features of each cell read again and degraded (a picture, every
    frame of a video alike, a clip at the extractor's rate, a text), and what the input gate
    reads of them (the extractor's views; ``None`` without views)."""
    from .inputs import frozen_features
    from .pretrained import get_extractor

    extractor = get_extractor(spec["extractor"])
    features, views = [], []
    for start in range(0, len(cells), CORRUPT_CHUNK):
        items = [degrade_item(extractor, extractor.load(cell, Path("/")), name, severity, rng)
                 for cell in cells[start:start + CORRUPT_CHUNK]]
        features.append(frozen_features(spec["extractor"], extractor.preprocess(items)).numpy())
        if hasattr(extractor, "views"):
            views.append(extractor.views(items))
    return np.concatenate(features), np.concatenate(views) if views else None


def degrade_item(extractor: Any, item: Any, name: str, severity: int, rng: np.random.Generator) -> Any:
    """One raw input as an extractor loads it, degraded: uint8 pictures and frames through
    :func:`corrupt_picture` (every frame of a clip with the same draw), clips at its rate, texts."""
    from .corruptions import corrupt_clip, corrupt_picture, corrupt_text

    if extractor.kind == "text":
        return corrupt_text(item, name, severity, rng)
    if extractor.kind == "audio":
        return corrupt_clip(item, extractor.sample_rate, name, severity, rng)
    frames = item if extractor.kind == "video" else item[None]
    state = rng.bit_generator.state
    out = []
    for frame in frames:
        rng.bit_generator.state = state  # the same shift, noise pattern or square on every frame
        out.append(np.round(corrupt_picture(frame / 255.0, name, severity, rng) * 255).astype(np.uint8))
    return np.stack(out) if extractor.kind == "video" else out[0]


def check_corruptible(protocol: str, spec: Mapping[str, Any], x: Any, raw: Any = None, cells: Any = None) -> None:
    """A ``corrupt:`` protocol degrades raw inputs: a modality read from image files (its pictures
    kept where a projection follows), an array of pictures (``C x H x W``, 1 or 3 channels, in
    [0, 1]), or cells read through a pre-trained extractor (pictures, videos, clips, texts); and
    the corruption must be one of that kind of input's."""
    from .corruptions import KINDS
    from .protocols import corruption_parts

    if raw_kind(spec) == "extractor" and cells is not None:
        from .pretrained import get_extractor

        kind = get_extractor(spec["extractor"]).kind
    elif _holds_pictures(spec, x, raw):
        kind = "picture"
    else:
        shape = list(np.shape(raw if raw is not None else x)[1:]) if not isinstance(x, Mapping) else []
        what = {"wav": "a spectrogram (the clips' waveforms are not kept)", "extractor": "an extracted file's features",
                "image": "a projected picture whose picture is not kept"}.get(spec.get("kind"), f"an array of shape {shape}")
        raise ConfigError(f"{protocol}: the modality is {what}; `corrupt:` degrades pictures (an image file, or an array "
                          "of C x H x W pictures in [0, 1]) and the files or texts a pre-trained extractor reads")
    name, _ = corruption_parts(protocol, protocol.split("@")[1])
    table = KINDS["audio" if kind == "audio" else "text" if kind == "text" else "image"]
    if name not in table:
        raise ConfigError(f"{protocol}: the modality holds {kind}s; their corruptions are {', '.join(table)}")


def _holds_pictures(spec: Mapping[str, Any], x: Any, raw: Any) -> bool:
    """Image files (their pictures kept where a projection follows), or an array of pictures in [0, 1]."""
    if raw_kind(spec) == "image":
        return raw is not None or not spec.get("pca")
    pictures = raw if raw is not None else x
    if spec.get("kind", "array") != "array" or isinstance(pictures, Mapping):
        return False
    shape = tuple(np.shape(pictures)[1:])
    if not (len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 8):
        return False
    sample = np.asarray(pictures[:256].numpy() if isinstance(pictures, torch.Tensor) else pictures[:256])
    return bool(sample.min() >= 0 and sample.max() <= 1)


def _copy(x: Any, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A copy of an array input to break (float32, or of its own dtype for ``dtype=None``: a
    text's code points), and the original as numpy."""
    original = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.array(original, dtype=dtype, copy=True), original


def _like(x: Any, values: np.ndarray) -> Any:
    return torch.from_numpy(values) if isinstance(x, torch.Tensor) else values


def raw_kind(spec: Mapping[str, Any]) -> str | None:
    """``image``, ``wav`` or ``extractor`` where a modality has a raw input to break, else None."""
    kind = spec.get("kind")
    return kind if kind in ("image", "wav") or (kind == "extractor" and not spec.get("finetune")) else None


def raw_failure(spec: Mapping[str, Any], kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` model inputs from broken pictures (black, white, uniform pixel noise) or clips (silent,
    DC, white noise), through the spec's own preprocessing (the PCA projection, the audio front-end)."""
    made = model_inputs(spec, broken_raw_inputs(spec, kind, n, rng))
    return np.repeat(made, n // len(made), axis=0)


def broken_raw_inputs(spec: Mapping[str, Any], kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Broken pictures (``C x H x W`` in [0, 1]) or clips (at the front-end's rate and length):
    ``n`` of them for ``noise``, one (for every row) for ``blank`` and ``constant``."""
    if spec["kind"] == "image":
        shape = tuple(spec["shape"])
    else:
        frontend = _frontend(spec)
        shape = (int(round(frontend.duration * frontend.sample_rate)),)
    if kind == "noise":
        low, high = (0.0, 1.0) if spec["kind"] == "image" else (-0.5, 0.5)
        out = np.empty((n, *shape), dtype=np.float32)
        for start in range(0, n, NOISE_CHUNK):  # the draws of one row after another, a chunk at a time
            out[start:start + NOISE_CHUNK] = rng.uniform(low, high, (min(NOISE_CHUNK, n - start), *shape))
        return out
    level = {"blank": 0.0, "constant": 1.0 if spec["kind"] == "image" else 0.5}[kind]
    return np.full((1, *shape), level, dtype=np.float32)


def model_inputs(spec: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    """Broken raw inputs through the spec's own preprocessing."""
    from .inputs import image_inputs, wav_input

    if spec["kind"] == "image":
        return image_inputs(raw, spec)
    return np.stack([wav_input(r, _frontend(spec).sample_rate, spec) for r in raw])


def _frontend(spec: Mapping[str, Any]) -> Any:
    from .audio import get_preset

    return get_preset(spec["frontend"]) if isinstance(spec["frontend"], str) else spec["frontend"]


def extracted_failure(spec: Mapping[str, Any], kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The extractor's features of ``n`` broken raw inputs (one input repeated for ``blank`` and
    ``constant``, one per row for ``noise``), and what the input gate reads of them (the
    extractor's views: a picture's thumbnail, a text's code points; None without views)."""
    from .inputs import frozen_features
    from .pretrained import get_extractor

    extractor = get_extractor(spec["extractor"])
    items = broken_raw(extractor, kind, n if kind == "noise" else 1, np.random.default_rng(seed))
    out = frozen_features(spec["extractor"], extractor.preprocess(items)).numpy()
    views = extractor.views(items) if hasattr(extractor, "views") else None
    if kind == "noise":
        return out, views
    return np.repeat(out, n, axis=0), None if views is None else np.repeat(views, n, axis=0)


def is_picture(spec: Mapping[str, Any]) -> bool:
    """Whether a modality of this spec is read from pictures: image files, or the pictures or video
    frames a pre-trained extractor reads (whose gate view is a thumbnail)."""
    if raw_kind(spec) == "extractor":
        from .pretrained import get_extractor

        return get_extractor(spec["extractor"]).kind in ("image", "video")
    return spec.get("kind") == "image"


def viewed(spec: Mapping[str, Any]) -> bool:
    """Whether the input gate reads a raw view of a modality of this spec (a picture; a cell an
    extractor with views reads)."""
    if raw_kind(spec) == "extractor":
        from .pretrained import get_extractor

        return hasattr(get_extractor(spec["extractor"]), "views")
    return raw_kind(spec) == "image"


def broken_raw(extractor: Any, kind: str, n: int, rng: np.random.Generator) -> list:
    """``n`` broken raw inputs of the extractor's kind (image, video, audio or text)."""
    if extractor.kind == "image":
        shape = (3, extractor.size, extractor.size)
        if kind == "noise":
            return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        return [np.full(shape, 0 if kind == "blank" else 255, dtype=np.uint8)] * n
    if extractor.kind == "video":  # a camera's feed: black, white or noise frames
        shape = (extractor.frames, 3, extractor.size, extractor.size)
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
