"""Seeded, pure presence-mask protocols (method.md) and the MMA augmentation.

Every protocol mask is drawn by a pure function of (protocol, observed presence, seed),
applied on top of the data's own missingness, and saved with a content hash so the same
masks score every method compared.

Protocols (strings): ``observed``, ``full``, ``miss:<m>``, ``sweep:<m>`` (nested, rates
0, 0.1, ..., 1), ``map:<m>@<eta>`` and ``map:both@<eta>`` (MAP, Lee et al. CVPR 2023),
``subsets`` (every non-empty subset of modalities).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import ProtocolError, ConfigError
from .files import atomic_path
from .runtime import derive_seed

SWEEP_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
DEFAULT_MAP_RATE = 0.7
_EPS = 1e-9


@dataclass
class ProtocolMask:
    """One evaluation condition: which modalities each row keeps, and which rows are scored."""

    protocol: str
    present: dict[str, np.ndarray]
    scored: np.ndarray
    rate: float | None = None
    pattern: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())


def n_of(rate: float, n: int) -> int:
    """``ceil(rate * n)``, robust to floating-point noise (0.3 * 10 is 3, not 4)."""
    if not 0.0 <= rate <= 1.0:
        raise ProtocolError(f"a missing rate must lie in [0, 1], got {rate}")
    return min(n, math.ceil(rate * n - _EPS))


def pattern_name(modalities: Sequence[str]) -> str:
    return "+".join(sorted(modalities))


def parse_protocol(spec: str, modalities: Sequence[str]) -> tuple[str, str | None, float | None]:
    """Split a protocol string into (kind, argument, rate) and check it against ``modalities``."""
    if not isinstance(spec, str) or not spec:
        raise ProtocolError(f"a protocol must be a non-empty string, got {spec!r}")
    head, _, rate_text = spec.partition("@")
    kind, _, arg = head.partition(":")
    rate = _parse_rate(spec, rate_text) if rate_text else None
    if kind in ("observed", "full", "subsets"):
        if arg or rate is not None:
            raise ProtocolError(f"protocol {kind!r} takes no argument, got {spec!r}")
        return kind, None, None
    if kind in ("miss", "sweep"):
        _check_modality(spec, arg, modalities)
        if rate is not None:
            raise ProtocolError(f"{kind}:<modality> takes no rate, got {spec!r}")
        return kind, arg, None
    if kind == "map":
        if arg == "both":
            if len(modalities) != 2:
                raise ProtocolError(f"{spec!r}: MAP 'both' needs exactly two modalities, the data has {list(modalities)}")
        else:
            _check_modality(spec, arg, modalities)
        return kind, arg, DEFAULT_MAP_RATE if rate is None else rate
    raise ProtocolError(
        f"unknown protocol {spec!r}; expected observed, full, miss:<m>, sweep:<m>, "
        f"map:<m>@<rate>, map:both@<rate> or subsets"
    )


def _parse_rate(spec: str, text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ProtocolError(f"{spec!r}: the rate after '@' must be a number, got {text!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ProtocolError(f"{spec!r}: the rate must lie in [0, 1]")
    return rate


def _check_modality(spec: str, name: str, modalities: Sequence[str]) -> None:
    if name not in modalities:
        raise ProtocolError(f"{spec!r}: unknown modality {name!r}; the data has {list(modalities)}")


def sample_masks(protocol: str, observed: Mapping[str, np.ndarray | Tensor], seed: int) -> list[ProtocolMask]:
    """The masks of one protocol, on top of the ``observed`` presence (a pure function)."""
    observed = {m: _as_bool_array(p) for m, p in observed.items()}
    modalities = sorted(observed)
    kind, arg, rate = parse_protocol(protocol, modalities)
    n = len(next(iter(observed.values())))
    if kind == "observed":
        return [_mask(protocol, observed)]
    if kind == "full":
        all_observed = np.logical_and.reduce([observed[m] for m in modalities])
        return [_mask(protocol, observed, scored=all_observed)]
    if kind == "miss":
        return [_mask(protocol, _drop(observed, arg, np.ones(n, dtype=bool)))]
    if kind == "sweep":
        order = np.random.default_rng(derive_seed(seed, "sweep", arg)).permutation(n)
        return [_mask(protocol, _drop(observed, arg, _first_rows(order, n_of(r, n))), rate=r) for r in SWEEP_RATES]
    if kind == "map":
        order = np.random.default_rng(derive_seed(seed, "map")).permutation(len(next(iter(observed.values()))))
        return [_mask(protocol, _map_present(observed, arg, rate, order), rate=rate)]
    return [
        _mask(protocol, {m: observed[m] & (m in subset) for m in modalities}, pattern=pattern_name(subset))
        for subset in nonempty_subsets(modalities)
    ]


def sample_all_masks(protocols: Sequence[str], observed: Mapping[str, np.ndarray | Tensor], seed: int) -> list[ProtocolMask]:
    return [mask for p in protocols for mask in sample_masks(p, observed, seed)]


def nonempty_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, the full set first, then by decreasing size."""
    mods = sorted(modalities)
    return [s for k in range(len(mods), 0, -1) for s in itertools.combinations(mods, k)]


def _mask(protocol, present, *, scored=None, rate=None, pattern=None) -> ProtocolMask:
    any_present = np.logical_or.reduce([p for p in present.values()])
    scored = any_present if scored is None else (scored & any_present)
    return ProtocolMask(protocol, present, scored, rate=rate, pattern=pattern)


def _drop(observed: dict[str, np.ndarray], modality: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(observed)
    out[modality] = observed[modality] & ~rows
    return out


def _first_rows(order: np.ndarray, k: int) -> np.ndarray:
    rows = np.zeros(len(order), dtype=bool)
    rows[order[:k]] = True
    return rows


def _map_present(observed: dict[str, np.ndarray], arg: str, rate: float, order: np.ndarray) -> dict[str, np.ndarray]:
    """``arg`` absent from the first ``ceil(rate * N)`` rows of ``order``; ``both``: the first
    half of those rows lose one modality, the rest the other."""
    k = n_of(rate, len(order))
    if arg != "both":
        return _drop(observed, arg, _first_rows(order, k))
    if len(observed) != 2:
        raise ProtocolError(f"'both' needs exactly two modalities, got {sorted(observed)}")
    first, second = sorted(observed)
    k_first = (k + 1) // 2
    lose_first = _first_rows(order, k_first)
    lose_second = _first_rows(order, k) & ~lose_first
    return _drop(_drop(observed, first, lose_first), second, lose_second)


def _as_bool_array(p: np.ndarray | Tensor) -> np.ndarray:
    arr = p.detach().cpu().numpy() if isinstance(p, Tensor) else np.asarray(p)
    if arr.dtype != bool or arr.ndim != 1:
        raise ProtocolError(f"a presence mask must be a 1-D bool array, got {arr.dtype} {arr.shape}")
    return arr


def sample_training_missing(
    observed: Mapping[str, np.ndarray | Tensor], modality: str, rate: float, seed: int, split: str = "train"
) -> dict[str, np.ndarray]:
    """Training-time missing: ``modality`` absent from ``ceil(rate * N)`` random rows of a split;
    ``both`` (two modalities): MAP's pattern, half of those rows lack one, half the other."""
    observed = {m: _as_bool_array(p) for m, p in observed.items()}
    if modality != "both":
        _check_modality(f"training-missing {modality}", modality, sorted(observed))
    n = len(next(iter(observed.values())))
    order = np.random.default_rng(derive_seed(seed, "train-missing", modality, split)).permutation(n)
    return _map_present(observed, modality, rate, order)


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


# --- saving masks --------------------------------------------------------------------------

def masks_hash(masks: Sequence[ProtocolMask]) -> str:
    """A sha256 over every mask's description and bits."""
    h = hashlib.sha256()
    for mask in masks:
        h.update(json.dumps(_describe(mask), sort_keys=True).encode())
        for m in sorted(mask.present):
            h.update(m.encode())
            h.update(np.packbits(mask.present[m]).tobytes())
        h.update(np.packbits(mask.scored).tobytes())
    return h.hexdigest()


def _describe(mask: ProtocolMask) -> dict:
    return {"protocol": mask.protocol, "rate": mask.rate, "pattern": mask.pattern,
            "modalities": sorted(mask.present), "rows": int(len(mask.scored))}


def save_masks(path: str | Path, masks: Sequence[ProtocolMask], meta: dict | None = None) -> str:
    """Save masks as ``.npz`` (no pickle) with their content hash; returns the hash."""
    digest = masks_hash(masks)
    header = {"sha256": digest, "masks": [_describe(m) for m in masks], "meta": meta or {}}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, mask in enumerate(masks):
        arrays[f"{i}/scored"] = mask.scored
        for m, p in mask.present.items():
            arrays[f"{i}/present/{m}"] = p
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return digest


def load_masks(path: str | Path) -> list[ProtocolMask]:
    """Load masks saved by :func:`save_masks`, checking their content hash."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(data["header"].tobytes().decode())
        masks = [
            ProtocolMask(
                d["protocol"], {m: data[f"{i}/present/{m}"] for m in d["modalities"]}, data[f"{i}/scored"],
                rate=d["rate"], pattern=d["pattern"], meta=header["meta"],
            )
            for i, d in enumerate(header["masks"])
        ]
    if masks_hash(masks) != header["sha256"]:
        raise ConfigError(f"{path}: the masks do not match their recorded sha256 (the file was altered or damaged)")
    return masks

