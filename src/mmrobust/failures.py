"""Silent failures: a modality's raw input replaced by what a broken sensor sends (``fail:`` masks).

The ``fail:<m>@<kind>`` protocol (:mod:`mmrobust.protocols`) draws which rows break and, for a
stale feed, whose input they get; this module builds the broken inputs themselves, from the
scale of the training inputs (:class:`InputRange`):

- ``blank``: zeros (a black image; for the spectrograms of the presets, scaled to [0, 1], the
  floor: a silent clip),
- ``constant``: the training inputs' maximum everywhere (a white frame; 1 where the maximum is 0),
- ``noise``: uniform between the training inputs' minimum and maximum, seeded per row set,
- ``stale``: another row's input (:func:`mmrobust.protocols.stale_sources`).

Inputs are arrays (images, spectrograms, feature vectors). A modality read through a feature
extractor holds features, not raw inputs, in the dataset: breaking those would be a failure in
feature space, which a camera never produces, so it is refused with that reason.
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
                  seed: int) -> dict[str, Any]:
    """``inputs`` with the failed modality of ``mask`` replaced on its scored rows (a copy; the
    other modalities are the same objects)."""
    if mask.failure is None:
        return dict(inputs)
    m, kind = mask.failure
    if m not in ranges:
        raise ConfigError(f"{mask.protocol}: {m} is not an array input (features from an extractor or tokens); "
                          "a silent failure replaces raw inputs")
    x = inputs[m]
    original = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    rows = np.flatnonzero(mask.scored)
    out = np.array(original, dtype=np.float32, copy=True)
    out[rows] = failed_rows(original, rows, kind, ranges[m], mask.source, derive_seed(seed, "fail", m, kind))
    return {**inputs, m: torch.from_numpy(out) if isinstance(x, torch.Tensor) else out}


def failed_rows(x: np.ndarray, rows: np.ndarray, kind: str, scale: InputRange, source: np.ndarray | None,
                seed: int) -> np.ndarray:
    """What ``rows`` of ``x`` become under a failure of ``kind``."""
    shape = (len(rows), *x.shape[1:])
    if kind == "blank":
        return np.zeros(shape, dtype=np.float32)
    if kind == "constant":
        return np.full(shape, scale.high if scale.high != 0 else 1.0, dtype=np.float32)
    if kind == "noise":
        return np.random.default_rng(seed).uniform(scale.low, scale.high, size=shape).astype(np.float32)
    if kind == "stale":
        return np.asarray(x[source[rows]], dtype=np.float32)
    raise ConfigError(f"unknown failure {kind!r}")
