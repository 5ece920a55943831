"""Does the model know when it cannot tell? Per presence pattern: calibration metrics (ECE, NLL,
Brier), post-hoc temperature scaling, and split-conformal prediction sets whose coverage holds
within each pattern (Mondrian by pattern) or only on average (pattern-blind).

Multi-class tasks. Pure numpy and scipy; the conformal step is vectorised here (crepes'
``ConformalClassifier`` is its reference in the tests; non-conformity ``1 - p(label)``,
non-smoothed p-values: the classical conservative guarantee).
A *pattern* is the set of modalities a row has, named as the ``subsets`` protocol names it
(``audio+image``). Conformal scores use the model's own probabilities, not the temperature-scaled
ones: the temperatures are fitted on the same validation rows, and scaling keeps the order of the
labels within a row, so the sets' guarantee stays exact.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import ConfigError, InputError

CALIBRATION_MODES = ("per-pattern", "global", "none")
ALL_PATTERNS = "*"  # the key of the global temperature
ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)
MIN_TEMPERATURE_ROWS = 30  # fewer validation rows of a pattern: its own temperature would be noise


def check_mode(mode: str) -> str:
    if mode not in CALIBRATION_MODES:
        raise ConfigError(f"calibration {mode!r}: expected one of {', '.join(CALIBRATION_MODES)}")
    return mode


# --- how calibrated -----------------------------------------------------------------------------
def reliability_bins(proba: np.ndarray, target: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin of top-label confidence ((0, 1/B], ..., ((B-1)/B, 1]): rows, summed
    confidence, correct rows. Sums, so that seeds and splits pool by adding."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == target
    which = np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True)
    return {"rows": np.bincount(which, minlength=bins).tolist(),
            "confidence": np.bincount(which, weights=confidence, minlength=bins).tolist(),
            "correct": np.bincount(which, weights=correct, minlength=bins).tolist()}


def expected_calibration_error(proba: np.ndarray, target: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over bins of (rows in bin / rows) x |accuracy - mean confidence|."""
    b = reliability_bins(proba, target, bins)
    return float(np.sum(np.abs(np.array(b["correct"]) - np.array(b["confidence"]))) / len(target))


def negative_log_likelihood(proba: np.ndarray, target: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(target)), target], 1e-12, 1.0))))


def brier_score(proba: np.ndarray, target: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot label."""
    onehot = np.eye(proba.shape[1])[target]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def calibration_metrics(proba: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {"ece": expected_calibration_error(proba, target), "nll": negative_log_likelihood(proba, target),
            "brier": brier_score(proba, target)}


# --- temperature scaling ------------------------------------------------------------------------
def scale_temperature(proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """softmax(log p / T), row-wise (``temperature`` a scalar or one per row)."""
    t = np.asarray(temperature, dtype=np.float64).reshape(-1, 1) if np.ndim(temperature) else float(temperature)
    with np.errstate(divide="ignore"):
        logits = np.log(proba.astype(np.float64)) / t
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(proba.dtype)


def fit_temperature(proba: np.ndarray, target: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(scale_temperature(proba, np.exp(log_t)), target),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


# --- conformal prediction sets ------------------------------------------------------------------
def min_rows(coverage: float) -> int:
    """The fewest calibration rows for which a split-conformal set at ``coverage`` can leave a
    label out (with fewer, the only valid set is every label)."""
    check_coverage(coverage)
    alpha = 1.0 - coverage
    n = 1
    while 1.0 / (n + 1) >= alpha:
        n += 1
    return n


def check_coverage(coverage: float) -> float:
    if not 0.0 < coverage < 1.0:
        raise ConfigError(f"coverage {coverage!r}: expected a share strictly between 0 and 1 (e.g. 0.9)")
    return coverage


def conformal_sets(cal_scores: np.ndarray, proba: np.ndarray, coverage: float, *, cal_bins: np.ndarray | None = None,
                   bins: np.ndarray | None = None) -> np.ndarray:
    """Prediction sets (``rows x labels``, bool) at ``coverage`` from validation non-conformity
    scores ``1 - p(label)``; with ``cal_bins``/``bins``, one quantile per bin (Mondrian): a label
    is in the set when its p-value is at least ``1 - coverage``."""
    p_values = conformal_p_values(cal_scores, 1.0 - proba.astype(np.float64), cal_bins, bins)
    return p_values >= 1 - coverage


def conformal_p_values(cal_scores: np.ndarray, test_scores: np.ndarray, cal_bins: np.ndarray | None = None,
                       bins: np.ndarray | None = None) -> np.ndarray:
    """Split-conformal p-values, not smoothed: ``(#{calibration scores >= s} + 1) / (q + 1)`` over
    the ``q`` calibration scores of the test row's bin (1 where its bin has none). Vectorised: one
    sort and one ``searchsorted`` per bin (crepes' ``p_values_batch`` gives the same values with
    a Python loop over rows: tests/test_conformal_reference.py holds it to them)."""
    cal = np.asarray(cal_scores, dtype=np.float64)
    test = np.asarray(test_scores, dtype=np.float64)
    cal_bins = np.zeros(len(cal), dtype=int) if cal_bins is None else np.asarray(cal_bins)
    bins = np.zeros(len(test), dtype=int) if bins is None else np.asarray(bins)
    out = np.ones(test.shape, dtype=np.float64)
    for value in np.unique(bins):
        rows = bins == value
        ordered = np.sort(cal[cal_bins == value])
        at_least = len(ordered) - np.searchsorted(ordered, test[rows], side="left")
        out[rows] = (at_least + 1) / (len(ordered) + 1)
    return out


def set_metrics(sets: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Coverage, mean set size, share answered (a single label) and accuracy on those rows."""
    single = sets.sum(axis=1) == 1
    answered_right = sets[np.arange(len(target)), target] & single
    return {"coverage": float(sets[np.arange(len(target)), target].mean()), "set_size": float(sets.sum(axis=1).mean()),
            "answered": float(single.mean()),
            "answered_accuracy": float(answered_right.sum() / single.sum()) if single.any() else None}


# --- fitted on validation, kept with a model ------------------------------------------------------
@dataclass
class Calibration:
    """Temperatures (``mode``: one per pattern, one for all, or none) and the validation rows'
    conformal scores per pattern, fitted on a model's validation probabilities."""

    mode: str = "per-pattern"
    temperatures: dict[str, float] = field(default_factory=dict)  # pattern (and ALL_PATTERNS) -> T
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # pattern -> validation 1 - p(label)

    @classmethod
    def fit(cls, proba: np.ndarray, target: np.ndarray, patterns: np.ndarray, mode: str = "per-pattern") -> "Calibration":
        """From validation rows (each with its presence pattern); a row may appear once per pattern."""
        check_mode(mode)
        if not len(target):
            raise InputError("calibration needs validation rows; none can be scored")
        temperatures = {}
        if mode != "none":
            temperatures[ALL_PATTERNS] = fit_temperature(proba, target)
        if mode == "per-pattern":  # a pattern with too few rows keeps the global temperature
            temperatures.update({p: fit_temperature(proba[patterns == p], target[patterns == p]) for p in np.unique(patterns)
                                 if (patterns == p).sum() >= MIN_TEMPERATURE_ROWS})
        scores = 1.0 - proba[np.arange(len(target)), target]
        return cls(mode, temperatures, {p: np.sort(scores[patterns == p]) for p in np.unique(patterns)})

    def temperature(self, pattern: str) -> float:
        return self.temperatures.get(pattern, self.temperatures.get(ALL_PATTERNS, 1.0))

    def calibrate(self, proba: np.ndarray, patterns: Sequence[str]) -> np.ndarray:
        """Temperature-scaled probabilities, each row with its pattern's temperature."""
        if self.mode == "none":
            return proba
        return scale_temperature(proba, np.array([self.temperature(p) for p in patterns]))

    def validation_rows(self, pattern: str) -> int:
        return len(self.scores.get(pattern, ()))

    def check_rows(self, patterns: Sequence[str], coverage: float) -> None:
        """Refuse a pattern with too few validation rows for ``coverage`` (never a silent guess)."""
        needed = min_rows(coverage)
        for pattern in dict.fromkeys(patterns):
            if self.validation_rows(pattern) < needed:
                raise InputError(f"presence pattern {pattern!r}: {self.validation_rows(pattern)} validation rows; "
                                 f"prediction sets at coverage {coverage:g} need at least {needed}")

    def prediction_sets(self, proba: np.ndarray, patterns: Sequence[str], coverage: float,
                        mondrian: bool = True) -> np.ndarray:
        """Conformal sets at ``coverage``: one quantile per pattern (``mondrian``) or one for all
        patterns pooled (pattern-blind). ``proba``: the model's own probabilities."""
        patterns = np.asarray(patterns, dtype=object)
        if not mondrian:
            return conformal_sets(np.concatenate(list(self.scores.values())), proba, coverage)
        self.check_rows(patterns, coverage)
        cal = np.concatenate([self.scores[p] for p in sorted(self.scores)])
        cal_bins = np.concatenate([np.full(len(self.scores[p]), p, dtype=object) for p in sorted(self.scores)])
        return conformal_sets(cal, proba, coverage, cal_bins=cal_bins, bins=patterns)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "temperatures": dict(self.temperatures),
                "scores": {p: [float(s) for s in v] for p, v in self.scores.items()}}  # exact: sets depend on ties

    @classmethod
    def from_dict(cls, data: Mapping, patterns: Sequence[str] | None = None) -> "Calibration":
        """From :meth:`to_dict`, every value checked: a temperature finite and positive, a
        conformal score finite in [0, 1], each key a presence pattern of ``patterns`` (or the
        global one). A hand-edited file is refused, never applied (a negative temperature
        inverts the probabilities)."""
        if not isinstance(data, Mapping) or not all(isinstance(data.get(k), Mapping) for k in ("temperatures", "scores")):
            raise ValueError("expected an object with mode, temperatures and scores")
        known = None if patterns is None else {*patterns, ALL_PATTERNS}
        temperatures = {}
        for key, value in data["temperatures"].items():
            if known is not None and key not in known:
                raise ValueError(f"temperature for {key!r}, not a presence pattern of this model ({', '.join(sorted(known))})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"temperature {value!r} for {key!r}: expected a finite number above 0")
            temperatures[str(key)] = float(value)
        scores = {}
        for key, values in data["scores"].items():
            if known is not None and key not in known:
                raise ValueError(f"scores for {key!r}, not a presence pattern of this model")
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any((array < 0) | (array > 1)):
                raise ValueError(f"conformal scores for {key!r}: expected a list of numbers in [0, 1]")
            scores[str(key)] = array
        return cls(check_mode(data.get("mode")), temperatures, scores)
