"""Presence masks used in *training*: the paper's training-time missing, and the MMA
augmentation (modality dropout). The evaluation protocols are in :mod:`mmrobust.protocols`."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, ProtocolError
from .protocols import as_bool_array, map_present
from .runtime import derive_seed


def sample_training_missing(
    observed: Mapping[str, np.ndarray | Tensor], modality: str, rate: float, seed: int, split: str = "train"
) -> dict[str, np.ndarray]:
    """Training-time missing: ``modality`` absent from ``ceil(rate * N)`` random rows of a split;
    ``both`` (two modalities): MAP's pattern, half of those rows lack one, half the other."""
    observed = {m: as_bool_array(p) for m, p in observed.items()}
    if modality != "both":
        if modality not in observed:
            raise ProtocolError(f"training-missing: unknown modality {modality!r}; the data has {sorted(observed)}")
    n = len(next(iter(observed.values())))
    order = np.random.default_rng(derive_seed(seed, "train-missing", modality, split)).permutation(n)
    return map_present(observed, modality, rate, order)


# --- the MMA augmentation ---------------------------------------------------------------

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a counter-based hash to uniform 64-bit words (vectorised)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, epoch: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers, a pure function of (seed, epoch, sample index, stream)."""
    key = _splitmix64(np.array([derive_seed(seed, "mma", epoch, stream)], dtype=np.uint64))
    words = _splitmix64(index.astype(np.uint64) ^ key)
    return (words >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_modality_dropout(
    present: Mapping[str, Tensor], index: Tensor, *, seed: int, epoch: int, p_drop: float = 0.5,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """The MMA augmentation (method.md).

    Each sample, with probability ``p_drop``, loses a subset of its present modalities drawn
    uniformly from the non-empty proper subsets (a no-op when one modality is present).
    A pure function of (seed, epoch, sample index): reproducible, identical under
    distributed training and after a resume. Computed on the host; the result goes to
    ``device`` (default: the device of ``present``).
    """
    if not 0.0 <= p_drop <= 1.0:
        raise ConfigError(f"p_drop must lie in [0, 1], got {p_drop}")
    modalities = sorted(present)
    device = present[modalities[0]].device if device is None else torch.device(device)
    pres = np.stack([present[m].detach().cpu().numpy() for m in modalities], axis=1)  # B x K
    idx = index.detach().cpu().numpy()
    k = pres.sum(axis=1)
    drop_row = (_uniforms(seed, epoch, idx, 0) < p_drop) & (k >= 2)
    n_subsets = np.maximum(2 ** k.astype(np.int64) - 2, 1)
    code = 1 + np.floor(_uniforms(seed, epoch, idx, 1) * n_subsets).astype(np.int64)  # 1 .. 2^k - 2
    rank = np.cumsum(pres, axis=1) - 1  # position of each present modality among the present ones
    bit = (code[:, None] >> np.clip(rank, 0, None)) & 1
    dropped = pres & (bit == 1) & drop_row[:, None]
    kept = pres & ~dropped
    kept = torch.from_numpy(np.ascontiguousarray(kept.T))
    return {m: kept[j].to(device) for j, m in enumerate(modalities)}
