import itertools

import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.protocols import nonempty_subsets


def fit(name, encoders, data, config, seed=0, stage1=None, **options):
    method = mm.create_method(name, encoders=encoders, num_classes=data["train"].num_classes,
                              task=data["train"].task, seed=seed, train_config=config, **options)
    return method.fit(data["train"], data["val"], stage1=stage1)


def all_patterns(n, modalities):
    """Every presence pattern over ``modalities``, cycled over ``n`` rows (including none)."""
    patterns = list(itertools.product([True, False], repeat=len(modalities)))
    return {m: torch.tensor([patterns[i % len(patterns)][j] for i in range(n)]) for j, m in enumerate(modalities)}


def usable(present):
    return torch.stack(list(present.values())).any(0)


@pytest.fixture
def stage1(tiny_encoders, synthetic, tiny_config):
    return mm.train_stage1(tiny_encoders, synthetic["train"], synthetic["val"], num_classes=4, seed=0, train_config=tiny_config)


METHOD_OPTIONS = {"unimodal": {"modality": "a"}}


@pytest.mark.parametrize("name", mm.list_methods())
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_method_contract(name, task, tiny_encoders, tiny_config):
    """Every registered method: init stores only, fit returns self, probabilities, predict, score."""
    data = mm.make_synthetic({"train": 120, "val": 60, "test": 60}, {"a": 6, "b": 6}, task=task, seed=1)
    encoders = dict(tiny_encoders)
    method = mm.create_method(name, encoders=encoders, num_classes=4, task=task, seed=0,
                              train_config=tiny_config, **METHOD_OPTIONS.get(name, {}))
    assert not [k for k in vars(method) if k.endswith("_")], "__init__ must not fit anything"
    assert method.fit(data["train"], data["val"]) is method
    assert encoders == tiny_encoders
    test = data["test"]
    present = {m: torch.ones(len(test), dtype=torch.bool) for m in method.modalities}
    proba = method.predict_proba({m: test.inputs[m] for m in method.modalities}, present)
    assert proba.shape == (len(test), 4) and np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    if task == "multiclass":
        assert np.allclose(proba.sum(1), 1, atol=1e-5)
        assert set(method.predict(test.inputs).tolist()) <= set(range(4))
    else:
        assert set(np.unique(method.predict(test.inputs))) <= {0, 1}
    score = method.score(test)
    assert 0.0 <= score <= 1.0


def test_ume_is_the_unimodal_model_when_one_modality_is_present(tiny_encoders, synthetic, tiny_config, stage1):
    ume = fit("ume", tiny_encoders, synthetic, tiny_config, stage1=stage1)
    test = synthetic["test"]
    for m in ("a", "b"):
        uni = fit("unimodal", tiny_encoders, synthetic, tiny_config, stage1=stage1, modality=m)
        assert np.allclose(ume.predict_proba({m: test.inputs[m]}), uni.predict_proba({m: test.inputs[m]}), atol=1e-6)


@pytest.mark.parametrize("modalities", [("a", "b"), ("a", "b", "c")])
def test_mma_equals_ume_at_step_0_for_every_pattern(modalities, tiny_config):
    shapes = {m: (1, 6, 6) if m == "a" else 5 for m in modalities}  # a CNN (with BatchNorm) and MLPs
    data = mm.make_synthetic({"train": 120, "val": 60, "test": 64}, shapes, seed=2)
    encoders = {m: mm.EncoderSpec("lenet-tiny", in_shape=(1, 6, 6)) if m == "a" else mm.EncoderSpec("mlp-tiny", in_dim=5)
                for m in modalities}
    stage1 = mm.train_stage1(encoders, data["train"], data["val"], num_classes=4, seed=0, train_config=tiny_config)
    ume = fit("ume", encoders, data, tiny_config, stage1=stage1)
    mma = mm.create_method("mma", encoders=encoders, num_classes=4, seed=0, train_config=tiny_config)
    step0 = mma.build_model(stage1).eval()
    test = data["test"]
    present = all_patterns(len(test), modalities)
    inputs = {m: torch.as_tensor(test.inputs[m]) for m in modalities}
    with torch.no_grad():
        mma_proba = step0(inputs, present).softmax(-1)
    ume_proba = ume.proba_from_encoded(ume.encode(inputs, present), present)
    rows = usable(present)
    assert torch.allclose(mma_proba[rows], ume_proba[rows], atol=1e-6)


def test_methods_never_share_parameters_and_stage1_stays_untouched(tiny_encoders, synthetic, tiny_config, stage1):
    before = {m: {k: v.clone() for k, v in model.state_dict().items()} for m, model in stage1.models.items()}
    names = ["ume", "mma", "late-fusion-unimodal-init", "late-fusion", "late-fusion-dropout"]
    methods = [fit(n, tiny_encoders, synthetic, tiny_config, stage1=stage1) for n in names]
    methods += [fit("unimodal", tiny_encoders, synthetic, tiny_config, stage1=stage1, modality=m) for m in "ab"]
    pointers = [{p.data_ptr() for p in method.model_.parameters()} for method in methods]
    pointers.append({p.data_ptr() for model in stage1.models.values() for p in model.parameters()})
    for a, b in itertools.combinations(pointers, 2):
        assert not a & b
    for m, model in stage1.models.items():
        assert all(torch.equal(v, before[m][k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["mma", "late-fusion-concat", "ume-mma"])
def test_same_seed_same_predictions(name, tiny_encoders, synthetic, tiny_config):
    test = synthetic["test"]
    a = fit(name, tiny_encoders, synthetic, tiny_config, seed=3).predict_proba(test.inputs)
    b = fit(name, tiny_encoders, synthetic, tiny_config, seed=3).predict_proba(test.inputs)
    c = fit(name, tiny_encoders, synthetic, tiny_config, seed=4).predict_proba(test.inputs)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_predict_with_missing_modalities_and_clear_errors(tiny_encoders, synthetic, tiny_config, stage1):
    mma = fit("mma", tiny_encoders, synthetic, tiny_config, stage1=stage1)
    test = synthetic["test"]
    only_a = mma.predict_proba({"a": test.inputs["a"], "b": None})
    assert np.allclose(only_a, mma.predict_proba({"a": test.inputs["a"]}))
    with pytest.raises(ValueError, match=r"rows \[1\] have none of the modalities"):
        mma.predict_proba(test.inputs, {"a": np.array([True, False] + [True] * 118), "b": np.array([True, False] + [False] * 118)})
    with pytest.raises(ValueError, match="unknown modalities"):
        mma.predict_proba({"a": test.inputs["a"], "video": test.inputs["b"]})
    with pytest.raises(ValueError, match="no input was given"):
        mma.predict_proba({"a": test.inputs["a"]}, {"b": np.ones(120, dtype=bool)})
    uni = fit("unimodal", tiny_encoders, synthetic, tiny_config, stage1=stage1, modality="b")
    with pytest.raises(ValueError, match="none of the modalities"):
        uni.predict_proba({"a": test.inputs["a"]})


def test_ume_mma_routes_each_pattern_to_its_validation_choice(tiny_encoders, synthetic, tiny_config, stage1):
    ume = fit("ume-weighted", tiny_encoders, synthetic, tiny_config, stage1=stage1)
    mma = fit("mma", tiny_encoders, synthetic, tiny_config, stage1=stage1)
    fitted = {"ume-weighted": ume, "mma": mma}
    routed = mm.create_method("ume-mma", encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config)
    routed.fit(synthetic["train"], synthetic["val"], stage1=stage1, fitted=fitted)
    assert routed.val_scores_ == {"ume": ume.val_score_, "mma": mma.val_score_}
    assert routed.selected_ == ("mma" if mma.val_score_ > ume.val_score_ else "ume")
    assert set(routed.routing_) == {"a+b", "a", "b"}
    assert list(routed.pattern_scores_["a+b"])[-2:] == ["ume", "mma"]
    test = synthetic["test"]
    present = all_patterns(len(test), ["a", "b"])
    rows = usable(present).numpy()
    proba = routed.proba_from_encoded(routed.encode(test.inputs, present), present).numpy()
    for subset in nonempty_subsets(["a", "b"]):
        in_pattern = np.all([present[m].numpy() == (m in subset) for m in "ab"], axis=0)
        choice = routed.routing_["+".join(subset)]
        if choice.startswith("unimodal:"):
            model = stage1.methods[choice.split(":")[1]]
            expected = model.predict_proba({m: test.inputs[m] for m in model.modalities})
        else:
            component = fitted[routed.parts[choice]]
            expected = component.proba_from_encoded(component.encode(test.inputs, present), present).numpy()
        assert np.allclose(proba[in_pattern], expected[in_pattern], atol=1e-6)
    assert np.array_equal(routed.scorable(present).numpy(), rows)  # rows with nothing present: not scorable
    paper = mm.create_method("ume-mma-paper", encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config)
    paper.fit(synthetic["train"], synthetic["val"], stage1=stage1, fitted={"mma": mma})
    assert set(paper.routing_.values()) == {paper.selected_}


def test_fused_method_errors():
    enc = {"a": mm.EncoderSpec("identity", in_dim=2)}
    with pytest.raises(ValueError, match="at least two modalities"):
        mm.create_method("late-fusion", encoders=enc, num_classes=2)
    enc2 = {**enc, "b": mm.EncoderSpec("identity", in_dim=2)}
    with pytest.raises(ValueError, match="unimodal_loss_weight needs a fusion with per-modality heads"):
        mm.create_method("late-fusion-concat", encoders=enc2, num_classes=2, unimodal_loss_weight=0.5)
    with pytest.raises(KeyError, match="unknown method"):
        mm.create_method("nope", encoders=enc2, num_classes=2)


def test_unimodal_loss_option_adds_the_weighted_branch_losses(tiny_encoders, synthetic, tiny_config, stage1):
    from mmrobust.models import task_loss

    name = "late-fusion-unimodal-init"  # no modality dropout: the same rows reach both losses
    plain = mm.create_method(name, encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config)
    weighted = mm.create_method(name, encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config,
                                unimodal_loss_weight=0.5)
    for method in (plain, weighted):
        method.model_ = method.build_model(stage1).eval()
    batch = synthetic["train"].batch(np.arange(32))
    branches = plain.model_.encode(batch.inputs, batch.present)
    extra = sum(task_loss(branches[m][batch.present[m]], batch.target[batch.present[m]], "multiclass") for m in "ab")
    with torch.no_grad():
        difference = weighted.training_step(batch, epoch=0)["loss"] - plain.training_step(batch, epoch=0)["loss"]
    assert float(extra) > 0 and torch.allclose(difference, 0.5 * extra, atol=1e-6)
    trained = fit("mma", tiny_encoders, synthetic, tiny_config, stage1=stage1, unimodal_loss_weight=0.5)
    reference = fit("mma", tiny_encoders, synthetic, tiny_config, stage1=stage1)
    assert trained.history_[0]["train_loss"] > reference.history_[0]["train_loss"]


def test_fusion_beats_each_modality_on_a_learnable_task():
    """A learning check: two independent noisy views; late fusion and UME must beat each alone."""
    data = mm.make_synthetic({"train": 800, "val": 200, "test": 600}, {"a": 8, "b": 8}, noise=1.3, seed=0)
    encoders = {m: mm.EncoderSpec("mlp", in_dim=8, hidden=(32,), out_dim=32) for m in "ab"}
    config = mm.TrainConfig(epochs=12, batch_size=64, lr=3e-3, device="cpu")
    results = mm.run_experiment(methods=["unimodal", "ume", "late-fusion"], encoders=encoders, train=data["train"],
                                val=data["val"], test=data["test"], protocols=["full"], seeds=[0], train_config=config)
    acc = {r["method"]: r["value"] for r in results.records if r["metric"] == "accuracy"}
    best_single = max(acc["unimodal:a"], acc["unimodal:b"])
    assert best_single > 0.5, acc
    assert acc["ume"] > best_single + 0.05 and acc["late-fusion"] > best_single + 0.05, acc
