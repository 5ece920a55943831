"""The input gate: a modality that is present but implausible (a black frame, a silent clip,
noise) is treated as missing, so routing answers from what still works.

Per modality, the gate keeps that modality's Stage-1 model (encoder and head), statistics of its
training rows and a threshold: the score that at most ``false_alarms`` (0.5%) of the clean
validation rows of that modality exceed. A present input scoring above it is ignored. The score
has up to three parts, each in units of its own spread on the clean validation rows ((score −
median) / (quantile − median)), and is the largest of them. The input and levels parts read the
modality's raw input where the data keeps one (:attr:`MultiModalDataset.raw`: the digits'
pictures before their PCA projection, a thumbnail of a picture read through a pre-trained
extractor, a text's code points), else the model's input:

- the **input** part (array inputs): the squared Mahalanobis distance of the input's mean,
  standard deviation and coordinates on the training inputs' top principal directions to the
  training inputs' (a black frame or a silent clip has no spread, and the encoder may map it close
  to a class; noise spreads over directions the training inputs leave flat;
  benchmarks/failures/RESULTS.md),
- the **residual** part (pictures: image files, the thumbnails of pictures and frames an extractor
  reads): the squared distance of the picture's standardised 2 x 2-block view to the training
  pictures' principal subspace, less what its pixel noise alone leaves there (a digit moved or
  turned keeps its mean, spread and principal coordinates but not its distance to them; a noisy
  digit, which still helps, is near the subspace once its noise is counted out; on the digits a
  digit moved by 5.6 pixels was ignored 0% of the time without it, 90% with it, and the accuracy
  under that shift went from 30.3% to 48.2% (the picture declared missing: 49.3%), clean
  pictures ignored 0.6%; benchmarks/degraded/RESULTS.md). Not for spectrograms: a new speaker's distance to the training
  speakers' subspace is large (35% of the digits' held-out recordings ignored),
- the **levels** part (array inputs): how many times the input's spread or roughness is off the
  training inputs' median, against a fixed tolerance of :data:`LEVEL_TOLERANCE` rather than a
  validation quantile (a hiss is flat, pixel noise rough, a blank input has no spread; the
  training speakers' clips vary less than new speakers' do),
- the **text** parts (a text read through a pre-trained extractor, whose raw input is the text's
  code points): its surprisal per character, how little its characters' order explains it and its share
  of repeated words under a character model of the training texts (:mod:`mmrobust.textgate`;
  a placeholder, one word repeated or random letters lie among real texts' features),
- the **feature** part, by the detector:

  - ``mahalanobis`` (Lee et al., NeurIPS 2018): the squared Mahalanobis distance of the encoder's
    feature to the nearest class mean, with one covariance shared by the classes (multi-label: one
    mean for all rows),
  - ``energy`` (Liu et al., NeurIPS 2020): ``-logsumexp`` of the uni-modal logits,
  - ``knn`` (Sun et al., ICML 2022): the distance of the L2-normalised feature to its
    :data:`KNN_K`-th nearest training feature,
  - ``none``: no feature part,
  - ``auto`` (the default, chosen by measurement): no feature part where the input parts can be
    computed (an array input), ``mahalanobis`` where they cannot (tokens). On the digits and on
    AV-MNIST the levels part alone catches every blank, constant and noise input of either
    modality; a feature part caught none that the input parts missed, and on the digits' held-out
    speakers it ignored 1.6-3.8% of the clean recordings (benchmarks/failures/RESULTS.md).

A row is never left with nothing: where every present modality would be ignored, the least
implausible one (the smallest excess over its threshold, in units of the clean validation
scores' spread) is kept. The *soft* gate (:meth:`InputGate.weights`, reported beside the hard one)
weighs each input instead, 1 at its threshold falling to 0 at :data:`SOFT_RAMP` clean spreads above
it. Nothing here reads a test row.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Collection, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .batch import MultiModalDataset, iter_chunks, take_rows
from .config import GATE_DETECTORS as DETECTORS, GATE_FALSE_ALARMS as FALSE_ALARMS, GATE_SOFT_RAMP as SOFT_RAMP
from .errors import ConfigError, DataError, ModelFileError
from .textgate import fit_text_model, is_text_view, text_parts

DEFAULT_DETECTOR = "auto"
FIT_ROWS = 5000  # training rows (at most, evenly spaced) the statistics come from
KNN_K = 10
SHRINKAGE = 1e-3  # of the mean variance, added to the shared covariance's diagonal
INPUT_DIMS = 4096  # input values the input part reads per row (evenly spaced beyond that)
INPUT_COMPONENTS = 32  # principal directions of the training inputs in the input part
ROWS_PER_DIRECTION = 10  # training rows per principal direction at least (fewer rows, fewer directions)
TAIL_MIN_ROWS = 8  # fewer clean validation scores: no tail fitted (their largest is the threshold)
LEVEL_TOLERANCE = 4.0  # an input whose spread or roughness is this many times off the training median is implausible


@dataclass
class ModalityGate:
    """One modality's detector: its Stage-1 model, training statistics and threshold."""

    model: nn.Module  # a uni-modal classifier: ``encoder`` then ``head``
    statistics: dict[str, Tensor]
    threshold: float
    spread: float  # threshold minus the median clean validation score (> 0)
    reads_raw: bool = False  # the input parts read the raw input (MultiModalDataset.raw), not the model's


class InputGate:
    """Per modality: is this present input plausible? (see the module's docstring)"""

    def __init__(self, gates: Mapping[str, ModalityGate], detector: str = DEFAULT_DETECTOR,
                 false_alarms: float = FALSE_ALARMS, batch_size: int = 256) -> None:
        check_detector(detector)
        self.gates, self.detector, self.false_alarms, self.batch_size = dict(gates), detector, false_alarms, batch_size
        self.soft_ramp = SOFT_RAMP  # the soft gate's (:meth:`weights`)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.gates)

    @classmethod
    def fit(cls, models: Mapping[str, nn.Module], train: MultiModalDataset, val: MultiModalDataset, *,
            detector: str = DEFAULT_DETECTOR, false_alarms: float = FALSE_ALARMS, batch_size: int = 256,
            pictures: Collection[str] = ()) -> "InputGate":
        """Statistics from ``train``, each threshold from the clean ``val`` rows of its modality.
        ``pictures``: the modalities read from pictures, which get the residual part (a spectrogram's
        distance to the training speakers' subspace is what a new speaker has: on the digits' held-out
        speakers it ignored 35% of clean recordings)."""
        check_detector(detector)
        if not 0.0 < false_alarms < 1.0:
            raise ConfigError(f"gate false_alarms {false_alarms!r}: expected a share strictly between 0 and 1 (e.g. 0.01)")
        gate = cls({}, detector, false_alarms, batch_size)
        for m, model in sorted(models.items()):
            model = copy.deepcopy(model).eval()
            reads_raw = m in train.raw
            if reads_raw and m not in val.raw:
                raise DataError(f"the input gate reads {m}'s raw inputs: the training rows have them, the validation rows not")
            arrays = reads_arrays(train.inputs[m], train.raw.get(m))
            if not arrays and detector == "none":
                raise ConfigError(f"gate detector 'none': {m} is no array input (tokens?), so the gate would score "
                                  "nothing; choose auto or a feature detector")
            rows = _spaced(np.flatnonzero(train.present[m].numpy()), FIT_ROWS)
            features, logits, flat, coarse = gate._outputs(model, train.inputs[m], rows, train.raw.get(m))
            statistics = fit_statistics(feature_detector(detector, arrays), features, train.target[torch.as_tensor(rows)],
                                        train.task)
            if is_text_view(flat):
                statistics.update(fit_text_model(flat))
            elif flat is not None:
                flat = _with_spread(m, flat)
                statistics.update(fit_input_basis(flat))
                statistics.update({f"input_{k}": v for k, v in _gaussian(input_summary(flat, statistics)).items()})
                statistics.update(fit_levels(flat))
                if coarse is not None and m in pictures:
                    statistics.update(fit_residual(coarse))
            clean = np.flatnonzero(val.present[m].numpy())
            if not len(clean):
                raise DataError(f"the input gate needs validation rows with {m} present; there are none")
            parts = _parts(detector, statistics, *gate._outputs(model, val.inputs[m], clean, val.raw.get(m)))
            parts = _without_degenerate(m, parts)
            for name, values in parts.items():  # each part in units of its clean validation spread
                if name == "levels":  # but the levels: a fixed tolerance (fit_levels)
                    continue
                statistics[f"{name}_median"] = torch.tensor(float(np.median(values)), dtype=torch.float64)
                statistics[f"{name}_quantile"] = torch.tensor(_quantile(values, false_alarms), dtype=torch.float64)
            scores = combined(parts, statistics)
            threshold = clean_threshold(scores, false_alarms)
            spread = max(threshold - float(np.median(scores)), 1e-12)
            gate.gates[m] = ModalityGate(model, statistics, threshold, spread, reads_raw)
        return gate

    # --- scoring ---------------------------------------------------------------------------
    def scores(self, inputs: Mapping[str, Any], present: Mapping[str, Any],
               raw: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Each gated modality of ``present``: its score on its present rows (NaN where it is
        absent). ``raw``: the raw inputs of the modalities whose gate reads them (:attr:`reads_raw`)."""
        out = {}
        for m, gate in self.gates.items():
            if m not in present:
                continue
            if gate.reads_raw and m not in (raw or {}):
                raise ConfigError(f"the input gate of {m} reads its raw inputs (before the projection); none were given")
            rows = np.flatnonzero(np.asarray(present[m]))
            values = np.full(len(np.asarray(present[m])), np.nan)
            if len(rows):
                outputs = self._outputs(gate.model, inputs[m], rows, raw[m] if gate.reads_raw else None)
                parts = _parts(self.detector, gate.statistics, *outputs)
                scored = combined(parts, gate.statistics)
                values[rows] = np.where(np.isnan(scored), -np.inf, scored)  # no raw input to judge (a picture given
                # as its features, gate_inputs): taken as plausible
            out[m] = values
        return out

    def ignored(self, scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per modality, the rows whose input is ignored (above the threshold), never every
        modality of a row (the least implausible stays)."""
        excess = {m: (s - self.gates[m].threshold) / self.gates[m].spread for m, s in scores.items()}
        flagged = {m: np.nan_to_num(e, nan=-np.inf) > 0 for m, e in excess.items()}
        present = {m: ~np.isnan(s) for m, s in scores.items()}
        mods = sorted(scores)
        emptied = np.logical_and.reduce([flagged[m] | ~present[m] for m in mods]) & np.logical_or.reduce(
            [present[m] for m in mods])
        if emptied.any():  # the least implausible present input stays (an infinite excess ranks above any absent one)
            finite = np.finfo(np.float64).max
            stacked = np.stack([np.where(present[m], np.nan_to_num(excess[m], posinf=finite), np.inf) for m in mods])
            keep = np.argmin(stacked, axis=0)
            for i, m in enumerate(mods):
                flagged[m] = flagged[m] & ~(emptied & (keep == i))
        return flagged

    def weights(self, scores: Mapping[str, np.ndarray], ramp: float | None = None) -> dict[str, np.ndarray]:
        """Per modality, how much each row's input counts (the soft gate): 1 at or below the
        threshold, falling linearly to 0 at ``ramp`` (default :attr:`soft_ramp`) clean spreads above
        it; 0 where it is absent.
        A ramp of 0 is the hard gate's step (:meth:`ignored` without its rule for a row left empty,
        which the mixture applies: :func:`mmrobust.evaluation.soft_proba`)."""
        ramp, out = self.soft_ramp if ramp is None else ramp, {}
        for m, s in scores.items():
            excess = (s - self.gates[m].threshold) / self.gates[m].spread
            with np.errstate(invalid="ignore"):
                weight = np.where(excess <= 0, 1.0, 0.0) if ramp <= 0 else np.clip(1.0 - excess / ramp, 0.0, 1.0)
            out[m] = np.where(np.isnan(s), 0.0, weight)
        return out

    def reason(self, m: str, value: float) -> str:
        return f"implausible input: score {value:.1f} > threshold {self.gates[m].threshold:.1f}"

    def _outputs(self, model: nn.Module, x: Any, rows: np.ndarray, raw: Any = None) -> tuple[Tensor | None, ...]:
        """Features and logits of ``model`` on ``rows`` of ``x`` (on the model's device; ``None``
        where the feature part is off, :func:`feature_detector`), each row's input flattened
        (at most :data:`INPUT_DIMS` evenly spaced values; its ``raw`` input where given, a text's
        view as it is; ``None`` for inputs that are not arrays, such as tokens), and, for pictures
        (and other inputs of two spatial axes), their :func:`coarse_view` (else ``None``)."""
        device = next(model.parameters()).device
        index = torch.as_tensor(rows, dtype=torch.long)
        taken = {"x": take_rows(x, index), **({"raw": take_rows(raw, index)} if raw is not None else {})}
        encode = feature_detector(self.detector, reads_arrays(x, raw)) != "none"
        features, logits, summaries, coarse = [], [], [], []
        with torch.no_grad():
            every = torch.ones(len(rows), dtype=torch.bool)
            for chunk, _, _ in iter_chunks(taken, {k: every for k in taken}, self.batch_size, device):
                if encode:
                    f = model.encoder(chunk["x"])
                    features.append(f.float().cpu())
                    logits.append(model.head(f).float().cpu())
                looked_at = chunk.get("raw", chunk["x"])
                if is_text_view(looked_at):
                    summaries.append(looked_at.cpu())
                elif isinstance(looked_at, Tensor):
                    summaries.append(flatten_input(looked_at).cpu())
                    if has_picture_axes(looked_at):
                        coarse.append(coarse_view(looked_at).cpu())
        return (torch.cat(features) if encode else None, torch.cat(logits) if encode else None,
                torch.cat(summaries) if summaries else None, torch.cat(coarse) if coarse else None)

    # --- saving ---------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        out = {}
        for m, gate in self.gates.items():
            out.update({f"{m}.model.{k}": v for k, v in gate.model.state_dict().items()})
            out.update({f"{m}.statistics.{k}": v for k, v in gate.statistics.items()})
        return out

    def to_dict(self) -> dict:
        return {"detector": self.detector, "false_alarms": self.false_alarms,
                "modalities": {m: {"threshold": g.threshold, "spread": g.spread, **({"reads": "raw"} if g.reads_raw else {})}
                               for m, g in self.gates.items()}}

    @classmethod
    def restore(cls, meta: Mapping[str, Any], tensors: Mapping[str, Tensor], models: Mapping[str, nn.Module],
                where: str) -> "InputGate":
        """From :meth:`to_dict` and :meth:`state_tensors`; ``models``: unfitted architectures to load into."""
        try:
            detector, false_alarms = meta["detector"], float(meta["false_alarms"])
            gates = {}
            for m, entry in meta["modalities"].items():
                threshold, spread = float(entry["threshold"]), float(entry["spread"])
                if not (np.isfinite(threshold) and np.isfinite(spread) and spread > 0 and threshold >= 0):
                    raise ValueError(f"{m}: threshold {threshold} and spread {spread}: both must be finite, the "
                                     "threshold at least 0, the spread positive")
                model = models[m]
                prefix = f"{m}.model."
                model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
                prefix = f"{m}.statistics."
                statistics = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                check_statistics(m, statistics, detector)
                reads = entry.get("reads", "input")
                if reads not in ("input", "raw"):
                    raise ValueError(f"{m}: reads {reads!r}, expected 'input' or 'raw'")
                gates[m] = ModalityGate(model.eval(), statistics, threshold, spread, reads == "raw")
            return cls(gates, detector, false_alarms)
        except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as err:
            raise ModelFileError(f"{where}: not a valid input gate ({type(err).__name__}: {err})") from None


INPUT_KEYS = ("input_basis", "input_centre", "input_mean", "input_precision", "input_median", "input_quantile",
              "level_typical", "levels_median", "levels_quantile")
RESIDUAL_KEYS = ("residual_centre", "residual_basis", "residual_median", "residual_quantile")  # optional: older gates lack them
FEATURE_KEYS = {"mahalanobis": ("means", "precision"), "knn": ("bank",), "energy": ()}


def check_statistics(m: str, statistics: Mapping[str, Tensor], detector: str) -> None:
    """A saved gate's statistics as :meth:`InputGate.fit` writes them, or a ``ValueError`` saying
    what is not: each in its dtype (the text model's integers, else float32/64), finite, every
    part complete and of shapes that fit together, and at least one part."""
    for key, value in statistics.items():
        dtypes = (torch.int64,) if key.startswith("text_") else (torch.float32, torch.float64)
        if value.dtype not in dtypes:
            raise ValueError(f"{m}: statistic {key} is {value.dtype}, expected {' or '.join(map(str, dtypes))}")
        if value.dtype.is_floating_point and not torch.isfinite(value).all():
            raise ValueError(f"{m}: statistic {key} holds NaN or infinite values")
    parts = 0
    if any(key in statistics for key in INPUT_KEYS):
        _require(m, statistics, INPUT_KEYS)
        d, q = statistics["input_basis"].shape if statistics["input_basis"].dim() == 2 else (-1, -1)
        _shapes(m, statistics, {"input_basis": (d, q), "input_centre": (d,), "input_mean": (q + 2,),
                                "input_precision": (q + 2, q + 2), "level_typical": (2,), "input_median": (),
                                "input_quantile": (), "levels_median": (), "levels_quantile": ()})
        parts += 1
    if any(key in statistics for key in RESIDUAL_KEYS):
        _require(m, statistics, RESIDUAL_KEYS)
        d, q = statistics["residual_basis"].shape if statistics["residual_basis"].dim() == 2 else (-1, -1)
        _shapes(m, statistics, {"residual_centre": (d,), "residual_basis": (d, q), "residual_median": (),
                                "residual_quantile": ()})
    if "text_alphabet" in statistics:
        order = sum(1 for key in statistics if key.startswith("text_ngrams_"))
        _require(m, statistics, [f"text_{kind}_{n}" for n in range(1, order + 1) for kind in ("ngrams", "counts")])
        for n in range(1, order + 1):
            if statistics[f"text_ngrams_{n}"].shape != statistics[f"text_counts_{n}"].shape:
                raise ValueError(f"{m}: statistics text_ngrams_{n} and text_counts_{n} differ in length")
        parts += 1
    feature = feature_detector(detector, parts > 0)
    if feature != "none":
        _require(m, statistics, (*FEATURE_KEYS[feature], "feature_median", "feature_quantile"))
        if feature == "mahalanobis":
            width = statistics["means"].shape[-1]
            _shapes(m, statistics, {"precision": (width, width), "means": (statistics["means"].shape[0], width)})
        parts += 1
    if not parts:
        raise ValueError(f"{m}: no part of the gate has its statistics (input, text or feature)")


def _require(m: str, statistics: Mapping[str, Tensor], keys) -> None:
    missing = [key for key in keys if key not in statistics]
    if missing:
        raise ValueError(f"{m}: statistic {missing[0]} is missing")


def _shapes(m: str, statistics: Mapping[str, Tensor], shapes: Mapping[str, tuple]) -> None:
    for key, shape in shapes.items():
        if tuple(statistics[key].shape) != tuple(shape) or -1 in shape:
            raise ValueError(f"{m}: statistic {key} has shape {list(statistics[key].shape)}, expected {list(shape)}")


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise ConfigError(f"gate detector {detector!r}: expected one of {', '.join(DETECTORS)}")
    return detector


def reads_arrays(x: Any, raw: Any = None) -> bool:
    """Whether the input parts can read a modality of input ``x`` (and ``raw`` input): an array, not tokens."""
    return raw is not None or not isinstance(x, Mapping)


def feature_detector(detector: str, arrays: bool) -> str:
    """The feature part's detector: ``auto`` is ``none`` for an array input, else ``mahalanobis``."""
    if detector == "auto":
        return "none" if arrays else "mahalanobis"
    return detector


def fit_statistics(detector: str, features: Tensor, target: Tensor, task: str) -> dict[str, Tensor]:
    """What ``detector`` keeps of the training features (float64 for the covariance)."""
    if detector in ("energy", "none"):
        return {}
    f = features.double()
    if detector == "knn":
        return {"bank": nn.functional.normalize(f, dim=1).float()}
    labels = target.long() if task == "multiclass" else torch.zeros(len(f), dtype=torch.long)
    classes = torch.unique(labels)
    means = torch.stack([f[labels == c].mean(0) for c in classes])
    return {"means": means, "precision": _shrunk_precision(f - means[torch.searchsorted(classes, labels)])}


def flatten_input(x: Tensor) -> Tensor:
    """Each row's values, flat (at most :data:`INPUT_DIMS` of them, evenly spaced), float32."""
    flat = x.reshape(len(x), -1)
    if flat.shape[1] > INPUT_DIMS:
        flat = flat[:, torch.linspace(0, flat.shape[1] - 1, INPUT_DIMS, device=flat.device).long()]
    return flat.float()


def fit_input_basis(flat: Tensor) -> dict[str, Tensor]:
    """The training inputs' centre and their top :data:`INPUT_COMPONENTS` principal directions
    (one per :data:`ROWS_PER_DIRECTION` training rows at most: the summary's covariance is fitted on
    those rows, and a modality present on 93 of them gets 9 directions, not an overfit 32)."""
    x = flat.double()
    centre = x.mean(0)
    centred = x - centre
    q = min(INPUT_COMPONENTS, x.shape[1], max(len(x) // ROWS_PER_DIRECTION, 1))
    if centred.shape[1] <= centred.shape[0]:  # the scatter matrix's eigenvectors: 3-4x faster than the SVD
        basis = torch.linalg.eigh(centred.T @ centred).eigenvectors.flip(1)[:, :q]
    else:
        basis = torch.linalg.svd(centred, full_matrices=False).Vh[:q].T
    return {"input_centre": centre, "input_basis": basis.contiguous()}


def input_summary(flat: Tensor, statistics: Mapping[str, Tensor]) -> Tensor:
    """Per row: the mean and the standard deviation of its input values, and its coordinates on
    the training inputs' principal directions (noise spreads over directions digits leave flat)."""
    x = flat.double()
    coordinates = (x - statistics["input_centre"]) @ statistics["input_basis"]
    return torch.cat([x.mean(1, keepdim=True), x.std(1, correction=0, keepdim=True), coordinates], 1)


COARSE_BLOCK = 2  # the residual part reads pictures in blocks of 2 x 2 pixels (pixel noise averages out)


def has_picture_axes(x: Tensor) -> bool:
    """Whether an input batch holds pictures (``N x C x H x W``, both sides at least 8): the residual part reads those."""
    return x.dim() == 4 and min(x.shape[-2:]) >= 8


def coarse_view(x: Tensor) -> Tensor:
    """Per picture: the means of its 2 x 2 blocks (flat; an odd last row or column left out),
    standardised (their own mean and standard deviation: brightness and contrast are the input and
    levels parts' to judge, the residual part judges shape), then its pixel-noise level on that
    scale: sigma estimated from the median absolute difference of horizontal neighbours (median
    |N(0, 2 sigma^2)| = 0.6745 sqrt(2) sigma; 0 on a clean picture's flat background)."""
    x = x.double()
    h, w = (x.shape[-2] // COARSE_BLOCK) * COARSE_BLOCK, (x.shape[-1] // COARSE_BLOCK) * COARSE_BLOCK
    blocks = nn.functional.avg_pool2d(x[..., :h, :w], COARSE_BLOCK).reshape(len(x), -1)
    spread = blocks.std(1, correction=0, keepdim=True)
    scale = torch.where(spread > 0, 1 / spread.clamp(min=1e-300), torch.zeros_like(spread))  # a flat picture: all 0
    noise = (x[..., 1:] - x[..., :-1]).abs().reshape(len(x), -1).median(1).values / (0.6745 * np.sqrt(2))
    return torch.cat([(blocks - blocks.mean(1, keepdim=True)) * scale, noise[:, None] * scale], 1)


def fit_residual(coarse: Tensor) -> dict[str, Tensor]:
    """The training pictures' coarse views: their centre and top principal directions, as for the input part."""
    basis = fit_input_basis(coarse[:, :-1])
    return {"residual_centre": basis["input_centre"], "residual_basis": basis["input_basis"]}


def input_residual(coarse: Tensor, statistics: Mapping[str, Tensor]) -> np.ndarray:
    """Per picture: the squared distance of its coarse view to the training pictures' principal
    subspace (what the top directions leave unexplained), less what its pixel noise alone would
    leave there ((D - q) sigma^2 / 4 for D block means and q directions). A digit moved or turned
    keeps its mean, spread and coordinates on those directions, but not its distance to them; a
    noisy digit is near the subspace once its noise is counted out."""
    blocks, noise = coarse[:, :-1], coarse[:, -1]
    basis = statistics["residual_basis"]
    centred = blocks - statistics["residual_centre"]
    coordinates = centred @ basis
    floor = (basis.shape[0] - basis.shape[1]) * noise ** 2 / COARSE_BLOCK ** 2
    return ((centred * centred).sum(1) - (coordinates * coordinates).sum(1) - floor).numpy()


def _gaussian(values: Tensor) -> dict[str, Tensor]:
    """Mean and (shrunk) inverse covariance of ``values``' rows."""
    v = values.double()
    return {"mean": v.mean(0), "precision": _shrunk_precision(v - v.mean(0))}


def _shrunk_precision(centred: Tensor) -> Tensor:
    """The inverse of the rows' covariance, :data:`SHRINKAGE` of its mean variance added to the diagonal."""
    covariance = centred.T @ centred / max(len(centred) - 1, 1)
    covariance += SHRINKAGE * covariance.diagonal().mean().clamp(min=1e-12) * torch.eye(centred.shape[1], dtype=centred.dtype)
    return torch.linalg.inv(covariance)


def _parts(detector: str, statistics: Mapping[str, Tensor], features: Tensor, logits: Tensor,
           flat: Tensor | None, coarse: Tensor | None = None) -> dict[str, np.ndarray]:
    """The feature score of ``detector`` and, for array inputs, the squared Mahalanobis distance of
    the input's summary (:func:`input_summary`) to the training inputs' (a blank or constant input
    has no spread; a noise image spreads over every principal direction)."""
    detector = feature_detector(detector, flat is not None)
    parts = {"feature": score(detector, statistics, features, logits)} if detector != "none" else {}
    if flat is not None and "text_alphabet" in statistics:
        parts.update(text_parts(flat, statistics))
    if flat is not None and "input_mean" in statistics:
        d = input_summary(flat, statistics) - statistics["input_mean"]
        parts["input"] = ((d @ statistics["input_precision"]) * d).sum(1).numpy()
    if coarse is not None and "residual_basis" in statistics:  # a gate saved before the residual part has none
        parts["residual"] = input_residual(coarse, statistics)
    if flat is not None and "level_typical" in statistics:
        parts["levels"] = level_ratios(flat, statistics)
    return parts


def input_levels(flat: Tensor) -> Tensor:
    """Per row: the standard deviation of its input values and their roughness (the mean absolute
    difference of neighbouring values over the standard deviation; 0 for a row without spread).
    A blank or constant input has no spread; a hiss is flat; pixel noise is rough."""
    x = flat.double()
    spread = x.std(1, correction=0)
    steps = (x[:, 1:] - x[:, :-1]).abs().mean(1) if x.shape[1] > 1 else torch.zeros(len(x), dtype=x.dtype)
    roughness = torch.where(spread > 0, steps / spread.clamp(min=1e-300), torch.zeros_like(spread))
    return torch.stack([spread, roughness], 1)


def level_ratios(flat: Tensor, statistics: Mapping[str, Tensor]) -> np.ndarray:
    """Per row: how many times its :func:`input_levels` are off the training inputs' medians (the
    largest factor, up or down; infinite for a level of 0 where the median is not)."""
    levels, median = input_levels(flat), statistics["level_typical"]
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0; 0 - 0 logs where the median is 0 (masked below)
        ratios = np.abs(np.log(levels.numpy()) - np.log(median.numpy()))
    ratios = np.where(median.numpy() > 0, ratios, 0.0)  # a level no training input has says nothing
    return np.exp(ratios.max(1))


def fit_levels(flat: Tensor) -> dict[str, Tensor]:
    """The training inputs' median :func:`input_levels`, and the levels part's fixed scale: a
    factor of :data:`LEVEL_TOLERANCE` off counts as much as the other parts' clean quantile (a
    sensor's range is a tolerance, not a share of validation rows: new speakers and cameras
    vary more than the training ones)."""
    return {"level_typical": input_levels(flat).median(0).values,
            "levels_median": torch.tensor(1.0, dtype=torch.float64),
            "levels_quantile": torch.tensor(LEVEL_TOLERANCE, dtype=torch.float64)}


def _with_spread(m: str, flat: Tensor) -> Tensor:
    """The training inputs with any spread, where most have some: one with none (digital silence
    shipped as a sound, a blank picture) is what a broken sensor sends, and would widen the
    statistics it is judged by. (Where most have none, as a feature of one value, none is normal.)"""
    spread = flat.double().std(1, correction=0) > 0
    if spread.all() or spread.double().mean() <= 0.5:
        return flat
    warnings.warn(f"input gate: {int((~spread).sum())} of {len(spread)} training inputs of {m} have no spread at all "
                  "(digital silence, a blank picture); left out of the gate's statistics", UserWarning, stacklevel=3)
    return flat[spread]


def _without_degenerate(m: str, parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The clean validation rows' parts without the degenerate ones: an input with an infinite
    part (no spread at all: a recording of digital silence, a blank picture) is what a broken
    sensor sends whatever the data calls it, so it sets no threshold (one would switch the gate
    off); said in a warning, since the gate will ignore such inputs."""
    finite = np.logical_and.reduce([np.isfinite(values) for values in parts.values()])
    if finite.all():
        return dict(parts)
    if not finite.any():
        raise DataError(f"the input gate of {m}: every clean validation input is degenerate (no spread at all: "
                        "blank or silent); nothing to set a threshold on")
    warnings.warn(f"input gate: {int((~finite).sum())} of {len(finite)} clean validation inputs of {m} have no spread at "
                  "all (digital silence, a blank picture); they set no threshold, and the gate treats such inputs as "
                  "missing", UserWarning, stacklevel=3)
    return {name: values[finite] for name, values in parts.items()}


def combined(parts: Mapping[str, np.ndarray], statistics: Mapping[str, Tensor]) -> np.ndarray:
    """The largest part, each as (score - clean median) / (clean quantile - clean median)."""
    scaled = [(values - float(statistics[f"{name}_median"]))
              / max(float(statistics[f"{name}_quantile"]) - float(statistics[f"{name}_median"]), 1e-12)
              for name, values in parts.items()]
    return np.max(np.stack(scaled), axis=0)


def clean_threshold(scores: np.ndarray, false_alarms: float) -> float:
    """The score that at most ``false_alarms`` of clean inputs exceed. With ``n`` clean validation
    scores and ``n * false_alarms >= 1``, their empirical quantile. With fewer (a modality present
    on few rows: 26 validation sounds for 0.5%), that quantile is the largest score, which a new
    clean input exceeds with probability 1 / (n + 1), not ``false_alarms``: the tail is then
    extrapolated, an exponential fitted to the excesses of the top quarter of the scores over the
    next one (peaks over threshold), and the threshold is the larger of the two."""
    empirical = _quantile(scores, false_alarms)
    n = len(scores)
    if n * false_alarms >= 1 or n < TAIL_MIN_ROWS:
        return empirical
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = n // 4
    base = ordered[n - k - 1]
    excess = float(np.mean(ordered[n - k:] - base))
    return max(empirical, float(base + excess * np.log(k / (n * false_alarms))))


def _quantile(values: np.ndarray, false_alarms: float) -> float:
    """The clean score that at most ``false_alarms`` of ``values`` exceed."""
    return float(np.quantile(values, 1.0 - false_alarms, method="higher"))


def score(detector: str, statistics: Mapping[str, Tensor], features: Tensor, logits: Tensor) -> np.ndarray:
    """Higher: less like the training inputs."""
    if detector == "energy":
        return (-torch.logsumexp(logits.double(), dim=1)).numpy()
    if detector == "knn":
        bank = statistics["bank"]
        distances = torch.cdist(nn.functional.normalize(features.float(), dim=1), bank)
        k = min(KNN_K, bank.shape[0])
        return distances.topk(k, dim=1, largest=False).values[:, -1].double().numpy()
    f = features.double()
    distances = [((f - mu) @ statistics["precision"] * (f - mu)).sum(1) for mu in statistics["means"]]
    return torch.stack(distances).min(0).values.numpy()


def _spaced(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, evenly spaced (deterministic)."""
    if len(rows) <= limit:
        return rows
    return rows[np.linspace(0, len(rows) - 1, limit).astype(int)]
