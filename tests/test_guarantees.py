"""Tests that bite (issue 24): each guarantee the README gives is checked against an independent
expectation (a hand computation, a second implementation, or a case with a known answer), never
against the output of the function under test. docs/mutation-testing.md names, for each test,
the change to the code that makes it fail."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.calibration import ECE_BINS, calibration_metrics, expected_calibration_error, reliability_bins
from mmrobust.evidence import bootstrap_evidence, resample_weights
from mmrobust.methods.ogm_ge import modulation_coefficients
from mmrobust.methods.ume_mma import RESAMPLES, paired_standard_errors
from mmrobust.predictor import Predictor
from mmrobust.runtime import derive_seed

CONFIG = mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu", progress=False)
ENCODERS = {"a": mm.EncoderSpec("mlp-tiny", in_dim=6), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}


def accuracy(proba: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.asarray(proba).argmax(axis=1) == np.asarray(target)))


def create(name, **options):
    return mm.create_method(name, encoders=ENCODERS, num_classes=4, seed=0, train_config=CONFIG, **options)


def presence(n: int, pattern: str) -> dict[str, torch.Tensor]:
    return {m: torch.full((n,), m in pattern.split("+")) for m in "ab"}


@pytest.fixture  # function scope: a mutation tool attributes what a fixture runs to each test that uses it
def routed():
    """Stage 1, the weighted UME and MMA parts and UME-MMA over them, on data whose validation
    split has rows where ``b`` is really missing (so a pattern's rows are not every row)."""
    data = mm.make_synthetic({"train": 240, "val": 200, "test": 120}, {"a": 6, "b": 6}, noise={"a": 1.5, "b": 2.0}, seed=8)
    val = data["val"]
    b_observed = torch.ones(len(val), dtype=torch.bool)
    b_observed[::3] = False
    data = {**data, "val": val.with_present({"a": val.present["a"], "b": b_observed})}
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG)
    parts = {name: create(name).fit(data["train"], data["val"], stage1=stage1) for name in ("ume-weighted", "mma")}
    model = create("ume-mma").fit(data["train"], data["val"], stage1=stage1, fitted=parts)
    return data, stage1, parts, model


def candidate_probas(stage1, parts, inputs, pattern: str) -> dict[str, np.ndarray]:
    """Each candidate's probabilities under ``pattern``, each from its own fitted model."""
    n = len(next(iter(inputs.values())))
    given = {m: inputs[m] for m in pattern.split("+")}
    out = {f"unimodal:{m}": stage1.methods[m].predict_proba({m: inputs[m]}) for m in pattern.split("+")}
    out.update({name: part.predict_proba(given, presence(n, pattern)) for name, part in parts.items()})
    return out


# --- answered_by names the model whose probabilities the row got ----------------------------------


@pytest.mark.parametrize("routing", [{"a+b": "mma", "a": "unimodal:a", "b": "ume"},
                                     {"a+b": "ume", "a": "mma", "b": "unimodal:b"},
                                     {"a+b": "unimodal:b", "a": "ume", "b": "mma"}])
def test_answered_by_names_the_candidate_whose_probabilities_each_row_got(routed, routing):
    data, stage1, parts, model = routed
    test = data["test"]
    saved = dict(model.routing_)
    model.routing_ = dict(routing)
    try:
        predictor = Predictor(model, {}, ["w", "x", "y", "z"])
        patterns = ["a+b", "a", "b"] * 4
        rows = [{m: np.asarray(test.inputs[m][i]) if m in p.split("+") else None for m in "ab"} for i, p in enumerate(patterns)]
        predictions = predictor.predict(rows)
        for i, (pattern, prediction) in enumerate(zip(patterns, predictions)):
            expected = candidate_probas(stage1, parts, {m: test.inputs[m][i:i + 1] for m in "ab"}, pattern)
            assert prediction.answered_by in expected, f"{prediction.answered_by} cannot answer {pattern}"
            got = np.array(list(prediction.probabilities.values()))
            assert np.allclose(got, expected[prediction.answered_by][0], atol=1e-5), (pattern, prediction.answered_by)
        both = candidate_probas(stage1, parts, test.inputs, "a+b")  # the candidates really differ on full rows
        assert all(not np.allclose(both[c], both[d], atol=1e-3) for c in both for d in both if c < d)
    finally:
        model.routing_ = saved


# --- the routing: scores on the pattern's validation rows, standard errors that mean something ----


def test_routing_scores_each_pattern_on_its_own_validation_rows_with_bootstrap_standard_errors(routed):
    data, stage1, parts, model = routed
    val = data["val"]
    target = val.target.numpy()
    observed = {m: val.present[m].numpy() for m in "ab"}
    weights = resample_weights(len(val), RESAMPLES, derive_seed(0, "routing"))
    for pattern in ("a+b", "a", "b"):
        rows = np.flatnonzero(np.logical_and.reduce([observed[m] for m in pattern.split("+")]))
        assert 0 < len(rows) < len(val) or pattern == "a"
        probas = candidate_probas(stage1, parts, {m: val.inputs[m][rows] for m in "ab"}, pattern)
        probas = {("ume" if c == "ume-weighted" else c): p for c, p in probas.items()}
        scores = model.pattern_scores_[pattern]
        assert scores == pytest.approx({c: accuracy(p, target[rows]) for c, p in probas.items()})
        best = max(scores, key=scores.get)
        w = weights[:, rows]
        correct = {c: (p.argmax(axis=1) == target[rows]).astype(float) for c, p in probas.items()}
        resampled = {c: (w @ correct[c]) / w.sum(axis=1) for c in correct}
        for c, se in model.pattern_se_[pattern].items():
            assert se == pytest.approx(float(np.std(resampled[best] - resampled[c])), abs=1e-6)
    assert any(se > 0.01 for se in model.pattern_se_["a+b"].values())


def test_paired_standard_error_matches_the_binomial_formula():
    n = 400  # a right everywhere, b right on every other row: the paired difference is 0/1
    target = np.zeros(n, dtype=int)
    right, half = np.eye(3)[np.zeros(n, dtype=int)], np.eye(3)[np.arange(n) % 2]
    weights = resample_weights(n, 2000, seed=1)
    se = paired_standard_errors("accuracy", "multiclass", {"a": right, "b": half}, target, weights, "a")
    assert se["a"] == 0.0
    assert se["b"] == pytest.approx(math.sqrt(0.5 * 0.5 / n), rel=0.1)


# --- calibration and conformal sets come from validation rows only --------------------------------


def test_temperatures_and_set_thresholds_do_not_depend_on_test_labels():
    data = mm.make_synthetic({"train": 200, "val": 160, "test": 160}, {"a": 6, "b": 6}, noise=1.5, seed=5)
    experiment = mm.experiment.Experiment(methods=["ume"], encoders=ENCODERS, train=data["train"], val=data["val"],
                                          test=data["test"], protocols=["subsets"], train_config=CONFIG)
    fitted = experiment.fit()
    test = data["test"]
    scrambled = mm.MultiModalDataset(test.inputs, (test.target + 1) % 4, test.present)
    kept = ("temperature", "validation_rows", "set_size@0.9", "set_size@0.9:blind")

    def cells(results):
        return {(r["pattern"], r["metric"]): r["value"] for r in results.records if r["metric"] in kept}

    clean = cells(experiment.evaluate(fitted))
    assert clean == cells(dataclasses.replace(experiment, test=scrambled).evaluate(fitted))
    ume = fitted[0]["ume"]
    for pattern in ("a+b", "a", "b"):  # the temperature minimises the validation NLL (a grid search, by hand)
        proba = ume.predict_proba({m: data["val"].inputs[m] for m in pattern.split("+")}, presence(len(data["val"]), pattern))
        grid = np.exp(np.linspace(np.log(0.05), np.log(5.0), 4001))
        log_p = np.log(proba[np.arange(len(proba)), data["val"].target.numpy()])
        nll = [np.mean(-(log_p / t) + np.log(np.sum(proba ** (1 / t), axis=1))) for t in grid]
        assert clean[(pattern, "temperature")] == pytest.approx(grid[int(np.argmin(nll))], rel=0.01)
        assert clean[(pattern, "validation_rows")] == len(data["val"])


def test_the_saved_model_is_calibrated_on_the_validation_split(paper_run_dir):
    from mmrobust.pipeline import load_data, read_config

    predictor = Predictor.load(paper_run_dir / "model")
    val = load_data(read_config(paper_run_dir)).val
    target = val.target.numpy()
    for pattern in ("audio+image", "audio", "image"):  # the conformal scores are 1 - p(label) of the validation rows
        proba = predictor.method.predict_proba({m: val.inputs[m] for m in pattern.split("+")})
        expected = np.sort(1.0 - proba[np.arange(len(val)), target])
        assert np.allclose(predictor.calibration.scores[pattern], expected, atol=1e-5)


# --- the reference is the best uni-modal model present --------------------------------------------


def test_the_reference_is_the_best_unimodal_model_of_a_present_modality():
    n = 100
    target, rows = np.zeros(n, dtype=int), np.arange(n)

    def right_on(k):  # decisions right on the first k rows
        return np.where(rows < k, 0, 1).astype(np.int32)

    full, only_b = ("full", None, None), ("miss:a", None, None)
    decisions = {("unimodal:a", 0): {full: (rows, right_on(90), "a+b"), only_b: (rows, right_on(90), "b")},
                 ("unimodal:b", 0): {full: (rows, right_on(60), "a+b"), only_b: (rows, right_on(60), "b")},
                 ("mma", 0): {full: (rows, right_on(70), "a+b"), only_b: (rows, right_on(50), "b")}}
    records = {(r["method"], r["protocol"]): r for r in bootstrap_evidence(decisions, target, "accuracy", ["a", "b"],
                                                                          resamples=200)}
    with_both = records[("mma", "full")]
    assert with_both["reference"] == "unimodal:a" and with_both["difference"] == pytest.approx(0.7 - 0.9)
    assert with_both["verdict"] == "below"
    without_a = records[("mma", "miss:a")]  # a scores more, but is not there
    assert without_a["reference"] == "unimodal:b" and without_a["difference"] == pytest.approx(0.5 - 0.6)


# --- ECE: 15 equal-width bins ---------------------------------------------------------------------


def test_ece_uses_fifteen_equal_width_bins():
    # confidences 0.62 (right) and 0.68 (wrong): one bin (0.6, 0.7] with 10 bins, two with 15
    proba = np.array([[0.62, 0.2, 0.18], [0.68, 0.2, 0.12]])
    target = np.array([0, 1])
    fifteen = (abs(1 - 0.62) + abs(0 - 0.68)) / 2
    ten = abs(1 - (0.62 + 0.68)) / 2
    assert ECE_BINS == 15 and fifteen != pytest.approx(ten)
    assert expected_calibration_error(proba, target) == pytest.approx(fifteen)
    assert calibration_metrics(proba, target)["ece"] == pytest.approx(fifteen)
    bins = reliability_bins(proba, target)
    assert bins["rows"] == [0] * 9 + [1, 1] + [0] * 4
    assert bins["correct"][9:11] == [1.0, 0.0] and bins["confidence"][9:11] == pytest.approx([0.62, 0.68])
    edge = np.linspace(0, 1, 16)[6]  # a confidence on an edge falls in the bin it closes: (5/15, 6/15]
    ends = np.array([[edge, (1 - edge) / 2, (1 - edge) / 2], [0.99, 0.01, 0.0], [0.9, 0.1, 0.0]])
    assert reliability_bins(ends, np.array([0, 0, 0]))["rows"] == [0] * 5 + [1] + [0] * 7 + [1, 1]


# --- each baseline's defining term ------------------------------------------------------------------


@pytest.fixture  # function scope: a mutation tool attributes what a fixture runs to each test that uses it
def stage1_synthetic():
    data = mm.make_synthetic({"train": 240, "val": 80, "test": 120}, {"a": 6, "b": 6}, noise=1.0, seed=0)
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG)
    batch = data["train"].batch(np.arange(32))
    batch.present["b"][:10] = False
    return stage1, batch


def mean_logits(model, inputs, present):
    """The presence-normalised mean of the branch logits, by hand."""
    total, count = 0, 0
    for m in "ab":
        logits = model.branches[m].head(model.branches[m].encoder(inputs[m]))
        total = total + logits * present[m][:, None]
        count = count + present[m].float()[:, None]
    return total / count


def kl_by_hand(teacher, student, t):
    p = (teacher / t).softmax(-1)
    return t * t * float((p * (p.log() - (student / t).log_softmax(-1))).sum(1).mean())


def test_umt_loss_is_task_plus_ten_times_the_feature_distance_on_present_rows(stage1_synthetic):
    stage1, batch = stage1_synthetic
    umt = create("umt")
    umt.model_ = umt.build_model(None)
    umt.start_training(stage1, CONFIG)
    with torch.no_grad():
        loss = float(umt.training_step(batch, epoch=0)["loss"])
        task = float(torch.nn.functional.cross_entropy(mean_logits(umt.model_, batch.inputs, batch.present), batch.target))
        distance = 0.0
        for m in "ab":
            x = batch.inputs[m][batch.present[m]]
            distance += float(((umt.model_.branches[m].encoder(x) - stage1.models[m].encoder(x)) ** 2).mean())
    assert distance > 0.01
    assert loss == pytest.approx(task + 10.0 * distance, rel=1e-5)


def test_kd_full_loss_mixes_the_task_and_the_full_rows_teaching(stage1_synthetic):
    stage1, batch = stage1_synthetic
    kd = create("kd-full", p_drop=0.9)
    kd.model_ = kd.build_model(stage1)
    with torch.no_grad():
        loss = float(kd.training_step(batch, epoch=0)["loss"])
        dropped = kd.step_presence(batch, 0)[1]
        assert not all(torch.equal(dropped[m], batch.present[m]) for m in "ab"), "some rows lose a modality"
        student = mean_logits(kd.model_, batch.inputs, dropped)
        teacher = mean_logits(kd.model_, batch.inputs, batch.present)
        task = float(torch.nn.functional.cross_entropy(student, batch.target))
    assert loss == pytest.approx(0.5 * task + 0.5 * kl_by_hand(teacher, student, 2.0), rel=1e-5)


def test_proxy_loss_adds_the_reconstruction_of_each_dropped_feature(stage1_synthetic):
    stage1, batch = stage1_synthetic
    proxy = create("proxy", p_drop=0.9)
    proxy.model_ = proxy.build_model(stage1)
    model = proxy.model_
    with torch.no_grad():
        loss = float(proxy.training_step(batch, epoch=0)["loss"])
        present = proxy.step_presence(batch, 0)[1]
        features = {m: model.late.branches[m].encoder(batch.inputs[m]) for m in "ab"}
        slots = {m: torch.where(present[m][:, None], features[m], model.tokens[m].expand_as(features[m])) for m in "ab"}
        predicted = {"a": model.proxies["a"](slots["b"]), "b": model.proxies["b"](slots["a"])}
        task = float(torch.nn.functional.cross_entropy(model.fuse(features, present), batch.target))
        reconstruction = 0.0
        for m in "ab":
            dropped = batch.present[m] & ~present[m]
            assert bool(dropped.any())
            reconstruction += float(((predicted[m][dropped] - features[m][dropped]) ** 2).mean())
    assert reconstruction > 0.01
    assert loss == pytest.approx(task + 0.2 * reconstruction, rel=1e-5)


def test_ogm_ge_computes_its_coefficient_from_the_batch_and_damps_and_noises_the_dominant_encoder(stage1_synthetic):
    _, batch = stage1_synthetic
    ogm = create("ogm-ge")
    ogm.model_ = ogm.build_model(None)
    ogm.start_training(None, CONFIG)
    full = batch.present["a"] & batch.present["b"]
    with torch.no_grad():
        scores = {}
        for m in "ab":
            proba = ogm.model_.branches[m](batch.inputs[m][full]).softmax(-1)
            scores[m] = float(proba[torch.arange(int(full.sum())), batch.target[full]].sum())
    dominant = max(scores, key=scores.get)
    ratio = scores[dominant] / scores["b" if dominant == "a" else "a"]
    assert ratio > 1

    def gradients(epoch, plain=False):
        ogm.model_.zero_grad()
        torch.manual_seed(0)
        out = ogm.training_step(batch, epoch=epoch)
        coefficients = dict(ogm.coefficients_)
        if plain:
            ogm.coefficients_ = {}
        out["loss"].backward()
        return coefficients, [p.grad.clone() for p in ogm.model_.branches[dominant].encoder.parameters()]

    coefficients, damped = gradients(epoch=0)
    assert coefficients == {dominant: pytest.approx(1 - math.tanh(0.1 * ratio), rel=1e-5)}
    _, plain = gradients(epoch=0, plain=True)
    c = coefficients[dominant]
    residual = torch.cat([((d - c * p) / p.std()).flatten() for d, p in zip(damped, plain)])
    unit = torch.cat([(p / p.std()).flatten() for p in plain])
    assert 0.7 < float(residual.std()) < 1.3, "Gaussian noise at the scale of the gradient"
    assert abs(float(torch.corrcoef(torch.stack([residual, unit]))[0, 1])) < 0.35, "the rest is the damped gradient"
    assert gradients(epoch=CONFIG.epochs - 1)[0] == {}, "no modulation in the second half of the epochs"
    ogm.coefficients_ = {dominant: 0.25}  # the hook's rule, exactly: g * coefficient + N(0, std(g))
    grad = torch.linspace(-1.0, 2.0, 60).reshape(6, 10)
    torch.manual_seed(1)
    modulated = ogm._modulate(dominant, grad)
    torch.manual_seed(1)
    assert torch.allclose(modulated, 0.25 * grad + torch.randn(6, 10) * float(grad.std()), atol=1e-6)
    assert torch.equal(ogm._modulate("b" if dominant == "a" else "a", grad), grad), "the other modality is untouched"
    ogm.end_training()


def test_ogm_ge_coefficient_for_three_modalities_uses_the_others_mean():
    assert modulation_coefficients({"a": 9.0, "b": 3.0, "c": 6.0}, 0.2) == {"a": pytest.approx(1 - math.tanh(0.2 * 2.0))}
    assert modulation_coefficients({"a": 0.0, "b": 0.0, "c": 5.0}, 0.2) == {}


def test_ogm_ge_small_scores_one_element_gradients_and_multilabel_scores():
    assert modulation_coefficients({"a": 0.9, "b": 0.3}, 0.1) == {"a": pytest.approx(1 - math.tanh(0.3))}
    ogm = create("ogm-ge")
    ogm.coefficients_ = {"a": 0.5}
    one = torch.tensor([2.0])  # one element: no spread to scale noise by, so none (never NaN)
    assert torch.equal(ogm._modulate("a", one), torch.tensor([1.0]))
    two = torch.tensor([1.0, 3.0])
    assert not torch.allclose(ogm._modulate("a", two), 0.5 * two), "two elements already get noise"
    multilabel = mm.create_method("ogm-ge", encoders=ENCODERS, num_classes=2, task="multilabel", seed=0, train_config=CONFIG)
    logits = {"a": torch.tensor([[0.0, 2.0], [1.0, -1.0]]), "b": torch.zeros(2, 2)}
    target = torch.tensor([[1, 1], [0, 1]])
    both = {m: torch.tensor([True, True]) for m in "ab"}
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731  the mean probability of each label's true value, summed over rows
    expected_a = (0.5 + s(2.0)) / 2 + ((1 - s(1.0)) + s(-1.0)) / 2
    assert multilabel.scores(logits, target, both) == {"a": pytest.approx(expected_a), "b": pytest.approx(1.0)}
    assert multilabel.scores(logits, target, {"a": both["a"], "b": torch.tensor([False, False])}) is None


@pytest.mark.parametrize("name", ["late-fusion", "mma", "missing-token", "proxy", "umt", "kd-unimodal", "kd-full", "ogm-ge"])
def test_a_training_step_counts_the_rows_left_with_a_modality_and_returns_their_logits(stage1_synthetic, name):
    stage1, batch = stage1_synthetic
    method = create(name, p_drop=0.9) if name not in ("late-fusion", "umt", "ogm-ge") else create(name)
    method.model_ = method.build_model(stage1 if method.needs_stage1 else None)
    method.start_training(stage1, CONFIG)
    observed = {m: batch.present[m].clone() for m in "ab"}
    observed["a"][:10] = False  # rows 0-9 have nothing left once b's first ten are gone too
    with torch.no_grad():
        out = method.training_step(batch.with_present(observed), epoch=0)
    assert out["rows"] == 22 and tuple(out["logits"].shape) == (32, 4)
    method.end_training()


# --- the protocols' names, descriptions and report columns (what `mmrobust list` and reports show) ---


def test_protocol_examples_descriptions_and_columns_by_hand():
    from mmrobust.protocols import Column, get_protocol

    two, three = ["b", "a"], ["a", "b", "c"]
    assert get_protocol("full").examples(two) == ["full"]
    assert get_protocol("miss:a").examples(two) == ["miss:a", "miss:b"]
    assert get_protocol("map:a").examples(two) == ["map:a@0.3", "map:b@0.3", "map:both@0.3"]
    assert get_protocol("map:a").examples(three) == ["map:a@0.3", "map:b@0.3", "map:c@0.3"]
    assert get_protocol("sweep:a").examples(two) == ["sweep:a", "sweep:b"]
    assert get_protocol("miss:audio").describe("miss:audio") == "`audio` absent from every test row"
    assert get_protocol("map:text@0.5").describe("map:text@0.5").startswith("MAP (Lee et al. 2023): `text` absent from a share η")
    assert get_protocol("full").column("full", None) == Column("full", None)
    assert get_protocol("map:a").column("map:a", 0.7) == Column("map:a@0.7", 0.7)
    assert get_protocol("map:a@0.5").column("map:a@0.5", 0.5) == Column("map:a@0.5", 0.5)
    assert get_protocol("sweep:a").column("sweep:a", None) == Column("sweep:a (area)", None, "area:")
    assert get_protocol("subsets").column("subsets", None) is None


# --- what the mutation campaign found (docs/mutation-testing.md) ------------------------------------


def bernoulli_kl_by_hand(teacher, student, t):
    p, q = (teacher / t).sigmoid(), (student / t).sigmoid()
    return t * t * float((p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(1).mean())


def test_kd_full_and_kd_unimodal_on_a_multilabel_task_use_bernoulli_distillation():
    data = mm.make_synthetic({"train": 120, "val": 40, "test": 40}, {"a": 6, "b": 6}, task="multilabel", seed=1)
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG,
                             task="multilabel")
    batch = data["train"].batch(np.arange(32))

    def create_multilabel(name, **options):
        return mm.create_method(name, encoders=ENCODERS, num_classes=4, task="multilabel", seed=0, train_config=CONFIG,
                                **options)

    kd = create_multilabel("kd-full", p_drop=0.9)
    kd.model_ = kd.build_model(stage1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        loss = float(kd.training_step(batch, epoch=1)["loss"])
        dropped = kd.step_presence(batch, 1)[1]
        student = mean_logits(kd.model_, batch.inputs, dropped)
        teacher = mean_logits(kd.model_, batch.inputs, batch.present)
        task = float(bce(student, batch.target.float()))
    assert loss == pytest.approx(0.5 * task + 0.5 * bernoulli_kl_by_hand(teacher, student, 2.0), rel=1e-5)
    unimodal = create_multilabel("kd-unimodal", augment=False)
    unimodal.model_ = unimodal.build_model(None)
    unimodal.start_training(stage1, CONFIG)
    with torch.no_grad():
        loss = float(unimodal.training_step(batch, epoch=0)["loss"])
        fused = mean_logits(unimodal.model_, batch.inputs, batch.present)
        expected = float(bce(fused, batch.target.float()))
        expected += sum(0.5 * bernoulli_kl_by_hand(stage1.models[m](batch.inputs[m]), fused, 2.0) for m in "ab")
    assert loss == pytest.approx(expected, rel=1e-5)


def test_kd_unimodal_drops_modalities_by_seed_epoch_and_row_by_default(stage1_synthetic):
    from mmrobust.masking import sample_modality_dropout

    stage1, batch = stage1_synthetic
    kd = create("kd-unimodal")
    kd.model_ = kd.build_model(None)
    kd.start_training(stage1, CONFIG)
    present = sample_modality_dropout(batch.present, batch.index, seed=0, epoch=1, p_drop=0.5)
    assert not all(torch.equal(present[m], batch.present[m]) for m in "ab")
    with torch.no_grad():
        loss = float(kd.training_step(batch, epoch=1)["loss"])
        fused = mean_logits(kd.model_, batch.inputs, present)
        expected = float(torch.nn.functional.cross_entropy(fused, batch.target))
        for m in "ab":
            rows = present[m]
            expected += 0.5 * kl_by_hand(stage1.models[m](batch.inputs[m][rows]), fused[rows], 2.0)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_teachers_are_frozen_copies_and_stage1_keeps_training(stage1_synthetic):
    stage1, _ = stage1_synthetic
    umt = create("umt")
    umt.model_ = umt.build_model(None)
    umt.start_training(stage1, CONFIG)
    for m in "ab":
        teacher, original = umt.teachers_[m], stage1.models[m].encoder
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        assert all(p.requires_grad for p in original.parameters()), "Stage 1 itself is untouched"
        assert all(t is not o for t, o in zip(teacher.parameters(), original.parameters()))
    umt.end_training()


def test_proxy_networks_their_width_their_seed_and_their_start(stage1_synthetic):
    from mmrobust.methods.proxy import ProxyModel
    from mmrobust.runtime import seeded

    stage1, batch = stage1_synthetic
    proxy = create("proxy")
    model = proxy.build_model(stage1)
    assert isinstance(model.proxies["a"][1], torch.nn.ReLU) and model.proxies["a"][0].out_features == 128
    for m in "ab":  # the late-fusion part starts from Stage 1
        for p, q in zip(model.late.branches[m].parameters(), stage1.models[m].parameters()):
            assert torch.equal(p, q)
    late = mm.methods.fused.FusedMethod.build_model(proxy, stage1)
    with seeded(derive_seed(0, "proxy", "proxies")):
        expected = ProxyModel(late, 128)
    assert all(torch.equal(p, q) for p, q in zip(model.proxies.parameters(), expected.proxies.parameters()))
    narrow = create("proxy", proxy_hidden=16)
    assert narrow.build_model(stage1).proxies["b"][0].out_features == 16
    assert narrow.build_architecture().proxies["b"][0].out_features == 16
    with torch.no_grad():  # forward = fuse(encode)
        assert torch.equal(model(batch.inputs, batch.present), model.fuse(model.encode(batch.inputs, batch.present), batch.present))


def test_proxy_loss_without_dropped_rows_is_the_task_alone(stage1_synthetic):
    stage1, batch = stage1_synthetic
    proxy = create("proxy", p_drop=0.0)
    proxy.model_ = proxy.build_model(stage1)
    with torch.no_grad():
        loss = proxy.training_step(batch, epoch=0)["loss"]
        task = torch.nn.functional.cross_entropy(proxy.model_(batch.inputs, batch.present), batch.target)
    assert torch.isfinite(loss) and float(loss) == pytest.approx(float(task), rel=1e-6)


def test_entropy_fusion_on_a_multilabel_task_by_hand():
    from mmrobust.fusion import EntropyFusion

    fusion = EntropyFusion(task="multilabel")
    za, zb = torch.tensor([[3.0, -3.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0], [4.0, 4.0, -4.0]])
    present = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, True, False])}
    branches = {"a": torch.cat([za, torch.ones(1, 3)]), "b": torch.cat([zb, torch.ones(1, 3)])}

    def entropy(z):  # Bernoulli entropies, summed over labels
        p = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).sum())

    weights, out = fusion.weights(branches, present), fusion(branches, present)
    for row in range(2):
        ha, hb = entropy(za[row]), entropy(zb[row])
        wa = math.exp(-ha) / (math.exp(-ha) + math.exp(-hb))
        assert float(weights["a"][row]) == pytest.approx(wa, rel=1e-5)
        assert torch.allclose(out[row], wa * za[row] + (1 - wa) * zb[row], atol=1e-5)
    assert float(weights["a"][2]) == 0.0 == float(weights["b"][2]) and torch.equal(out[2], torch.zeros(3))


def test_concat_fusion_names_a_bad_fill():
    from mmrobust.fusion import ConcatFusion

    with pytest.raises(mm.errors.ConfigError, match="missing must be 'zeros' or 'learned', got 'mean'"):
        ConcatFusion({"a": 2, "b": 2}, 3, missing="mean")


def test_calibration_file_keeps_its_mode_and_ece_takes_its_bins():
    from mmrobust.calibration import Calibration

    proba, target = np.array([[0.62, 0.2, 0.18], [0.68, 0.2, 0.12]]), np.array([0, 1])
    assert expected_calibration_error(proba, target, bins=10) == pytest.approx(abs(1 - (0.62 + 0.68)) / 2)
    loaded = Calibration.from_dict({"mode": "none", "temperatures": {}, "scores": {"a": [0.1, 0.2]}})
    assert loaded.mode == "none" and np.array_equal(loaded.calibrate(proba, ["a", "a"]), proba)
    with pytest.raises(mm.errors.ConfigError, match="calibration 'sharp'"):
        Calibration.from_dict({"mode": "sharp", "temperatures": {}, "scores": {}})


def test_pattern_calibration_records_by_hand():
    from mmrobust.calibration import Calibration
    from mmrobust.evaluation import pattern_calibration

    scores = {"a": np.full(40, 0.05), "b": np.full(40, 0.9), "c": np.full(5, 0.5)}
    calibration = Calibration("none", {}, scores)
    proba, target = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1]]), np.array([0, 0])
    values, bins = pattern_calibration(calibration, proba, target, "a")
    # pattern a's own validation rows are all surer than these rows: nothing is in a set at 90%;
    # pooled with pattern b's, every label is (1 - p <= 0.9 for all of them)
    assert values["set_size@0.9"] == 0.0 and values["set_size@0.9:blind"] == 3.0
    assert values["temperature"] == 1.0 and values["validation_rows"] == 40.0
    assert [b["calibrated"] for b in bins] == [False, True]
    assert bins[0]["rows"][11] == 1 and bins[0]["correct"][11] == 1.0 and bins[0]["correct"][8] == 0.0
    few, _ = pattern_calibration(calibration, proba, target, "c")  # 5 validation rows: too few for 90%
    assert few["coverage@0.9"] is None and few["set_size@0.9"] is None and few["set_size@0.9:blind"] is not None


def test_protocol_strings_rates_and_messages():
    from mmrobust.protocols import n_of, parse_protocol, sample_masks

    assert parse_protocol("map:a@0.3", ["a", "b"]) == ("map", "a", 0.3)
    assert parse_protocol("map:a@0", ["a", "b"])[2] == 0.0 and parse_protocol("map:a@1", ["a", "b"])[2] == 1.0
    cases = {"map:a@x": "'map:a@x': the rate after '@' must be a number, got 'x'",
             "map:a@1.5": "'map:a@1.5': the rate must lie in \\[0, 1\\]",
             "map:c@0.3": "'map:c@0.3': unknown modality 'c'"}
    for spec, message in cases.items():
        with pytest.raises(mm.errors.ProtocolError, match=message):
            parse_protocol(spec, ["a", "b"])
    with pytest.raises(mm.errors.ProtocolError, match="'map:both': MAP 'both' needs exactly two modalities, the data has"):
        parse_protocol("map:both", ["a", "b", "c"])
    with pytest.raises(mm.errors.ProtocolError, match="a missing rate must lie in \\[0, 1\\], got 1.5"):
        n_of(1.5, 10)
    observed = {m: np.ones(10, dtype=bool) for m in "ab"}
    (mask,) = sample_masks("map:a@0.3", observed, seed=4)  # the first 3 rows of MAP's own permutation lose a
    order = np.random.default_rng(derive_seed(4, "map")).permutation(10)
    assert np.flatnonzero(~mask.present["a"]).tolist() == sorted(order[:3].tolist()) and mask.present["b"].all()


def test_saved_masks_hash_by_hand_keep_their_meta_and_refuse_pickles(tmp_path):
    import hashlib
    import json

    from mmrobust.protocols import load_masks, masks_hash, sample_masks, save_masks

    observed = {"a": np.array([True, True, False]), "b": np.array([True, False, True])}
    masks = sample_masks("miss:a", observed, seed=0)
    h = hashlib.sha256()  # a second implementation of the documented hash
    h.update(json.dumps({"modalities": ["a", "b"], "pattern": None, "protocol": "miss:a", "rate": None, "rows": 3}).encode())
    for m in "ab":
        h.update(m.encode())
        h.update(np.packbits(masks[0].present[m]).tobytes())
    h.update(np.packbits(masks[0].scored).tobytes())
    assert masks_hash(masks) == h.hexdigest()
    save_masks(tmp_path / "masks.npz", masks, {"seed": 0})
    assert load_masks(tmp_path / "masks.npz")[0].meta == {"seed": 0}
    np.savez(tmp_path / "evil.npz", header=np.array([{"sha256": ""}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_masks(tmp_path / "evil.npz")


class ScriptedPart:
    """A fitted part whose answers are scripted: under each presence pattern, the rows it gets
    right (label 0) are the ones listed; every other row it answers 1."""

    def __init__(self, val_score: float, right: dict[str, range]) -> None:
        self.val_score_, self.right = val_score, right

    def encode(self, inputs, present):
        return None

    def proba_from_encoded(self, encoded, present):
        n = len(present["a"])
        proba = torch.zeros(n, 3)
        for i in range(n):
            pattern = "+".join(m for m in "ab" if bool(present[m][i]))
            proba[i, 0 if i in self.right.get(pattern, ()) else 1] = 1.0
        return proba


def scripted_ume_mma(mma_score: float, ume_score: float):
    """100 validation rows, label 0. Both present: the uni-modal image model and UME right on rows
    0-79 (0.80), MMA on rows 10-92 (0.83, but a paired standard error of about 0.05: within one);
    a alone: 0.80 against MMA's 0.70; b alone: 0.50 against MMA's 0.60 (nested: 0.1 apart, SE 0.03)."""
    ume = ScriptedPart(ume_score, {"a+b": range(80), "a": range(80), "b": range(50)})
    mma = ScriptedPart(mma_score, {"a+b": range(10, 93), "a": range(70), "b": range(60)})
    model = create("ume-mma")
    model.ume_, model.mma_ = ume, mma
    val = mm.MultiModalDataset({m: np.zeros((100, 1), dtype=np.float32) for m in "ab"}, np.zeros(100, dtype=np.int64),
                               num_classes=3)
    model._choose(val)
    return model


def test_routing_keeps_the_papers_choice_within_a_standard_error_and_moves_beyond_it():
    model = scripted_ume_mma(mma_score=0.9, ume_score=0.8)
    assert model.selected_ == "mma"
    assert model.pattern_scores_["a+b"] == pytest.approx({"unimodal:a": 0.80, "unimodal:b": 0.50, "ume": 0.80, "mma": 0.83})
    assert 0.03 < model.pattern_se_["a+b"]["unimodal:a"] < 0.07 and model.pattern_se_["a+b"]["mma"] == 0.0
    # both: MMA (the paper's choice) is best and the others are within one SE: it stays;
    # a alone: MMA is more than a SE behind: the simplest within one of the best answers;
    # b alone: MMA is more than a SE ahead: it answers
    assert model.routing_ == {"a+b": "mma", "a": "unimodal:a", "b": "mma"}
    # the routed model's selection score: mean over full (0.83), a missing (0.60), b missing (0.80)
    assert model.val_score_ == pytest.approx((0.83 + 0.60 + 0.80) / 3)
    tie = scripted_ume_mma(mma_score=0.8, ume_score=0.8)  # a tie keeps UME: within a SE, the simpler one then
    assert tie.selected_ == "ume" and tie.routing_["a+b"] == "unimodal:a"
    paper = create("ume-mma-paper")
    paper.ume_, paper.mma_ = model.ume_, model.mma_
    paper._choose(mm.MultiModalDataset({m: np.zeros((100, 1), dtype=np.float32) for m in "ab"},
                                       np.zeros(100, dtype=np.int64), num_classes=3))
    assert paper.routing_ == {"a+b": "mma", "a": "mma", "b": "mma"}, "the paper's rule: one choice for every pattern"


def test_routing_standard_errors_resample_the_groups_of_shared_sources():
    """Rows 2k and 2k+1 share an image: the routing's bootstrap draws them together."""
    n = 100
    ume = ScriptedPart(0.8, {"a+b": range(80), "a": range(80), "b": range(50)})
    mma = ScriptedPart(0.9, {"a+b": range(10, 93), "a": range(70), "b": range(60)})
    model = create("ume-mma")
    model.ume_, model.mma_ = ume, mma
    sources = {"a": np.arange(n) // 2}
    val = mm.MultiModalDataset({m: np.zeros((n, 1), dtype=np.float32) for m in "ab"}, np.zeros(n, dtype=np.int64),
                               num_classes=3, sources=sources)
    model._choose(val)
    weights = resample_weights(n, RESAMPLES, derive_seed(0, "routing"), np.arange(n) // 2)
    right = {"mma": np.isin(np.arange(n), range(10, 93)), "unimodal:a": np.arange(n) < 80}
    accuracy_of = {c: weights @ r / weights.sum(axis=1) for c, r in right.items()}
    expected = float(np.std(accuracy_of["mma"] - accuracy_of["unimodal:a"]))
    assert model.pattern_se_["a+b"]["unimodal:a"] == pytest.approx(expected, abs=1e-9)
    assert model.pattern_se_["b"]["unimodal:b"] != pytest.approx(expected)  # b's rows share no source: rows resampled
    rows = resample_weights(n, RESAMPLES, derive_seed(0, "routing"))
    right_b = {"mma": np.arange(n) < 60, "unimodal:b": np.arange(n) < 50}
    by_row = {c: rows @ r / rows.sum(axis=1) for c, r in right_b.items()}
    assert model.pattern_se_["b"]["unimodal:b"] == pytest.approx(float(np.std(by_row["mma"] - by_row["unimodal:b"])), abs=1e-9)


def test_predictor_scales_by_the_patterns_temperature_and_builds_sets_by_hand(routed):
    from mmrobust.calibration import Calibration

    data, _, _, model = routed
    test = data["test"]
    temperatures = {"a+b": 2.0, "a": 0.5, "b": 1.5}
    patterns = ["a+b", "a", "b"] * 6
    rows = [{m: np.asarray(test.inputs[m][i]) if m in p.split("+") else None for m in "ab"} for i, p in enumerate(patterns)]
    raw = [model.predict_proba({m: test.inputs[m][i:i + 1] for m in p.split("+")}, presence(1, p))[0]
           for i, p in enumerate(patterns)]
    threshold = float(np.median([1 - r.max() for r in raw]))  # every validation row scores it: some sets hold a label
    calibration = Calibration("per-pattern", temperatures, {p: np.full(40, threshold) for p in temperatures})
    predictor = Predictor(model, {}, ["w", "x", "y", "z"], calibration=calibration)
    plain = predictor.predict(rows)
    sets = predictor.predict(rows, coverage=0.9, abstain=True)
    for i, pattern in enumerate(patterns):
        scaled = np.exp(np.log(raw[i]) / temperatures[pattern])
        scaled /= scaled.sum()
        assert np.allclose(list(plain[i].probabilities.values()), scaled, atol=1e-5)
        assert plain[i].label == "wxyz"[int(np.argmax(raw[i]))] and plain[i].used == pattern.split("+")
        # every validation row of the pattern scored `threshold`: a label is in the 90% set when 1 - p < it
        expected_set = [name for name, p in zip("wxyz", raw[i]) if 1 - p < threshold]
        assert sets[i].label_set == expected_set and sets[i].unsure == (len(expected_set) != 1)
        assert sets[i].label == (None if len(expected_set) != 1 else expected_set[0])
    assert any(s.unsure for s in sets) and any(not s.unsure for s in sets), "both cases occur"
    one = predictor.predict({"a": np.asarray(test.inputs["a"][0]), "b": np.asarray(test.inputs["b"][0])})
    assert one.label == plain[0].label, "one sample, not a list"
    refusals = {"sample 1: unknown modality 'c'; this model takes a, b": lambda: predictor.predict([rows[0], {"c": 1.0}]),
                "sample 2: no modality given; this model takes any of a, b": lambda: predictor.predict([rows[0], rows[1], {"a": None}]),
                "abstain needs a coverage": lambda: predictor.predict(rows, abstain=True),
                "presence pattern 'a': 0 validation rows; prediction sets at coverage 0.9 need at least 10":
                    lambda: Predictor(model, {}, list("wxyz"), calibration=Calibration("none", {}, {"a+b": np.full(40, 0.3)}))
                    .predict(rows[:2], coverage=0.9)}
    for message, call in refusals.items():
        with pytest.raises((mm.errors.InputError, mm.errors.ConfigError), match=message):
            call()
    with pytest.raises(mm.errors.ConfigError, match="this model has no conformal calibration"):
        Predictor(model, {}, list("wxyz")).predict(rows, coverage=0.9)


def test_a_multilabel_prediction_lists_every_label_at_one_half_or_more():
    data = mm.make_synthetic({"train": 120, "val": 40, "test": 40}, {"a": 6, "b": 6}, task="multilabel", seed=2)
    ume = mm.create_method("ume", encoders=ENCODERS, num_classes=4, task="multilabel", seed=0,
                           train_config=CONFIG).fit(data["train"], data["val"])
    predictor = Predictor(ume, {}, list("wxyz"))
    test = data["test"]
    rows = [{m: np.asarray(test.inputs[m][i]) for m in "ab"} for i in range(10)]
    raw = ume.predict_proba({m: test.inputs[m][:10] for m in "ab"})
    assert [p.label for p in predictor.predict(rows)] == [[n for n, q in zip("wxyz", r) if q >= 0.5] for r in raw]


def test_fit_calibration_keeps_its_mode_and_names_a_split_with_nothing_to_score():
    from mmrobust.evaluation import fit_calibration

    data = mm.make_synthetic({"train": 120, "val": 60, "test": 20}, {"a": 6, "b": 6}, seed=6)
    ume = create("ume").fit(data["train"], data["val"])
    glob = fit_calibration(ume, data["val"], "global")
    assert glob.mode == "global" and list(glob.temperatures) == ["*"]
    assert sorted(glob.scores) == ["a", "a+b", "b"] and all(len(v) == 60 for v in glob.scores.values())
    nothing = data["val"].with_present({m: torch.zeros(60, dtype=torch.bool) for m in "ab"})
    with pytest.raises(mm.errors.DataError, match="no validation row can be scored for ume: nothing to calibrate on"):
        fit_calibration(ume, nothing, "per-pattern")


def test_coverage_rows_and_set_metrics_by_hand():
    from mmrobust.calibration import Calibration, check_coverage, conformal_sets, min_rows, set_metrics

    for bad in (0.0, 1.0):
        with pytest.raises(mm.errors.ConfigError, match="strictly between 0 and 1"):
            check_coverage(bad)
    # the fewest rows n with 1 / (n + 1) < 1 - coverage
    assert [min_rows(c) for c in (0.1, 0.5, 0.75, 0.8, 0.9)] == [1, 2, 4, 5, 10]
    Calibration("none", {}, {"a": np.full(10, 0.3)}).check_rows(["a"], 0.9)  # exactly enough rows
    sets = np.array([[True, False, False], [True, True, False], [False, False, True], [False, True, False]])
    target = np.array([0, 1, 0, 0])  # right single, right pair, wrong single, wrong single
    assert set_metrics(sets, target) == {"coverage": 0.5, "set_size": pytest.approx(5 / 4), "answered": 0.75,
                                         "answered_accuracy": pytest.approx(1 / 3)}
    assert set_metrics(sets[1:2], target[1:2])["answered_accuracy"] is None
    got = conformal_sets(np.full(20, 0.3), np.array([[0.8, 0.1, 0.1]]), 0.9)
    assert got.dtype == bool and got.tolist() == [[True, False, False]]


def test_weighted_fusion_starts_equal_and_best_of_breaks_ties_towards_the_simplest():
    from mmrobust.fusion import WeightedMeanFusion
    from mmrobust.methods.ume_mma import best_of, simplest_within

    assert WeightedMeanFusion({"a": 2, "b": 2, "c": 2}).weight_map() == pytest.approx({m: 1 / 3 for m in "abc"})
    assert best_of({"mma": 0.8, "ume": 0.8, "unimodal:b": 0.8, "unimodal:a": 0.8}) == "unimodal:a"
    assert best_of({}) is None
    assert simplest_within({"unimodal:a": 0.7, "mma": 0.8}, {}) == "mma", "no standard error: only the best is within"


def test_paired_standard_errors_where_there_are_none_and_for_multilabel_f1():
    target = np.ones((200, 1), dtype=int)
    a = np.where(np.arange(200) < 150, 0.5, 0.1)[:, None]  # 0.5 counts as a positive
    b = np.where(np.arange(200) < 100, 0.9, 0.1)[:, None]
    weights = resample_weights(200, 300, seed=3)

    def f1(p):
        decided = (p[:, 0] >= 0.5)
        tp, fn = weights @ decided.astype(float), weights @ (~decided).astype(float)
        return 2 * tp / (2 * tp + fn)

    se = paired_standard_errors("f1_macro", "multilabel", {"a": a, "b": b}, target, weights, "a")
    assert se == {"a": 0.0, "b": pytest.approx(float(np.std(f1(a) - f1(b))), rel=1e-5)}
    multiclass = {"a": np.eye(3)[np.zeros(10, dtype=int)], "b": np.eye(3)[np.arange(10) % 3]}
    y = np.zeros(10, dtype=int)
    w = resample_weights(10, 50, seed=0)
    for args in (("auroc", "multiclass", multiclass, y, w, "a"), ("accuracy", "multiclass", multiclass, y[:0], w[:, :0], "a"),
                 ("accuracy", "multiclass", multiclass, y, w, None)):
        assert paired_standard_errors(*args) == {"a": 0.0, "b": 0.0}


def test_ume_mma_alone_trains_its_own_stage1_with_its_settings_and_names_bad_options(tmp_path):
    data = mm.make_synthetic({"train": 120, "val": 60, "test": 20}, {"a": 6, "b": 6}, task="multilabel", seed=7)
    settings = dict(encoders=ENCODERS, num_classes=4, task="multilabel", seed=0, train_config=CONFIG, metric="f1_micro")
    model = mm.create_method("ume-mma", **settings).fit(data["train"], data["val"], log_dir=tmp_path / "logs",
                                                        checkpoint_dir=tmp_path / "checkpoints")
    assert model.ume_.metric == model.mma_.metric == "f1_micro"
    assert model.ume_.train_config == model.mma_.train_config == CONFIG
    assert any((tmp_path / "logs").rglob("*")) and any((tmp_path / "checkpoints").rglob("*"))
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG,
                             task="multilabel", metric="f1_micro")
    ume = mm.create_method("ume-weighted", **settings).fit(data["train"], data["val"], stage1=stage1)
    assert np.allclose(model.ume_.predict_proba(data["test"].inputs), ume.predict_proba(data["test"].inputs), atol=1e-6)
    with pytest.raises(mm.errors.ConfigError, match="ume-mma chooses among its candidates on validation data; pass val"):
        create("ume-mma").fit(data["train"])
    with pytest.raises(mm.errors.ConfigError, match="ume-mma selection must be one of \\('per-pattern', 'paper'\\), got 'best'"):
        create("ume-mma", selection="best")
    with pytest.raises(mm.errors.ConfigError, match="ume-mma parts must name a method for each of \\('ume', 'mma'\\)"):
        create("ume-mma", parts={"ume": "ume"})


def test_evidence_records_by_hand_across_seeds_and_incomplete_runs():
    n, resamples = 60, 400
    rows = np.arange(n)
    target = np.zeros(n, dtype=int)
    right = {("mma", 0): rows < 45, ("mma", 1): rows < 39, ("unimodal:a", 0): rows % 2 == 0, ("unimodal:a", 1): rows % 3 > 0}
    full, single = ("full", None, None), ("miss:b", None, None)

    def decided(ok):
        return np.where(ok, 0, 1).astype(np.int32)

    decisions = {("partial", 0): {full: (rows, decided(rows < 50), "a+b")}}  # no seed 1: left out, and first
    decisions.update({key: {full: (rows, decided(ok), "a+b"), single: (rows[:1], decided(ok[:1]), "a")}
                      for key, ok in right.items()})
    records = bootstrap_evidence(decisions, target, "accuracy", ["a", "b"], resamples=resamples, dataset="toy")
    by = {(r["method"], r["protocol"]): r for r in records}
    assert ("partial", "full") not in by and ("mma", "miss:b") in by, "a one-row condition is scored too"
    weights = resample_weights(n, resamples, 0)  # the default seed
    spread = {m: np.mean([weights @ right[(m, s)] / weights.sum(axis=1) for s in (0, 1)], axis=0) for m in ("mma", "unimodal:a")}
    value = {m: np.mean([right[(m, s)].mean() for s in (0, 1)]) for m in spread}
    low, high = korn_graubard(value["mma"], spread["mma"], units=n, rows=n)
    tail = 50 * (1 - expanded(n))  # a difference: Hesterberg's expanded percentile interval for 60 rows
    d_low, d_high = np.percentile(spread["mma"] - spread["unimodal:a"], [tail, 100 - tail])
    record = by[("mma", "full")]
    assert record == {"dataset": "toy", "method": "mma", "protocol": "full", "rate": None, "pattern": None,
                      "metric": "accuracy", "value": pytest.approx(value["mma"]), "low": pytest.approx(low, abs=1e-6),
                      "high": pytest.approx(high, abs=1e-6), "unit": "row", "units": n, "resamples": resamples, "interval": "korn-graubard", "presence": "a+b",
                      "reference": "unimodal:a", "difference": pytest.approx(value["mma"] - value["unimodal:a"]),
                      "difference_low": pytest.approx(d_low, abs=1e-6), "difference_high": pytest.approx(d_high, abs=1e-6),
                      "verdict": "above" if d_low > 0 else "tied", "retention": pytest.approx(1.0)}
    reference = by[("unimodal:a", "full")]
    assert reference["reference"] is None and reference["verdict"] is None and reference["difference"] is None
    assert by[("mma", "miss:b")]["retention"] == pytest.approx(by[("mma", "miss:b")]["value"] / value["mma"])
    assert by[("mma", "miss:b")]["low"] is None, "one row: no interval"


def korn_graubard(value: float, resampled: np.ndarray, units: int, rows: int) -> tuple[float, float]:
    """A 95% interval as R survey's ``svyciprop(method="beta")`` computes it: n_eff = p (1 - p) / var
    (at most the rows), times (qt(0.025, rows - 1) / qt(0.025, units - 1))^2, then
    qbeta(0.025, n_eff p, n_eff (1 - p) + 1) and qbeta(0.975, n_eff p + 1, n_eff (1 - p))."""
    from scipy.stats import beta, t

    n_eff = min(value * (1 - value) / np.var(resampled, ddof=1), rows) * (t.ppf(0.025, rows - 1) / t.ppf(0.025, units - 1)) ** 2
    return beta.ppf(0.025, n_eff * value, n_eff * (1 - value) + 1), beta.ppf(0.975, n_eff * value + 1, n_eff * (1 - value))


def expanded(units: int, level: float = 0.95) -> float:
    """The expanded percentile level, from its definition: Phi(z') = 1 - tail with
    z' = sqrt(n / (n - 1)) * t_{n-1, (1 + level) / 2}."""
    from scipy.stats import norm, t

    return 2 * norm.cdf((units / (units - 1)) ** 0.5 * t.ppf((1 + level) / 2, units - 1)) - 1


def test_evidence_retention_from_the_full_pattern_and_groups_from_sources_when_rows_differ():
    n = 40
    rows, target = np.arange(n), np.zeros(n, dtype=int)
    both, only_a = ("subsets", None, "a+b"), ("subsets", None, "a")
    mixed = ("observed", None, None)
    answers = {both: rows < 30, only_a: rows < 20, mixed: rows < 10}
    decisions = {("mma", 0): {key: (rows, np.where(ok, 0, 1).astype(np.int32), None if key == mixed else key[2])
                              for key, ok in answers.items()}}
    sources = {"a": np.arange(n) // 4}
    records = {r["pattern"] or r["protocol"]: r for r in bootstrap_evidence(decisions, target, "accuracy", ["a", "b"],
                                                                           sources=sources, resamples=200)}
    assert records["a"]["retention"] == pytest.approx(0.5 / 0.75), "without `full`, the full pattern of `subsets`"
    assert records["a"]["unit"] == "group" and records["observed"]["unit"] == "group", "rows that differ: every source"
    weights = resample_weights(n, 200, 0, np.arange(n) // 4)
    spread = weights @ (rows < 10) / weights.sum(axis=1)
    assert records["observed"]["units"] == 10  # groups of 4 rows
    assert (records["observed"]["low"], records["observed"]["high"]) == pytest.approx(korn_graubard(0.25, spread, units=10, rows=n))


def test_weighted_f1_by_hand_on_several_resamples_with_an_empty_label():
    from sklearn.metrics import f1_score

    from mmrobust.evidence import weighted_metric

    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, (30, 3))
    decisions = rng.integers(0, 2, (30, 3))
    target[:, 2] = 0
    decisions[:, 2] = 0  # a label nobody has and nobody predicts: its F1 is 0 (zero_division = 0)
    weights = resample_weights(30, 3, seed=5)
    for metric, average in (("f1_macro", "macro"), ("f1_micro", "micro")):
        got = weighted_metric(metric, decisions, target, weights)
        expected = [f1_score(target, decisions, average=average, sample_weight=w, zero_division=0) for w in weights]
        assert got == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="no bootstrap for metric 'auroc'; supported: \\('accuracy', 'f1_macro', 'f1_micro'\\)"):
        weighted_metric("auroc", decisions, target, weights)


def test_evaluation_decisions_metrics_and_sweeps_by_hand():
    from mmrobust.evaluation import decisions, evaluate_method, mask_scores
    from mmrobust.protocols import ProtocolMask, sample_all_masks

    assert decisions(np.array([[0.2, 0.8], [0.6, 0.4]]), "multiclass").tolist() == [1, 0]
    assert decisions(np.array([[0.5, 0.4]]), "multilabel").tolist() == [[True, False]]
    data = mm.make_synthetic({"train": 120, "val": 40, "test": 40}, {"a": 6, "b": 6}, num_classes=2, seed=8)
    ume = mm.create_method("ume", encoders=ENCODERS, num_classes=2, seed=0, train_config=CONFIG).fit(data["train"], data["val"])
    test = data["test"]
    masks = sample_all_masks(["full", "sweep:a"], test.present, 0)
    default = evaluate_method(ume, test, masks)
    assert {r["metric"] for r in default.records} == {"accuracy", "auroc", "area:accuracy", "area:auroc"}
    assert {r["metric"] for r in mm.evaluate(ume, test, masks, ["accuracy"])} == {"accuracy", "area:accuracy"}
    assert list(default.decisions) == [("full", None, None)], "each row's decision is kept, but not for the sweeps' rates"
    nothing = ProtocolMask("miss:a", {m: np.zeros(40, dtype=bool) for m in "ab"}, np.zeros(40, dtype=bool))
    assert mask_scores(ume, test, [nothing, masks[0]], "accuracy") == [None, pytest.approx(accuracy(
        ume.predict_proba(test.inputs), test.target.numpy()))]


# --- what the mutation campaign found unpinned ------------------------------------------------------


def test_temperature_scaling_of_extreme_rows_stays_finite_row_by_row():
    from mmrobust.calibration import negative_log_likelihood, scale_temperature

    # softmax(log p / T) by hand: both rows are uniform; the second's logits are near -9,210 at T = 0.05,
    # so only a shift by each row's own maximum keeps exp() from underflowing to 0 / 0
    proba = np.array([[0.5, 0.5], [1e-200, 1e-200]])
    assert np.allclose(scale_temperature(proba, 0.05), 0.5)
    assert np.allclose(scale_temperature(proba, np.array([0.05, 0.05])), 0.5)
    # a hard zero on the label costs log(1e-12), not infinity (the temperature search stays finite)
    assert negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def test_a_pattern_with_exactly_the_minimum_rows_gets_its_own_temperature():
    from mmrobust.calibration import MIN_TEMPERATURE_ROWS, Calibration, fit_temperature

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3) * 0.3, size=2 * MIN_TEMPERATURE_ROWS - 1)
    target = rng.integers(0, 3, len(proba))
    patterns = np.array(["a"] * MIN_TEMPERATURE_ROWS + ["b"] * (MIN_TEMPERATURE_ROWS - 1))
    calibration = Calibration.fit(proba, target, patterns)
    own = fit_temperature(proba[:MIN_TEMPERATURE_ROWS], target[:MIN_TEMPERATURE_ROWS])
    assert calibration.temperature("a") == pytest.approx(own)
    assert calibration.temperature("b") == pytest.approx(fit_temperature(proba, target)), "one row short: the global one"


def test_evaluation_keeps_every_patterns_reliability_bins_before_and_after_calibration(routed):
    from mmrobust.evaluation import evaluate_method, fit_calibration
    from mmrobust.protocols import sample_masks

    data, _, _, model = routed
    test = data["test"]
    masks = sample_masks("subsets", {m: test.present[m] for m in "ab"}, 0)
    calibration = fit_calibration(model, data["val"], "per-pattern")
    out = evaluate_method(model, test, masks, ["accuracy"], calibration=calibration)
    assert [(b["pattern"], b["calibrated"]) for b in out.reliability] == [
        (p, c) for p in (m.pattern for m in masks) for c in (False, True)]
    for b in out.reliability:
        proba = model.predict_proba({m: test.inputs[m] for m in b["pattern"].split("+")}, presence(len(test), b["pattern"]))
        if b["calibrated"]:
            proba = calibration.calibrate(proba, [b["pattern"]] * len(proba))
        right = int((proba.argmax(axis=1) == test.target.numpy()).sum())
        assert sum(b["rows"]) == len(test) and sum(b["correct"]) == pytest.approx(right)


def test_evidence_records_carry_the_protocols_rate():
    n = 30
    rows, target = np.arange(n), np.zeros(n, dtype=int)
    key = ("map:a", 0.5, None)
    decisions = {(m, 0): {key: (rows, np.where(rows % k == 0, 0, 1).astype(np.int32), "a+b")}
                 for m, k in (("mma", 2), ("unimodal:a", 3))}
    records = bootstrap_evidence(decisions, target, "accuracy", ["a", "b"], resamples=50)
    assert [(r["protocol"], r["rate"], r["pattern"]) for r in records] == [("map:a", 0.5, None)] * 2


def test_mean_of_probabilities_by_hand_with_certain_branches_and_absent_rows():
    from mmrobust.fusion import MeanFusion

    eps = torch.finfo(torch.float32).eps
    a = torch.tensor([[0.0, -200.0], [1.0, 2.0], [0.0, 0.0]])  # softmax of the first row: (1, 0) in float32
    b = torch.tensor([[0.0, -200.0], [3.0, 0.0], [0.0, 0.0]])
    present = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, False, False])}
    out = MeanFusion(task="multiclass", average="probs")({"a": a, "b": b}, present)
    assert torch.allclose(out[0], torch.tensor([math.log(1 - eps), math.log(eps)]))
    assert torch.allclose(out[1], a[1].log_softmax(-1), atol=1e-6), "one modality present: its own log-probabilities"
    assert torch.equal(out[2], torch.zeros(2)), "no modality present: zeros"
    multi = MeanFusion(task="multilabel", average="probs")({"a": torch.tensor([[40.0, 0.0]]), "b": torch.tensor([[40.0, 2.0]])},
                                                            {"a": torch.tensor([True]), "b": torch.tensor([True])})
    mean_second = (0.5 + 1 / (1 + math.exp(-2.0))) / 2
    assert torch.allclose(multi[0], torch.tensor([math.log((1 - eps) / eps), math.log(mean_second / (1 - mean_second))]))


def test_ume_mma_alone_writes_stage1s_and_mmas_logs_and_checkpoints_and_summarises_its_choice(tmp_path):
    data = mm.make_synthetic({"train": 100, "val": 60, "test": 10}, {"a": 6, "b": 6}, seed=5)
    model = create("ume-mma").fit(data["train"], data["val"], log_dir=tmp_path / "logs", checkpoint_dir=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["mma.jsonl", "unimodal-a.jsonl", "unimodal-b.jsonl"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["mma", "unimodal-a", "unimodal-b"]
    summary = model.fit_summary()
    assert {k: summary[k] for k in ("parts", "selection", "pattern_choice")} == {
        "parts": {"ume": "ume-weighted", "mma": "mma"}, "selection": "per-pattern",
        "pattern_choice": {p: model.answered_by(p) for p in ("a+b", "a", "b")}}
    assert summary["pattern_scores"] == model.pattern_scores_ and summary["pattern_se"] == model.pattern_se_
    nothing = {m: torch.zeros(3, dtype=torch.bool) for m in "ab"}
    inputs = {m: torch.as_tensor(data["test"].inputs[m][:3]) for m in "ab"}
    proba = model.proba_from_encoded(model.encode(inputs, nothing), nothing)
    assert proba.shape == (3, 4), "a batch whose rows have no modality is answered (never scored), not dropped"
    with pytest.raises(mm.errors.ModelFileError, match="earlier mmrobust"):
        create("ume-mma").restore({}, {"selection": "per-pattern"})


def test_predictions_carry_every_field_with_sets_and_read_files_relative_to_base(routed, tmp_path):
    from mmrobust.calibration import Calibration

    data, _, _, model = routed
    test = data["test"]
    np.save(tmp_path / "a0.npy", np.asarray(test.inputs["a"][0]))
    calibration = Calibration("none", {}, {p: np.full(40, 0.99) for p in ("a+b", "a", "b")})
    predictor = Predictor(model, {"a": {"kind": "array", "shape": [6]}}, list("wxyz"), card="a card", calibration=calibration)
    assert predictor.card == "a card"
    by_file = predictor.predict({"a": "a0.npy", "b": "  "}, base=tmp_path, coverage=0.9)
    by_value = predictor.predict({"a": np.asarray(test.inputs["a"][0])})
    assert by_file.used == ["a"], "a blank text cell is a missing modality"
    assert by_file.probabilities == by_value.probabilities and by_file.answered_by == model.answered_by("a")
    assert by_file.to_dict() == {"label": by_value.label, "probabilities": by_value.probabilities, "used": ["a"],
                                 "label_set": list("wxyz"), "unsure": False, "answered_by": model.answered_by("a"),
                                 "ignored": {}, "implausible": {}}
    with pytest.raises(mm.errors.InputError, match=r"a: expected an input of shape \[6\], got \[2, 3\]"):
        predictor.predict({"a": np.zeros((2, 3))})


def test_a_multilabel_label_at_exactly_one_half_is_predicted():
    class Half:
        task, modalities = "multilabel", ["a"]

        def predict_proba(self, inputs, present):
            return np.full((len(present["a"]), 2), 0.5, dtype=np.float32)

    predictor = Predictor(Half(), {}, ["x", "y"])
    assert predictor._prediction(np.array([0.5, 0.25]), ["a"], None, False, "ume").label == ["x"]


def test_protocol_refusals_name_the_cause_and_subsets_score_rows_that_have_the_pattern():
    from mmrobust.protocols import as_bool_array, get_protocol, sample_masks

    with pytest.raises(mm.errors.ProtocolError, match="a protocol must be a non-empty string, got 3"):
        get_protocol(3)
    with pytest.raises(mm.errors.ProtocolError, match="protocol 'full' takes no argument, got 'full@0.5'"):
        sample_masks("full@0.5", {"a": np.ones(3, bool)}, 0)
    with pytest.raises(mm.errors.ProtocolError, match=r"expected one of: corrupt:<m>@<kind>:<severity>\[@<share>\], fail:<m>@<kind>, full, map:<m>@<eta> \| map:both@<eta>, miss:<m>"):
        get_protocol("gone")
    for bad in (np.ones((2, 2), bool), np.ones(3, int)):
        with pytest.raises(mm.errors.ProtocolError, match="a presence mask must be a 1-D bool array"):
            as_bool_array(bad)
    observed = {"a": np.array([True, True, False, True]), "b": np.array([True, False, True, True])}
    scored = {m.pattern: m.scored.tolist() for m in sample_masks("subsets", observed, 0)}
    assert scored == {"a": [True, True, False, True], "b": [True, False, True, True], "a+b": [True, False, False, True]}


def test_sweep_drops_a_nested_share_in_an_order_drawn_from_the_seed_and_the_modality():
    from mmrobust.protocols import SWEEP_RATES, sample_masks

    n, seed = 20, 4
    observed = {m: np.ones(n, bool) for m in "ab"}
    for m in "ab":
        order = np.random.default_rng(derive_seed(seed, "sweep", m)).permutation(n)
        for mask, rate in zip(sample_masks(f"sweep:{m}", observed, seed), SWEEP_RATES):
            dropped = np.zeros(n, bool)
            dropped[order[:round(rate * n)]] = True
            assert mask.rate == rate and mask.present[m].tolist() == (~dropped).tolist()


def test_a_protocols_description_names_a_modality_whose_name_holds_a_colon():
    from mmrobust.protocols import get_protocol

    assert "`cam:left`" in get_protocol("miss:cam:left").describe("miss:cam:left")


def test_ume_mma_alone_trains_one_stage1_for_both_parts_with_its_metric(monkeypatch):
    from mmrobust.methods import ume_mma, unimodal

    calls, trained = [], []
    real_stage1, real_fit = ume_mma.train_stage1, unimodal.UnimodalMethod.fit

    def counting_stage1(*args, **kwargs):
        calls.append(kwargs["metric"])
        return real_stage1(*args, **kwargs)

    def counting_fit(self, train, val=None, *, stage1=None, **kwargs):
        trained.append(stage1 is None)
        return real_fit(self, train, val, stage1=stage1, **kwargs)

    monkeypatch.setattr(ume_mma, "train_stage1", counting_stage1)
    monkeypatch.setattr(unimodal.UnimodalMethod, "fit", counting_fit)
    data = mm.make_synthetic({"train": 80, "val": 40, "test": 10}, {"a": 6, "b": 6}, task="multilabel", seed=6)
    mm.create_method("ume-mma", encoders=ENCODERS, num_classes=4, task="multilabel", seed=0, train_config=CONFIG,
                     metric="f1_micro").fit(data["train"], data["val"])
    assert calls == ["f1_micro"] and trained.count(True) == 2, "each modality trained once, shared by UME and MMA"


def test_ume_mma_restores_its_parts_with_their_own_parameters(tmp_path):
    from mmrobust.checkpoint import load_method, save_method

    data = mm.make_synthetic({"train": 80, "val": 60, "test": 10}, {"a": 6, "b": 6}, seed=8)
    stage1 = mm.train_stage1(ENCODERS, data["train"], data["val"], num_classes=4, seed=0, train_config=CONFIG)
    parts = {"ume-weighted": create("ume-weighted").fit(data["train"], data["val"], stage1=stage1),
             "mma": create("mma", p_drop=0.3).fit(data["train"], data["val"], stage1=stage1)}
    model = create("ume-mma").fit(data["train"], data["val"], stage1=stage1, fitted=parts)
    save_method(model, tmp_path / "m.safetensors")
    restored = load_method(create("ume-mma"), tmp_path / "m.safetensors")
    assert restored.mma_.get_params()["p_drop"] == 0.3


def test_a_relative_path_is_read_from_the_working_folder_by_default(routed, tmp_path, monkeypatch):
    data, _, _, model = routed
    np.save(tmp_path / "a0.npy", np.asarray(data["test"].inputs["a"][0]))
    monkeypatch.chdir(tmp_path)
    predictor = Predictor(model, {"a": {"kind": "array", "shape": [6]}}, list("wxyz"))
    expected = predictor.predict({"a": np.asarray(data["test"].inputs["a"][0])}).probabilities
    assert predictor.predict({"a": "a0.npy"}).probabilities == expected
