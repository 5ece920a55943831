"""The weighted ensemble and UME-MMA's per-pattern routing (issue 19)."""
import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.evaluation import mask_scores
from mmrobust.fusion import WeightedMeanFusion
from mmrobust.methods.ume_mma import simplest_within
from mmrobust.records import candidate_order
from mmrobust.protocols import sample_masks


def fit(name, encoders, data, config, stage1, fitted=None):
    method = mm.create_method(name, encoders=encoders, num_classes=data["train"].num_classes, seed=0, train_config=config)
    return method.fit(data["train"], data["val"], stage1=stage1, fitted=fitted)


@pytest.fixture
def noisy_b(tiny_encoders):
    """Modality ``a`` carries the class; ``b`` is pure noise."""
    return mm.make_synthetic({"train": 240, "val": 160, "test": 120}, {"a": 6, "b": 6}, noise={"a": 1.0, "b": 1e3}, seed=2)


@pytest.fixture
def stage1(tiny_encoders, noisy_b, tiny_config):
    return mm.train_stage1(tiny_encoders, noisy_b["train"], noisy_b["val"], num_classes=4, seed=0, train_config=tiny_config)


def test_weights_fitted_on_logits_give_a_noise_modality_almost_nothing():
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 5, 400))
    informative = 3 * torch.nn.functional.one_hot(target, 5).float() + torch.from_numpy(rng.normal(size=(400, 5))).float()
    noise = 3 * torch.nn.functional.one_hot(torch.from_numpy(rng.integers(0, 5, 400)), 5).float()
    fusion = WeightedMeanFusion({"a": 1, "b": 1}, 5)
    both = {"a": torch.ones(400, dtype=torch.bool), "b": torch.ones(400, dtype=torch.bool)}
    fit = fusion.fit_weights({"a": informative, "b": noise}, both, target)
    assert fusion.weight_map()["b"] < 0.05 and fit["nll_fitted"] < fit["nll_equal"] and fit["fallback"] is None
    fusion.weights.fill_(0.5)
    fit = fusion.fit_weights({"a": informative, "b": noise}, {m: p[:0] for m, p in both.items()}, target[:0])
    assert fusion.weight_map() == {"a": 0.5, "b": 0.5} and fit["fallback"] == "no rows with two or more modalities"


def test_weighted_ume_learns_to_ignore_noise_and_equals_each_unimodal_model_alone(tiny_encoders, noisy_b, tiny_config, stage1):
    ume = fit("ume-weighted", tiny_encoders, noisy_b, tiny_config, stage1)
    assert ume.weight_fit_["weights"]["b"] < 0.1
    test = noisy_b["test"]
    for m in ("a", "b"):
        present = {k: torch.full((len(test),), k == m) for k in ("a", "b")}
        alone = ume.proba_from_encoded(ume.encode(test.inputs, present), present).numpy()
        assert np.allclose(alone, stage1.methods[m].predict_proba({m: test.inputs[m]}), atol=1e-6)
    equal = fit("ume", tiny_encoders, noisy_b, tiny_config, stage1)
    assert not np.allclose(ume.predict_proba(test.inputs), equal.predict_proba(test.inputs))


def test_routing_is_chosen_on_validation_rows_only(tiny_encoders, noisy_b, tiny_config, stage1):
    parts = {"ume-weighted": fit("ume-weighted", tiny_encoders, noisy_b, tiny_config, stage1),
             "mma": fit("mma", tiny_encoders, noisy_b, tiny_config, stage1)}
    routed = fit("ume-mma", tiny_encoders, noisy_b, tiny_config, stage1, fitted=parts)
    val = noisy_b["val"]
    for mask in sample_masks("subsets", val.present, 0):
        scores = routed.pattern_scores_[mask.pattern]
        for role in ("ume", "mma"):  # every score is the candidate's metric on the validation rows of that pattern
            assert scores[role] == pytest.approx(mask_scores(parts[routed.parts[role]], val, [mask], "accuracy")[0])
        for m in mask.pattern.split("+"):
            assert scores[f"unimodal:{m}"] == pytest.approx(stage1.methods[m].score(val))
        assert routed.routing_[mask.pattern] == simplest_within(scores, routed.pattern_se_[mask.pattern], routed.selected_)
    assert routed.routing_["a+b"] in ("unimodal:a", "ume")  # noise never buys the fused model here
    before = dict(routed.routing_)
    mm.evaluate(routed, noisy_b["test"], sample_masks("subsets", noisy_b["test"].present, 0))
    assert routed.routing_ == before


def test_the_simplest_candidate_within_a_standard_error_wins():
    ordered = {"mma": 0.80, "ume": 0.80, "unimodal:a": 0.80}  # a tie goes to the simpler, whatever the dict's order
    assert simplest_within(ordered, {c: 0.0 for c in ordered}) == "unimodal:a"
    assert candidate_order({"mma": 0.9, "unimodal:b": 0.5, "ume": 0.7, "unimodal:a": 0.6}) == ["unimodal:a", "unimodal:b", "ume", "mma"]
    ordered = {"unimodal:a": 0.80, "ume": 0.81, "mma": 0.83}
    assert simplest_within(ordered, {"unimodal:a": 0.02, "ume": 0.03, "mma": 0.0}) == "ume"
    assert simplest_within(ordered, {"unimodal:a": 0.04, "ume": 0.01, "mma": 0.0}) == "unimodal:a"
    assert simplest_within(ordered, {"unimodal:a": 0.001, "ume": 0.001, "mma": 0.0}) == "mma"
    # the paper's choice stands within a standard error, unless a simpler one scores as well
    near = {"unimodal:a": 0.631, "ume": 0.631, "mma": 0.6345}
    errors = {"unimodal:a": 0.006, "ume": 0.006, "mma": 0.0}
    assert simplest_within(near, errors) == "unimodal:a" and simplest_within(near, errors, incumbent="mma") == "mma"
    assert simplest_within({"unimodal:a": 0.7, "ume": 0.7, "mma": 0.7}, {}, incumbent="mma") == "unimodal:a"
    far = {"unimodal:a": 0.89, "ume": 0.88, "mma": 0.84}  # the paper's choice more than a standard error behind
    assert simplest_within(far, {"unimodal:a": 0.0, "ume": 0.02, "mma": 0.02}, incumbent="mma") == "unimodal:a"


def _rule_as_written(scores, errors, incumbent):
    """docs/concepts.md's rule, written again: complexity rank, best, reach, then the answer."""
    def rank(c):
        return (0, -scores[c], c) if c.startswith("unimodal:") else (1 if c == "ume" else 2, 0.0, c)
    best = max(scores.values())
    reach = sorted((c for c in scores if best - scores[c] <= errors[c]), key=rank)
    if incumbent in reach:
        return [c for c in reach if scores[c] >= scores[incumbent]][0]
    return reach[0]


def test_the_routing_rule_is_the_one_the_docs_state_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(20000):
        names = ["unimodal:a", "unimodal:b", "ume", "mma"][rng.integers(0, 2):]
        scores = {c: float(v) for c, v in zip(names, np.round(rng.uniform(0.5, 0.6, len(names)), 2))}
        top = max(scores.values())
        errors = {c: 0.0 if scores[c] == top else float(rng.choice([0.0, 0.005, 0.01, 0.03])) for c in names}
        incumbent = str(rng.choice(["ume", "mma"]))
        assert simplest_within(scores, errors, incumbent) == _rule_as_written(scores, errors, incumbent)
    # a simpler candidate that ties the incumbent but is itself out of reach does not take over
    assert simplest_within({"unimodal:a": 0.55, "ume": 0.55, "mma": 0.56},
                           {"unimodal:a": 0.0, "ume": 0.02, "mma": 0.0}, incumbent="ume") == "ume"


def test_mma_with_the_weighted_fusion_starts_from_the_weighted_ensemble(tiny_encoders, noisy_b, tiny_config, stage1):
    ume = fit("ume-weighted", tiny_encoders, noisy_b, tiny_config, stage1)
    still = mm.create_method("mma", encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config,
                             fusion="weighted", finetune_lr_scale=1e-9).fit(noisy_b["train"], noisy_b["val"], stage1=stage1)
    assert still.weight_fit_["weights"] == ume.weight_fit_["weights"]
    assert np.allclose(still.predict_proba(noisy_b["test"].inputs), ume.predict_proba(noisy_b["test"].inputs), atol=1e-6)


def test_a_modality_with_a_vanishing_weight_alone_is_still_its_own_model():
    fusion = WeightedMeanFusion({"a": 1, "b": 1}, 3)
    fusion.weights.copy_(torch.tensor([1.0, 0.0]))
    logits = {"a": torch.randn(4, 3), "b": torch.randn(4, 3)}
    only_b = {"a": torch.zeros(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}
    assert torch.allclose(fusion(logits, only_b), logits["b"])
