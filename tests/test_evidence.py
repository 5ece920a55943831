"""Per-pattern evidence: bootstrap intervals against the uni-modal reference, calibration (ECE,
temperature scaling) and conformal prediction sets whose coverage holds within each pattern."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from mmrobust.calibration import (Calibration, brier_score, expected_calibration_error, fit_temperature, min_rows,
                                  negative_log_likelihood, scale_temperature, set_metrics)
from mmrobust.cli import main
from mmrobust.errors import ConfigError, InputError
from mmrobust.evidence import bootstrap_evidence, resample_weights, uniform_presence, weighted_metric
from mmrobust.predictor import Predictor

# --- calibration --------------------------------------------------------------------------------


def test_ece_matches_a_hand_computed_example():
    # confidences 0.9, 0.9 (bin 14: one right, one wrong), 0.6 (bin 8: right), 0.3 (bin 4: wrong)
    proba = np.array([[0.9, 0.1, 0.0], [0.9, 0.05, 0.05], [0.6, 0.4, 0.0], [0.3, 0.3, 0.4]])
    target = np.array([0, 1, 0, 0])
    # |0.5 - 0.9| * 2/4 + |1 - 0.6| * 1/4 + |0 - 0.4| * 1/4
    assert expected_calibration_error(proba, target) == pytest.approx(0.4 * 0.5 + 0.4 * 0.25 + 0.4 * 0.25)
    assert negative_log_likelihood(proba, target) == pytest.approx(-np.mean(np.log([0.9, 0.05, 0.6, 0.3])))
    assert brier_score(proba, target) == pytest.approx(np.mean([0.02, 0.81 + 0.9025 + 0.0025, 0.32, 0.49 + 0.09 + 0.16]))


def _logits(rng, n, classes, strength):
    target = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), target] += strength
    return logits, target


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_one_changes_nothing_and_a_known_temperature_is_recovered():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 6)) * 2
    calibrated = _softmax(logits)
    target = np.array([rng.choice(6, p=p) for p in calibrated])  # labels drawn from the calibrated model
    assert np.allclose(scale_temperature(calibrated, 1.0), calibrated, atol=1e-12)
    overconfident = _softmax(2.5 * logits)  # the same model, 2.5 times too sharp
    assert fit_temperature(overconfident, target) == pytest.approx(2.5, rel=0.1)
    assert expected_calibration_error(scale_temperature(overconfident, 2.5), target) < 0.5 * expected_calibration_error(overconfident, target)


def test_per_pattern_temperatures_and_modes():
    rng = np.random.default_rng(1)
    strong, y1 = _logits(rng, 2000, 5, 4.0)
    weak, y2 = _logits(rng, 2000, 5, 0.7)
    proba = np.concatenate([_softmax(3 * strong), _softmax(3 * weak)])  # both too sharp, differently
    target, patterns = np.concatenate([y1, y2]), np.array(["a+b"] * 2000 + ["b"] * 2000, dtype=object)
    per = Calibration.fit(proba, target, patterns, "per-pattern")
    glob = Calibration.fit(proba, target, patterns, "global")
    none = Calibration.fit(proba, target, patterns, "none")
    assert per.temperature("a+b") != pytest.approx(per.temperature("b"), rel=0.05)
    assert glob.temperature("a+b") == glob.temperature("b") and none.temperature("b") == 1.0
    assert np.array_equal(none.calibrate(proba, patterns), proba)
    weak_rows = patterns == "b"
    ece = {c.mode: expected_calibration_error(c.calibrate(proba, patterns)[weak_rows], target[weak_rows]) for c in (per, glob, none)}
    assert ece["per-pattern"] < ece["global"] < ece["none"]
    few = Calibration.fit(proba[:2010], target[:2010], patterns[:2010], "per-pattern")  # 'b': 10 rows
    assert "b" not in few.temperatures and few.temperature("b") == few.temperatures["*"]
    with pytest.raises(ConfigError, match="calibration 'sometimes'"):
        Calibration.fit(proba, target, patterns, "sometimes")


# --- conformal sets -----------------------------------------------------------------------------


def _weak_and_strong(rng, n):
    """Two presence patterns: 'a+b' (a confident, mostly right model) and 'b' (a weak one that is
    just as confident: the case where pooled calibration hides the weak pattern)."""
    s_logits, s_target = _logits(rng, n, 10, 5.0)
    w_logits, w_target = _logits(rng, n, 10, 1.5)
    proba = np.concatenate([_softmax(s_logits), _softmax(2 * w_logits)])
    return proba, np.concatenate([s_target, w_target]), np.array(["a+b"] * n + ["b"] * n, dtype=object)


def test_per_pattern_sets_cover_each_pattern_and_pattern_blind_sets_miss_the_weak_one():
    coverage = {("a+b", True): [], ("b", True): [], ("a+b", False): [], ("b", False): []}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        proba, target, patterns = _weak_and_strong(rng, 500)
        test_proba, test_target, test_patterns = _weak_and_strong(rng, 500)
        calibration = Calibration.fit(proba, target, patterns)
        for mondrian in (True, False):
            sets = calibration.prediction_sets(test_proba, test_patterns, 0.9, mondrian=mondrian)
            for pattern in ("a+b", "b"):
                rows = test_patterns == pattern
                coverage[(pattern, mondrian)].append(set_metrics(sets[rows], test_target[rows])["coverage"])
    mean = {k: np.mean(v) for k, v in coverage.items()}
    assert abs(mean[("a+b", True)] - 0.9) < 0.02 and abs(mean[("b", True)] - 0.9) < 0.02
    assert mean[("b", False)] < 0.85 and mean[("a+b", False)] > 0.95  # pooled: the weak pattern pays


def test_a_pattern_with_too_few_validation_rows_is_said_so():
    proba, target, patterns = _weak_and_strong(np.random.default_rng(0), 50)
    keep = np.r_[np.arange(50), 50 + np.arange(8)]  # 'b': 8 rows, coverage 0.9 needs 10
    calibration = Calibration.fit(proba[keep], target[keep], patterns[keep])
    assert min_rows(0.9) == 10 and min_rows(0.8) == 5
    with pytest.raises(InputError, match=r"presence pattern 'b': 8 validation rows; .* coverage 0.9 need at least 10"):
        calibration.prediction_sets(proba, patterns, 0.9)
    assert calibration.prediction_sets(proba[:50], patterns[:50], 0.9).shape == (50, 10)
    with pytest.raises(ConfigError, match="coverage 1.5"):
        calibration.prediction_sets(proba, patterns, 1.5)


def test_calibration_round_trips_through_json():
    proba, target, patterns = _weak_and_strong(np.random.default_rng(2), 200)
    calibration = Calibration.fit(proba, target, patterns)
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.temperatures == calibration.temperatures
    assert np.array_equal(again.prediction_sets(proba, patterns, 0.9), calibration.prediction_sets(proba, patterns, 0.9))


# --- bootstrap intervals ------------------------------------------------------------------------


def test_weighted_metrics_equal_scikit_learn_on_a_resample():
    rng = np.random.default_rng(0)
    target, answer = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    labels, chosen = rng.random((300, 5)) < 0.3, rng.random((300, 5)) < 0.4
    index = rng.integers(0, 300, 300)
    counts = np.bincount(index, minlength=300)[None, :].astype(np.float32)
    assert weighted_metric("accuracy", answer, target, counts)[0] == pytest.approx(accuracy_score(target[index], answer[index]))
    for average in ("macro", "micro"):
        expected = f1_score(labels[index], chosen[index], average=average, zero_division=0)
        assert weighted_metric(f"f1_{average}", chosen, labels, counts)[0] == pytest.approx(expected, rel=1e-5)


def _two_models(rng, n, p_fused=0.8, p_reference=0.7):
    """Decisions of a fused model and a uni-modal reference, right with the given probabilities."""
    target = rng.integers(0, 10, n)
    fused = np.where(rng.random(n) < p_fused, target, (target + 1) % 10)
    reference = np.where(rng.random(n) < p_reference, target, (target + 1) % 10)
    rows, key = np.arange(n), ("subsets", None, "a")
    decisions = {("fused", 0): {key: (rows, fused, "a")}, ("unimodal:a", 0): {key: (rows, reference, "a")}}
    return decisions, target


def test_intervals_shrink_with_rows_and_contain_the_true_difference():
    widths, contained = {}, []
    for n in (300, 3000):
        for rep in range(20):
            decisions, target = _two_models(np.random.default_rng(rep), n)
            (fused,) = [e for e in bootstrap_evidence(decisions, target, "accuracy", ["a"], resamples=400, seed=rep)
                        if e["method"] == "fused"]
            widths.setdefault(n, []).append(fused["high"] - fused["low"])
            contained.append(fused["difference_low"] <= 0.1 <= fused["difference_high"])
            assert fused["reference"] == "unimodal:a"
    assert np.mean(widths[3000]) < 0.45 * np.mean(widths[300])  # about 1/sqrt(10)
    assert np.mean(contained) >= 0.85  # a 95% interval, 40 tries


def test_verdicts_and_retention():
    decisions, target = _two_models(np.random.default_rng(0), 4000, p_fused=0.8, p_reference=0.7)
    rows = np.arange(4000)
    decisions[("tie", 0)] = {("subsets", None, "a"): (rows, decisions[("unimodal:a", 0)][("subsets", None, "a")][1], "a")}
    full = np.where(np.random.default_rng(9).random(4000) < 0.9, target, (target + 1) % 10)
    decisions[("fused", 0)][("full", None, None)] = (rows, full, "a")
    evidence = {e["method"]: e for e in bootstrap_evidence(decisions, target, "accuracy", ["a"]) if e["protocol"] == "subsets"}
    assert evidence["fused"]["verdict"] == "above" and evidence["tie"]["verdict"] == "tied"
    # paired: the same rows, a zero difference in every resample; not a point: ± the Wilson bound for no
    # row of 4000 going the other way, z^2 / (n + z^2)
    bound = 1.959964 ** 2 / (4000 + 1.959964 ** 2)
    assert evidence["tie"]["difference_low"] == pytest.approx(-bound, rel=1e-5)
    assert evidence["tie"]["difference_high"] == pytest.approx(bound, rel=1e-5)
    assert evidence["unimodal:a"]["reference"] is None  # a reference is not compared with itself
    assert evidence["fused"]["retention"] == pytest.approx(evidence["fused"]["value"] / np.mean(full == target))


def test_group_resampling_keeps_the_rows_of_a_group_together():
    groups = np.repeat(np.arange(5), 4)
    weights = resample_weights(20, 50, 0, groups)
    assert weights.shape == (50, 20) and np.all(weights.sum(axis=1) == 20)
    assert all(len(set(w[groups == g])) == 1 for w in weights for g in range(5))


def test_uniform_presence():
    present = {"a": np.array([1, 1, 0, 1], bool), "b": np.array([1, 0, 0, 1], bool)}
    assert uniform_presence(present, np.array([0, 3])) == "a+b"
    assert uniform_presence(present, np.array([1])) == "a"
    assert uniform_presence(present, np.array([0, 1])) is None


# --- through a run and a saved model ----------------------------------------------------------------


def test_a_run_reports_evidence_calibration_and_coverage(paper_run_dir):
    evidence = [json.loads(line) for line in (paper_run_dir / "evidence.jsonl").read_text().splitlines()]
    patterns = {e["pattern"] for e in evidence if e["protocol"] == "subsets"}
    assert patterns == {"audio+image", "audio", "image"}
    fused = [e for e in evidence if e["method"] == "ume-mma" and e["protocol"] == "subsets"]
    assert all(e["low"] <= e["value"] <= e["high"] and e["verdict"] in ("above", "tied", "below") for e in fused)
    assert {e["reference"] for e in fused if e["pattern"] == "image"} == {"unimodal:image"}
    # the digits reuse audio clips: where the audio is present, clips are resampled; with the image alone, rows
    assert {e["unit"] for e in evidence if e["presence"] != "image"} == {"group"}
    assert {e["unit"] for e in evidence if e["presence"] == "image"} == {"row"}
    report = (paper_run_dir / "report.md").read_text()
    for heading in ("Better than the uni-modal model of what is present?", "Does it know when it cannot tell?",
                    "coverage, pattern-blind", "![reliability](reliability.png)"):
        assert heading in report
    assert (paper_run_dir / "reliability.png").stat().st_size > 0
    card = (paper_run_dir / "model" / "model_card.md").read_text()
    assert "Calibration: `per-pattern`" in card
    assert "projected on the training images' 5 PCA components" in card  # what predict does to an image


def test_predictor_sets_round_trip_through_model_folder(paper_run_dir, tmp_path):
    from mmrobust.data.digits import load_digits_arrays

    predictor = Predictor.load(paper_run_dir / "model")
    assert predictor.calibration is not None and predictor.calibration.mode == "per-pattern"
    arrays, _ = load_digits_arrays()
    rows = [{"image": arrays["test"]["image"][i], "audio": arrays["test"]["audio"][i] if i % 2 else None} for i in range(30)]
    again = Predictor.load(predictor.save_pretrained(tmp_path / "copy"))
    first, second = predictor.predict(rows, coverage=0.9), again.predict(rows, coverage=0.9)
    assert [p.label_set for p in first] == [p.label_set for p in second] and all(p.label_set is not None for p in first)
    assert [p.probabilities for p in first] == [p.probabilities for p in second]
    # probabilities are temperature-scaled for each request's pattern, the sets come from the raw ones
    raw = predictor.method.predict_proba({"image": arrays["test"]["image"][:1], "audio": None})[0]
    scaled = scale_temperature(raw[None], predictor.calibration.temperature("image"))[0]
    assert np.allclose([first[0].probabilities[str(c)] for c in range(10)], scaled, atol=1e-6)
    unsure = predictor.predict(rows, coverage=0.9, abstain=True)
    assert all((p.label is None) == (len(p.label_set) != 1) == p.unsure for p in unsure)
    with pytest.raises(ConfigError, match="abstain needs a coverage"):
        predictor.predict(rows[0], abstain=True)


def test_predict_cli_gives_the_set_and_abstains(paper_run_dir, tmp_path, capsys):
    from mmrobust.data.digits import load_digits_arrays

    arrays, _ = load_digits_arrays()
    np.save(tmp_path / "a.npy", arrays["test"]["audio"][0])
    assert main(["predict", str(paper_run_dir / "model"), "--input", f"audio={tmp_path / 'a.npy'}", "--coverage", "0.9",
                 "--abstain"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result["label_set"], list) and result["unsure"] == (len(result["label_set"]) != 1)
    (tmp_path / "rows.csv").write_text(f"id,audio\nx,{tmp_path / 'a.npy'}\n")
    assert main(["predict", str(paper_run_dir / "model"), "--manifest", str(tmp_path / "rows.csv"), "--out",
                 str(tmp_path / "p.csv"), "--coverage", "0.9"]) == 0
    assert (tmp_path / "p.csv").read_text().startswith("id,label,set,unsure,used,answered_by,ignored,implausible,0,")


def test_group_bootstrap_covers_the_spread_that_a_row_bootstrap_misses():
    """Issue 18: rows that are copies of a few sources are not independent. Over many draws of
    20 sources (50 rows each), the row bootstrap's 95% interval rarely holds the true accuracy;
    resampling the sources does."""
    held = {"row": [], "group": []}
    for rep in range(60):
        rng = np.random.default_rng(rep)
        right = rng.random(20) < 0.7  # each source is either right or wrong, in every copy
        groups, target = np.repeat(np.arange(20), 50), np.zeros(1000, dtype=int)
        answer = np.where(np.repeat(right, 50), 0, 1)
        decisions = {("fused", 0): {("full", None, None): (np.arange(1000), answer, "a")}}
        for unit, g in (("row", None), ("group", groups)):
            (e,) = bootstrap_evidence(decisions, target, "accuracy", ["a"], groups=g, resamples=300, seed=rep)
            assert e["unit"] == unit
            held[unit].append(e["low"] <= 0.7 <= e["high"])
    assert np.mean(held["row"]) < 0.6 and np.mean(held["group"]) > 0.85


def test_rows_linked_by_any_shared_source_fall_in_one_group():
    from mmrobust.evidence import source_groups

    groups = source_groups({"audio": np.array([0, 1, 0, 2, 1]), "image": np.array([5, 6, 7, 8, 8])}, 5)
    assert groups[0] == groups[2] and groups[1] == groups[3] == groups[4] and groups[0] != groups[1]
    assert source_groups({}, 5) is None


def test_each_condition_resamples_only_the_sources_of_the_modalities_present():
    """A shared audio clip ties rows together where the audio is there, not where only the image is."""
    target = np.zeros(120, dtype=int)
    answer = np.tile([0, 1], 60)
    decisions = {("fused", 0): {("full", None, None): (np.arange(120), answer, "audio+image"),
                                ("miss:audio", None, None): (np.arange(120), answer, "image")}}
    sources = {"audio": np.repeat(np.arange(12), 10)}  # 12 clips, 10 rows each
    evidence = {e["protocol"]: e for e in bootstrap_evidence(decisions, target, "accuracy", ["audio", "image"],
                                                            sources=sources, resamples=200)}
    assert evidence["full"]["unit"] == "group" and evidence["miss:audio"]["unit"] == "row"
    assert (evidence["full"]["units"], evidence["miss:audio"]["units"]) == (12, 120)
    assert evidence["miss:audio"]["high"] - evidence["miss:audio"]["low"] > 0  # rows vary; each clip alone does not
    # every clip holds 5 right and 5 wrong rows: every resample gives 50%, so the Wilson bound of 12 clips
    bound = 1.959964 ** 2 / (12 + 1.959964 ** 2)
    assert (evidence["full"]["low"], evidence["full"]["high"]) == (pytest.approx(0.5 - bound), pytest.approx(0.5 + bound))
    few = {("fused", 0): {("full", None, None): (np.arange(90), answer[:90], "audio+image")}}
    (record,) = bootstrap_evidence(few, target[:90], "accuracy", ["audio", "image"], sources={"audio": sources["audio"][:90]},
                                   resamples=50)
    assert record["units"] == 9 and record["low"] is None and record["high"] is None  # below 10 groups: none


def test_the_interval_of_independent_rows_is_clopper_pearsons():
    """Where the resamples vary as a binomial does (variance p (1 - p) / n) and every row is its own unit,
    the interval is the exact Clopper-Pearson one (scipy's binomtest); a smaller variance never makes
    it narrower (at most the rows are effective); fewer units than rows widen it."""
    from scipy.stats import binomtest

    from mmrobust.evidence import interval

    n, k = 50, 41
    p = k / n
    spread = np.sqrt(p * (1 - p) / n * 999 / 1000)
    resampled = np.repeat([p - spread, p + spread], 500)  # variance (ddof 1): p (1 - p) / n
    exact = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert interval(resampled, 0.95, n, value=p, rows=n) == pytest.approx((exact.low, exact.high), abs=1e-9)
    tighter = p + (resampled - p) / 3
    assert interval(tighter, 0.95, n, value=p, rows=n) == pytest.approx((exact.low, exact.high), abs=1e-9)
    low, high = interval(resampled, 0.95, 12, value=p, rows=n)
    assert low < exact.low and high > exact.high


def clustered_coverage(accuracy: float, correlation: float, groups: int, trials: int,
                       intervals: dict | None = None) -> dict[str, tuple[float, float]]:
    """How often the interval of the group bootstrap holds the true accuracy, and how often the truth
    lies below it, on simulated clustered test rows: groups of 3-14 rows, each group right with its
    own probability drawn from a beta of mean ``accuracy`` whose intra-group correlation is
    ``correlation`` (1 / (a + b + 1)); every group equally likely when ``correlation`` is 0.
    ``intervals``: name -> (resampled values, value, groups, rows) -> (low, high); by default the library's
    (benchmarks/intervals compares others on the same draws)."""
    from mmrobust.evidence import interval, resample_weights, weighted_metric

    intervals = intervals or {"interval": lambda values, value, units, rows: interval(values, 0.95, units, value=value,
                                                                                        rows=rows)}

    rng = np.random.default_rng([groups, int(accuracy * 100), int(correlation * 100)])
    held, below = dict.fromkeys(intervals, 0), dict.fromkeys(intervals, 0)
    for trial in range(trials):
        size = rng.integers(3, 15, groups)
        if correlation:
            spread = 1 / correlation - 1
            p = rng.beta(accuracy * spread, (1 - accuracy) * spread, groups)
        else:
            p = np.full(groups, accuracy)
        right = rng.binomial(size, p)
        group = np.repeat(np.arange(groups), size)
        correct = np.concatenate([np.arange(n) < r for n, r in zip(size, right)]).astype(int)
        weights = resample_weights(len(group), 1000, trial, group)
        values = weighted_metric("accuracy", correct, np.ones_like(correct), weights)
        for name, interval_of in intervals.items():
            low, high = interval_of(values, correct.mean(), groups, len(correct))
            held[name] += low <= accuracy <= high
            below[name] += accuracy < low
    return {name: (held[name] / trials, below[name] / trials) for name in intervals}


@pytest.mark.parametrize("accuracy, correlation, groups", [(0.75, 0.1, 13), (0.9, 0.2, 10), (0.95, 0.2, 30),
                                                           (0.98, 0.2, 30)])
def test_intervals_hold_their_level_with_few_correlated_groups_near_the_ceiling(accuracy, correlation, groups):
    """Issue 38: the percentiles of the resamples held 86-93% here (300 trials), the truth falling
    below them 6-14% of the time (errors gathered in a few groups); the slow test runs the grid."""
    (held, below), = clustered_coverage(accuracy, correlation, groups, trials=300).values()
    assert held >= 0.93 and below <= 0.05


@pytest.mark.slow
def test_intervals_hold_their_level_over_the_grid():
    """Accuracy 0.5-0.98, intra-group correlation 0-0.2, 10-100 groups: at least 92% at a nominal 95%
    in every cell, neither side missing more than 6%."""
    cells = [(a, c, g) for a in (0.5, 0.75, 0.9, 0.95, 0.98) for c in (0.0, 0.1, 0.2) for g in (10, 30, 100)]
    coverage = {cell: clustered_coverage(*cell, trials=1000)["interval"] for cell in cells}
    assert {cell: held for cell, (held, below) in coverage.items() if held < 0.92} == {}
    one_sided = {cell: (below, 1 - held - below) for cell, (held, below) in coverage.items()}
    assert {cell: misses for cell, misses in one_sided.items() if max(misses) > 0.06} == {}


def test_rows_made_of_two_shared_sources_are_resampled_crossed():
    """The pigeonhole bootstrap: each source drawn with replacement (multinomial counts over U sources),
    a row weighted by the product of its sources' counts. E[c_a c_b] = (U - 1) / U for two sources,
    E[c_a^2] = 2 - 1 / U for one used twice (multinomial moments)."""
    from mmrobust.evidence import source_weights

    ids = np.array([[0, 1], [1, 2], [0, 2], [2, 2]])  # U = 3 recordings; the last row mixes one with itself
    unit, weights, units = source_weights({"audio": ids}, 4, 20000, 0)
    assert unit == "crossed" and weights.shape == (20000, 4) and len(np.unique(units)) == 3
    assert np.allclose(weights.mean(axis=0), [2 / 3, 2 / 3, 2 / 3, 5 / 3], atol=0.03)
    c = np.sqrt(weights[:, 3])  # the count of recording 2, then of 0 and 1 from the rows that pair them with it
    with np.errstate(invalid="ignore", divide="ignore"):
        c0, c1 = weights[:, 2] / c, weights[:, 1] / c
    drawn = c > 0
    assert np.allclose((c0 + c1 + c)[drawn], 3) and np.allclose((c0 * c1)[drawn], weights[drawn, 0])
    # one source per row: the groups of linked rows, as before
    unit, _, groups = source_weights({"audio": np.array([0, 0, 1, 2])}, 4, 10, 0)
    assert unit == "group" and groups[0] == groups[1] != groups[2]
    target = np.zeros(40, dtype=int)
    recordings = np.stack([np.arange(40) % 12, (np.arange(40) + 5) % 12], axis=1)
    decisions = {("fused", 0): {("full", None, None): (np.arange(40), np.tile([0, 1], 20), "audio+image")}}
    (record,) = bootstrap_evidence(decisions, target, "accuracy", ["audio", "image"], sources={"audio": recordings},
                                   resamples=100)
    assert record["unit"] == "crossed" and record["units"] == 12 and record["low"] < 0.5 < record["high"]
