"""Missing-modality protocols behind a registry (method.md), and the masks they draw.

A protocol string is ``kind``, ``kind:<arg>`` or ``kind:<arg>@<rate>``. Each kind is one
:class:`Protocol` class, registered in :data:`mmrobust.registry.PROTOCOLS`: its syntax, its
description (shown by ``mmrobust list`` and in reports), how its string is checked, how its
masks are drawn (a pure function of the string, the observed presence and the seed, on top of
the data's own missingness) and which cell the report's main table shows for it. Masks are
saved with a content hash, so the same masks score every method compared. Pure NumPy.

To add a protocol: a subclass here with ``kind``, ``syntax``, ``description`` and ``sample``
(``argument``, ``default_rate`` and ``column`` where the defaults do not fit), named in the
registration loop below (or registered with ``PROTOCOLS.register`` from your own module).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ProtocolError
from .files import atomic_path
from .registry import PROTOCOLS
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
    failure: tuple[str, str] | None = None  # (modality, kind): that modality's input is replaced, still "present"
    source: np.ndarray | None = None  # ``stale``: the row whose input each row gets instead of its own
    altered: np.ndarray | None = None  # ``corrupt:…@<share>``: the rows whose input is replaced (else the scored ones)

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())


@dataclass(frozen=True)
class Column:
    """The cell of the report's main table that stands for a protocol: header and summary key."""

    header: str
    rate: float | None
    metric_prefix: str = ""  # "area:" for sweeps


class Protocol:
    """One kind of protocol. ``argument``: ``none``, ``modality`` or ``modality-or-both``."""

    kind = ""
    syntax = ""
    description = ""  # may use {m} (the modality)
    argument = "none"
    default_rate: float | None = None  # set: the protocol takes ``@rate``
    order = 9  # position of its column in the main table

    def parse(self, spec: str, arg: str, rate: float | None, modalities: Sequence[str]) -> tuple[str | None, float | None]:
        """Check the argument and rate of ``spec``; returns them (the default rate filled in)."""
        if self.argument == "none" and (arg or rate is not None):
            raise ProtocolError(f"protocol {self.kind!r} takes no argument, got {spec!r}")
        if self.argument != "none":
            _check_modality(spec, arg, modalities, allow_both=self.argument == "modality-or-both")
        if self.default_rate is None and rate is not None:
            raise ProtocolError(f"{self.kind}:<modality> takes no rate, got {spec!r}")
        return arg or None, (self.default_rate if rate is None else rate) if self.default_rate is not None else None

    def read_suffix(self, spec: str, text: str) -> float:
        """What follows ``@`` in ``spec``: a rate by default."""
        return _parse_rate(spec, text)

    def sample(self, spec: str, arg: str | None, rate: float | None, observed: dict[str, np.ndarray],
               seed: int) -> list[ProtocolMask]:
        raise NotImplementedError

    def examples(self, modalities: Sequence[str]) -> list[str]:
        """Protocol strings of this kind for ``modalities`` (every argument, a rate where one is taken)."""
        if self.argument == "none":
            return [self.kind]
        args = sorted(modalities) + (["both"] if self.argument == "modality-or-both" and len(modalities) == 2 else [])
        rate = "@0.3" if self.default_rate is not None else ""
        return [f"{self.kind}:{arg}{rate}" for arg in args]

    def describe(self, spec: str) -> str:
        """The description for one protocol string (``{m}`` filled in)."""
        arg = spec.partition(":")[2].split("@")[0]
        return self.description.format(m=f"`{arg}`")

    def column(self, spec: str, rate: float | None) -> Column | None:
        """The main table's cell for ``spec`` (``None``: the protocol has a table of its own)."""
        return Column(spec, None)


class Observed(Protocol):
    kind, syntax, order = "observed", "observed", 0
    description = "the data's own missingness"

    def sample(self, spec, arg, rate, observed, seed):
        return [_mask(spec, observed)]


class Full(Protocol):
    kind, syntax, order = "full", "full", 1
    description = "every modality present (rows with an observed gap are not scored)"

    def sample(self, spec, arg, rate, observed, seed):
        all_observed = np.logical_and.reduce([observed[m] for m in sorted(observed)])
        return [_mask(spec, observed, scored=all_observed)]


class Miss(Protocol):
    kind, syntax, order, argument = "miss", "miss:<m>", 2, "modality"
    description = "{m} absent from every test row"

    def sample(self, spec, arg, rate, observed, seed):
        n = len(next(iter(observed.values())))
        return [_mask(spec, _drop(observed, arg, np.ones(n, dtype=bool)))]


class Map(Protocol):
    kind, syntax, order, argument = "map", "map:<m>@<eta> | map:both@<eta>", 3, "modality-or-both"
    default_rate = DEFAULT_MAP_RATE
    description = ("MAP (Lee et al. 2023): {m} absent from a share η of test rows (default 0.7); "
                   "`both`: η/2 of rows lack one modality, η/2 the other, none lose both")

    def parse(self, spec, arg, rate, modalities):
        if arg == "both" and len(modalities) != 2:
            raise ProtocolError(f"{spec!r}: MAP 'both' needs exactly two modalities, the data has {list(modalities)}")
        return super().parse(spec, arg, rate, modalities)

    def sample(self, spec, arg, rate, observed, seed):
        order = np.random.default_rng(derive_seed(seed, "map")).permutation(len(next(iter(observed.values()))))
        return [_mask(spec, map_present(observed, arg, rate, order), rate=rate)]

    def column(self, spec, rate):
        return Column(spec if "@" in spec else f"{spec}@{rate}", rate)


class Sweep(Protocol):
    kind, syntax, order, argument = "sweep", "sweep:<m>", 4, "modality"
    description = (f"{{m}} absent from a nested share r of test rows, r in {list(SWEEP_RATES)}; "
                   "summary: area under metric-vs-r (trapezoid on [0, 1])")

    def sample(self, spec, arg, rate, observed, seed):
        n = len(next(iter(observed.values())))
        order = np.random.default_rng(derive_seed(seed, "sweep", arg)).permutation(n)
        return [_mask(spec, _drop(observed, arg, first_rows(order, n_of(r, n))), rate=r) for r in SWEEP_RATES]

    def column(self, spec, rate):
        return Column(f"{spec} (area)", None, "area:")


class Subsets(Protocol):
    kind, syntax, order = "subsets", "subsets", 5
    description = ("every non-empty subset of modalities present, each scored on the rows that have all of it "
                   "(a table by presence pattern)")

    def sample(self, spec, arg, rate, observed, seed):
        return [_mask(spec, {m: observed[m] & (m in subset) for m in sorted(observed)}, pattern=pattern_name(subset),
                      scored=np.logical_and.reduce([observed[m] for m in subset]))
                for subset in nonempty_subsets(sorted(observed))]

    def column(self, spec, rate):
        return None


FAILURE_KINDS = ("blank", "constant", "noise", "stale")


class Fail(Protocol):
    kind, syntax, order, argument = "fail", "fail:<m>@<kind>", 6, "modality"
    description = ("{m} present but broken on every test row where it is observed (a silent failure; the model is not "
                   "told), scored on the rows where another modality is observed too (with {m} alone, declared "
                   "missing would leave nothing to answer from): `blank` (zeros: a black image, a silent clip), `constant` (the training inputs' maximum: a "
                   "white frame), `noise` (uniform between the training inputs' minimum and maximum) or `stale` "
                   "(another test row's input: a frozen feed)")

    def read_suffix(self, spec, text):
        if text not in FAILURE_KINDS:
            raise ProtocolError(f"{spec!r}: the failure after '@' must be one of {', '.join(FAILURE_KINDS)}, got {text!r}")
        return None

    def parse(self, spec, arg, rate, modalities):
        if "@" not in spec:
            raise ProtocolError(f"{spec!r}: say how {arg!r} fails: fail:{arg}@<kind>, kind one of {', '.join(FAILURE_KINDS)}")
        return super().parse(spec, arg, rate, modalities)

    def sample(self, spec, arg, rate, observed, seed):
        failure = spec.partition("@")[2]
        broken = observed[arg]
        mask = _altered_mask(spec, observed, arg, failure)
        if failure == "stale":  # with one row of the modality there is no other row to take: nothing scored
            mask.source = stale_sources(broken, derive_seed(seed, "fail", arg))
            mask.scored = mask.scored & (mask.source != np.arange(len(broken)))
        return [mask]

    def examples(self, modalities):
        return [f"fail:{m}@{k}" for m in sorted(modalities) for k in FAILURE_KINDS]

    def column(self, spec, rate):
        return None  # the report's Silent failures table


def stale_sources(rows: np.ndarray, seed: int) -> np.ndarray:
    """For each of ``rows`` another of them (a seeded cycle through a random order: no row keeps its
    own); every other row its own index (and a lone row, which has no other to take)."""
    source = np.arange(len(rows))
    which = np.flatnonzero(rows)
    if len(which) < 2:
        return source
    order = which[np.random.default_rng(seed).permutation(len(which))]
    source[order] = np.roll(order, -1)
    return source


class Corrupt(Protocol):
    kind, syntax, order, argument = "corrupt", "corrupt:<m>@<kind>:<severity>[@<share>]", 7, "modality"
    description = ("{m} present but degraded on every test row where it is observed, or on a seeded share of them "
                   "(`@<share>`): `<kind>` at severity 1 (mild) to 5 (severe), from `mmrobust.corruptions` (pictures: "
                   "Gaussian and impulse noise, blur, contrast, brightness, JPEG, pixelation, shift, rotation, scale, "
                   "occlusion; clips: noise at an SNR, clipping, gain, low-pass, MP3; texts: word blanking, word drops, "
                   "typos), before the modality's own preprocessing; the model is not told; scored on the rows where "
                   "another modality is observed too")

    def read_suffix(self, spec, text):
        corruption, _, share = text.partition("@")
        corruption_parts(spec, corruption)
        return _parse_rate(spec, share) if share else None

    def parse(self, spec, arg, rate, modalities):
        if "@" not in spec:
            raise ProtocolError(f"{spec!r}: say how {arg!r} degrades: corrupt:{arg}@<kind>:<severity>, e.g. "
                                f"corrupt:{arg}@gaussian-noise:3")
        _check_modality(spec, arg, modalities, allow_both=False)
        return arg, rate

    def sample(self, spec, arg, rate, observed, seed):
        mask = _altered_mask(spec, observed, arg, spec.split("@")[1])
        if rate is not None:  # a share of the rows that have the modality, the same rows at every kind and severity
            rows = np.flatnonzero(mask.scored)
            order = rows[np.random.default_rng(derive_seed(seed, "corrupt", arg)).permutation(len(rows))]
            mask.altered = np.zeros(len(mask.scored), dtype=bool)
            mask.altered[order[:n_of(rate, len(rows))]] = True
        return [mask]

    def examples(self, modalities):
        return [f"corrupt:{m}@gaussian-noise:3" for m in sorted(modalities)]

    def column(self, spec, rate):
        return None  # the report's Degraded inputs table


def corruption_parts(spec: str, corruption: str) -> tuple[str, int]:
    """``(kind, severity)`` of ``<kind>:<severity>``, checked against every input kind's corruptions."""
    from .corruptions import KINDS, SEVERITIES

    name, _, severity = corruption.partition(":")
    known = sorted({n for table in KINDS.values() for n in table})
    if name not in known:
        raise ProtocolError(f"{spec!r}: unknown corruption {name!r}; expected one of {', '.join(known)}")
    if severity not in {str(s) for s in SEVERITIES}:
        raise ProtocolError(f"{spec!r}: the severity after '{name}:' must be 1-5, got {severity!r}")
    return name, int(severity)


for _protocol in (Observed, Full, Miss, Map, Sweep, Subsets, Fail, Corrupt):
    PROTOCOLS.register(_protocol.kind, _protocol, doc=_protocol.description.format(m="<m>"))


def get_protocol(spec: str) -> Protocol:
    """The protocol (an instance) of a protocol string, by its kind."""
    if not isinstance(spec, str) or not spec:
        raise ProtocolError(f"a protocol must be a non-empty string, got {spec!r}")
    kind = spec.partition("@")[0].partition(":")[0]
    if kind not in PROTOCOLS:
        syntaxes = ", ".join(PROTOCOLS.get(k).syntax for k in PROTOCOLS.names())
        raise ProtocolError(f"unknown protocol {spec!r}; expected one of: {syntaxes}")
    return PROTOCOLS.create(kind)


def parse_protocol(spec: str, modalities: Sequence[str]) -> tuple[str, str | None, float | None]:
    """Split a protocol string into (kind, argument, rate) and check it against ``modalities``."""
    protocol = get_protocol(spec)
    head, _, rate_text = spec.partition("@")
    arg = head.partition(":")[2]
    rate = protocol.read_suffix(spec, rate_text) if rate_text else None
    arg, rate = protocol.parse(spec, arg, rate, modalities)
    return protocol.kind, arg, rate


def sample_masks(protocol: str, observed: Mapping[str, Any], seed: int) -> list[ProtocolMask]:
    """The masks of one protocol, on top of the ``observed`` presence (a pure function)."""
    observed = {m: as_bool_array(p) for m, p in observed.items()}
    kind, arg, rate = parse_protocol(protocol, sorted(observed))
    return PROTOCOLS.create(kind).sample(protocol, arg, rate, observed, seed)


def sample_all_masks(protocols: Sequence[str], observed: Mapping[str, Any], seed: int) -> list[ProtocolMask]:
    return [mask for p in protocols for mask in sample_masks(p, observed, seed)]


def n_of(rate: float, n: int) -> int:
    """``ceil(rate * n)``, robust to floating-point noise (0.3 * 10 is 3, not 4)."""
    if not 0.0 <= rate <= 1.0:
        raise ProtocolError(f"a missing rate must lie in [0, 1], got {rate}")
    return min(n, math.ceil(rate * n - _EPS))


def pattern_name(modalities: Sequence[str]) -> str:
    return "+".join(sorted(modalities))


def nonempty_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, the full set first, then by decreasing size."""
    mods = sorted(modalities)
    return [s for k in range(len(mods), 0, -1) for s in itertools.combinations(mods, k)]


def _parse_rate(spec: str, text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ProtocolError(f"{spec!r}: the rate after '@' must be a number, got {text!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ProtocolError(f"{spec!r}: the rate must lie in [0, 1]")
    return rate


def _check_modality(spec: str, name: str, modalities: Sequence[str], *, allow_both: bool) -> None:
    if name not in modalities and not (allow_both and name == "both"):
        raise ProtocolError(f"{spec!r}: unknown modality {name!r}; the data has {list(modalities)}")


def _mask(protocol, present, *, scored=None, rate=None, pattern=None) -> ProtocolMask:
    any_present = np.logical_or.reduce([p for p in present.values()])
    scored = any_present if scored is None else (scored & any_present)
    return ProtocolMask(protocol, present, scored, rate=rate, pattern=pattern)


def _altered_mask(spec: str, observed: dict[str, np.ndarray], modality: str, failure: str) -> ProtocolMask:
    """``modality``'s input replaced (``failure``: a breakage or a corruption) wherever it is observed,
    scored where another modality is observed too (declared missing, it leaves something to answer from)."""
    others = np.logical_or.reduce([observed[m] for m in sorted(observed) if m != modality])
    mask = _mask(spec, observed, scored=observed[modality] & others)
    mask.failure = (modality, failure)
    return mask


def _drop(observed: dict[str, np.ndarray], modality: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(observed)
    out[modality] = observed[modality] & ~rows
    return out


def first_rows(order: np.ndarray, k: int) -> np.ndarray:
    rows = np.zeros(len(order), dtype=bool)
    rows[order[:k]] = True
    return rows


def map_present(observed: dict[str, np.ndarray], arg: str, rate: float, order: np.ndarray) -> dict[str, np.ndarray]:
    """``arg`` absent from the first ``ceil(rate * N)`` rows of ``order``; ``both``: the first
    half of those rows lose one modality, the rest the other."""
    k = n_of(rate, len(order))
    if arg != "both":
        return _drop(observed, arg, first_rows(order, k))
    if len(observed) != 2:
        raise ProtocolError(f"'both' needs exactly two modalities, got {sorted(observed)}")
    first, second = sorted(observed)
    k_first = (k + 1) // 2
    lose_first = first_rows(order, k_first)
    lose_second = first_rows(order, k) & ~lose_first
    return _drop(_drop(observed, first, lose_first), second, lose_second)


def as_bool_array(p: Any) -> np.ndarray:
    """A presence vector (NumPy or torch) as a 1-D bool array."""
    arr = p.detach().cpu().numpy() if hasattr(p, "detach") else np.asarray(p)
    if arr.dtype != bool or arr.ndim != 1:
        raise ProtocolError(f"a presence mask must be a 1-D bool array, got {arr.dtype} {arr.shape}")
    return arr


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
        if mask.source is not None:
            h.update(mask.source.astype("<i8").tobytes())
        if mask.altered is not None:
            h.update(b"altered" + np.packbits(mask.altered).tobytes())
    return h.hexdigest()


def _describe(mask: ProtocolMask) -> dict:
    return {"protocol": mask.protocol, "rate": mask.rate, "pattern": mask.pattern,
            "modalities": sorted(mask.present), "rows": int(len(mask.scored)),
            **({"failure": list(mask.failure)} if mask.failure else {})}


def save_masks(path: str | Path, masks: Sequence[ProtocolMask], meta: dict | None = None) -> str:
    """Save masks as ``.npz`` (no pickle) with their content hash; returns the hash."""
    digest = masks_hash(masks)
    header = {"sha256": digest, "masks": [_describe(m) for m in masks], "meta": meta or {}}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, mask in enumerate(masks):
        arrays[f"{i}/scored"] = mask.scored
        for m, p in mask.present.items():
            arrays[f"{i}/present/{m}"] = p
        if mask.source is not None:
            arrays[f"{i}/source"] = mask.source
        if mask.altered is not None:
            arrays[f"{i}/altered"] = mask.altered
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
                failure=tuple(d["failure"]) if d.get("failure") else None,
                source=data[f"{i}/source"] if f"{i}/source" in data else None,
                altered=data[f"{i}/altered"] if f"{i}/altered" in data else None,
            )
            for i, d in enumerate(header["masks"])
        ]
    if masks_hash(masks) != header["sha256"]:
        raise ProtocolError(f"{path}: the masks do not match their recorded sha256 (the file was altered or damaged)")
    return masks
