"""The defining property of each strong baseline, on hand-sized examples. (Every presence
pattern, save/restore and non-finite refusal are in the registry-wide contract tests.)"""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.fusion import EntropyFusion
from mmrobust.methods.ogm_ge import modulation_coefficients
from mmrobust.models import LateFusionClassifier, distillation_loss, task_loss


@pytest.fixture
def stage1(tiny_encoders, synthetic, tiny_config):
    return mm.train_stage1(tiny_encoders, synthetic["train"], synthetic["val"], num_classes=4, seed=0, train_config=tiny_config)


def create(name, encoders, config, **options):
    return mm.create_method(name, encoders=encoders, num_classes=4, seed=0, train_config=config, **options)


def batch_of(data, rows=32):
    return data.batch(np.arange(rows))


def test_distillation_loss_by_hand():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    p = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()  # teacher at T = 2
    expected = 4 * float(np.sum(p * np.log(p / 0.5)))
    assert float(distillation_loss(student, teacher, "multiclass", 2.0)) == pytest.approx(expected, rel=1e-6)
    assert float(distillation_loss(teacher, teacher, "multiclass", 2.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_loss(teacher, teacher, "multilabel", 2.0)) == pytest.approx(0.0, abs=1e-7)
    q = 1 / (1 + math.exp(-1.0))  # multi-label: one label, Bernoulli KL at T = 2
    expected = 4 * (q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5))
    assert float(distillation_loss(student[:, :1], teacher[:, :1], "multilabel", 2.0)) == pytest.approx(expected, rel=1e-5)


def test_umt_feature_term_is_zero_when_the_student_is_the_teacher(tiny_encoders, synthetic, tiny_config, stage1):
    umt = create("umt", tiny_encoders, tiny_config)
    batch = batch_of(synthetic["train"])
    umt.start_training(stage1, tiny_config)
    umt.model_ = LateFusionClassifier.from_unimodal(stage1.models, 4)  # students equal to their teachers
    with torch.no_grad():
        out = umt.training_step(batch, epoch=0)
        task = task_loss(umt.model_(batch.inputs, batch.present), batch.target, "multiclass")
    assert torch.allclose(out["loss"], task, atol=1e-6)
    umt.model_ = umt.build_model(None)  # students from scratch: their features differ
    with torch.no_grad():
        features = umt.model_.features(batch.inputs, batch.present)
        assert float(umt.feature_loss(batch, features, batch.present, batch.present)) > 0


def test_kd_unimodal_adds_the_distillation_from_each_present_teacher(tiny_encoders, synthetic, tiny_config, stage1):
    kd = create("kd-unimodal", tiny_encoders, tiny_config, augment=False)
    kd.start_training(stage1, tiny_config)
    kd.model_ = kd.build_model(None)
    batch = batch_of(synthetic["train"])
    batch.present["b"][:10] = False
    with torch.no_grad():
        out = kd.training_step(batch, epoch=0)
        logits = kd.model_(batch.inputs, batch.present)
        expected = task_loss(logits, batch.target, "multiclass")
        for m in "ab":
            rows = batch.present[m]
            teacher = stage1.models[m](batch.inputs[m][rows])
            expected = expected + 0.5 * distillation_loss(logits[rows], teacher, "multiclass", 2.0)
    assert torch.allclose(out["loss"], expected, atol=1e-5)


def test_kd_full_has_no_distillation_term_when_nothing_is_dropped(tiny_encoders, synthetic, tiny_config, stage1):
    kd = create("kd-full", tiny_encoders, tiny_config, p_drop=0.0)
    kd.model_ = kd.build_model(stage1)
    batch = batch_of(synthetic["train"])
    with torch.no_grad():
        out = kd.training_step(batch, epoch=0)
        task = task_loss(kd.model_(batch.inputs, batch.present), batch.target, "multiclass")
    assert torch.allclose(out["loss"], 0.5 * task, atol=1e-6)
    kd.p_drop = 1.0  # every row loses a modality: the full row now teaches the dropped copy
    with torch.no_grad():
        dropped = kd.step_presence(batch, 0)[1]
        assert not bool((dropped["a"] & dropped["b"]).any())  # no row keeps both
        student, teacher = kd.model_(batch.inputs, dropped), kd.model_(batch.inputs, batch.present)
        p, q = teacher.div(2.0).softmax(-1), student.div(2.0).log_softmax(-1)
        kl = 4.0 * (p * (p.log() - q)).sum(-1).mean()  # T^2 KL(teacher || student), by hand
        expected = 0.5 * task_loss(student, batch.target, "multiclass") + 0.5 * kl
        assert float(kl) > 0 and torch.allclose(kd.training_step(batch, epoch=0)["loss"], expected, atol=1e-5)


def test_ogm_ge_coefficient_by_hand_and_only_the_dominant_modality_is_damped(tiny_encoders, synthetic, tiny_config):
    assert modulation_coefficients({"a": 30.0, "b": 10.0}, 0.1) == {"a": pytest.approx(1 - math.tanh(0.3))}
    assert modulation_coefficients({"a": 10.0, "b": 10.0}, 0.1) == {}
    assert modulation_coefficients({"a": 5.0, "b": 20.0, "c": 10.0}, 0.5) == {"b": pytest.approx(1 - math.tanh(0.5 * 20 / 7.5))}
    ogm = create("ogm-ge", tiny_encoders, tiny_config)
    ogm.model_ = ogm.build_model(None)
    ogm.start_training(None, tiny_config)
    batch = batch_of(synthetic["train"])

    def gradients(coefficients):
        ogm.model_.zero_grad()
        out = ogm.training_step(batch, epoch=0)
        ogm.coefficients_ = coefficients
        out["loss"].backward()
        return {m: [p.grad.clone() for p in ogm.model_.branches[m].encoder.parameters()] for m in "ab"}

    plain, damped = gradients({}), gradients({"a": 0.25})
    assert all(torch.equal(x, y) for x, y in zip(plain["b"], damped["b"])), "the other modality is untouched"
    assert not any(torch.allclose(x, y) for x, y in zip(plain["a"], damped["a"]))
    ogm.end_training()
    with pytest.raises(mm.errors.ConfigError, match="per-modality heads"):
        create("ogm-ge", tiny_encoders, tiny_config, fusion="concat")


def test_entropy_weights_are_per_row_not_per_batch():
    fusion = EntropyFusion(task="multiclass")
    confident, unsure = [8.0, 0.0, 0.0], [0.1, 0.0, 0.0]
    branches = {"a": torch.tensor([confident, unsure]), "b": torch.tensor([unsure, confident])}
    present = {m: torch.tensor([True, True]) for m in "ab"}
    weights = fusion.weights(branches, present)
    assert weights["a"][0] > 0.5 > weights["a"][1] and torch.allclose(weights["a"] + weights["b"], torch.ones(2))
    alone = fusion.weights({m: b[:1] for m, b in branches.items()}, {m: p[:1] for m, p in present.items()})
    assert torch.allclose(alone["a"], weights["a"][:1]), "a row's weight does not depend on the other rows"
    entropy = lambda z: float(-(z.softmax(-1) * z.log_softmax(-1)).sum())  # noqa: E731
    h = {m: entropy(branches[m][0]) for m in "ab"}
    expected = math.exp(math.log(3) - h["a"]) / sum(math.exp(math.log(3) - h[m]) for m in "ab")
    assert float(weights["a"][0]) == pytest.approx(expected, rel=1e-5)
    only_b = {"a": torch.tensor([False, False]), "b": torch.tensor([True, True])}
    assert torch.equal(fusion(branches, only_b), branches["b"]), "one modality present: its own logits"


def test_proxy_fills_only_absent_slots_from_the_other_modalities(tiny_encoders, synthetic, tiny_config, stage1):
    proxy = create("proxy", tiny_encoders, tiny_config)
    model = proxy.build_model(stage1)
    batch = batch_of(synthetic["train"], 8)
    present = {"a": torch.tensor([True] * 4 + [False] * 4), "b": torch.tensor([True, False] * 4)}
    with torch.no_grad():
        features = model.encode(batch.inputs, present)
        filled, predicted = model.fill(features, present), model.predict_features(features, present)
        for m in "ab":
            assert torch.equal(filled[m][present[m]], features[m][present[m]])
            assert torch.equal(filled[m][~present[m]], predicted[m][~present[m]])
        changed = {"a": features["a"] + 1.0, "b": features["b"]}  # a's own value never feeds a's proxy
        assert torch.equal(model.predict_features(changed, present)["a"], predicted["a"])
        garbage = {"a": torch.where(present["a"][:, None], features["a"], torch.full_like(features["a"], 1e3)), "b": features["b"]}
        assert torch.equal(model.predict_features(garbage, present)["b"], predicted["b"]), "absent sources read as tokens"


def test_missing_token_learns_the_vector_absent_slots_get(tiny_encoders, synthetic, tiny_config, stage1):
    method = create("missing-token", tiny_encoders, tiny_config).fit(synthetic["train"], synthetic["val"], stage1=stage1)
    fusion = method.model_.fusion
    assert fusion.missing == "learned" and all(float(fusion.fill[m].detach().abs().sum()) > 0 for m in "ab"), "trained"
    test = synthetic["test"]
    inputs = {m: torch.as_tensor(test.inputs[m]) for m in "ab"}
    present = {"a": torch.ones(len(test), dtype=torch.bool), "b": torch.zeros(len(test), dtype=torch.bool)}
    with torch.no_grad():
        features = method.model_.encode(inputs, present)
        by_hand = fusion.linear(torch.cat([features["a"], fusion.fill["b"].expand(len(test), -1)], dim=1))
    assert torch.allclose(method.proba_from_encoded(method.encode(inputs, present), present), by_hand.softmax(-1), atol=1e-6)


def test_ogm_ge_authors_modulated_update_is_the_coefficient_under_their_sgd_and_not_under_adam(tiny_encoders, synthetic,
                                                                                             tiny_config):
    """Issue 26: the coefficient must reach the weights. Under the authors' SGD (no noise, first
    step: no momentum yet) the damped kernels move by -lr (k g + wd w) instead of -lr (g + wd w);
    under Adam the first step is -lr g / |g| whatever the scale, so a constant coefficient is lost."""
    from mmrobust.methods.ogm_ge import kernels
    from mmrobust.train import make_optimizer

    ogm = create("ogm-ge-authors", tiny_encoders, tiny_config, noise=False)
    config = ogm.train_config
    assert (config.optimizer, config.momentum, config.weight_decay, config.schedule, config.step_size) == ("sgd", 0.9, 1e-4, "step", 3)
    batch = batch_of(synthetic["train"])

    def step(coefficients, optimiser_config):
        ogm.model_ = ogm.build_model(None)
        ogm.start_training(None, optimiser_config)
        out = ogm.training_step(batch, epoch=0)
        ogm.coefficients_ = coefficients
        out["loss"].backward()
        before = [p.detach().clone() for p in kernels(ogm.model_.branches["a"].encoder)]
        grads = [p.grad.clone() for p in kernels(ogm.model_.branches["a"].encoder)]
        make_optimizer(ogm.model_, optimiser_config).step()
        after = [p.detach().clone() for p in kernels(ogm.model_.branches["a"].encoder)]
        ogm.end_training()
        return before, grads, after

    w, g, plain = step({}, config)
    _, damped_g, damped = step({"a": 0.25}, config)
    lr, wd = config.lr, config.weight_decay
    for w_, g_, p_, gd_, d_ in zip(w, g, plain, damped_g, damped):
        assert torch.allclose(gd_, 0.25 * g_, atol=1e-7)
        assert torch.allclose(p_, w_ - lr * (g_ + wd * w_), atol=1e-7)
        assert torch.allclose(d_, w_ - lr * (0.25 * g_ + wd * w_), atol=1e-7)
    adam = replace(config, optimizer="adam", weight_decay=0.0)
    w, g, plain = step({}, adam)
    _, _, damped = step({"a": 0.25}, adam)
    for w_, g_, p_, d_ in zip(w, g, plain, damped):  # wherever the gradient is well above Adam's epsilon
        clear = g_.abs() > 1e-3
        assert clear.any() and torch.allclose((p_ - w_)[clear], (d_ - w_)[clear], atol=1e-6)


def test_ogm_ge_authors_scores_from_the_concat_slices_and_noises_every_encoder(tiny_encoders, synthetic, tiny_config):
    ogm = create("ogm-ge-authors", tiny_encoders, tiny_config)
    ogm.model_ = ogm.build_model(None)
    features = {m: torch.randn(5, ogm.model_.fusion.linear.in_features // 2) for m in "ab"}
    split = ogm.split_logits(features)
    full = ogm.model_.fusion({m: f for m, f in features.items()}, {m: torch.ones(5, dtype=torch.bool) for m in "ab"})
    assert torch.allclose(split["a"] + split["b"], full, atol=1e-5), "the two slices add up to the concat layer"
    w, b = ogm.model_.fusion.linear.weight, ogm.model_.fusion.linear.bias
    assert torch.allclose(split["b"], features["b"] @ w[:, w.shape[1] // 2:].T + b / 2, atol=1e-6)
    ogm.start_training(None, ogm.train_config)
    batch = batch_of(synthetic["train"])
    out = ogm.training_step(batch, epoch=0)
    ogm.coefficients_ = {"a": 0.5}
    out["loss"].backward()
    noisy = {m: [p.grad.clone() for p in kernels_of(ogm, m)] for m in "ab"}
    ogm.model_.zero_grad()
    ogm.modulating_ = False
    out = ogm.training_step(batch, epoch=10)  # past the modulated epochs: plain gradients
    out["loss"].backward()
    clean = {m: [p.grad.clone() for p in kernels_of(ogm, m)] for m in "ab"}
    assert all(not torch.allclose(x, y) for m in "ab" for x, y in zip(noisy[m], clean[m])), "noise on every encoder"
    biases = [p for m in "ab" for p in ogm.model_.branches[m].encoder.parameters() if p.dim() == 1]
    assert biases and all(id(p) not in {id(k) for m in "ab" for k in kernels_of(ogm, m)} for p in biases)
    ogm.end_training()
    with pytest.raises(mm.errors.ConfigError, match="fusion 'concat'"):
        create("ogm-ge-authors", tiny_encoders, tiny_config, fusion="mean")


def kernels_of(method, m):
    from mmrobust.methods.ogm_ge import kernels

    return kernels(method.model_.branches[m].encoder)


def test_umt_dropout_is_umt_trained_with_modality_dropout(tiny_encoders, synthetic, tiny_config):
    plain, dropped = create("umt", tiny_encoders, tiny_config), create("umt-dropout", tiny_encoders, tiny_config)
    assert type(plain) is type(dropped) and (plain.augment, dropped.augment) == (False, True)
    assert dropped.get_params()["feature_weight"] == plain.get_params()["feature_weight"] == 10.0
    batch = batch_of(synthetic["train"], rows=64)
    kept = {name: method.step_presence(batch, epoch=0)[0] for name, method in (("umt", plain), ("umt-dropout", dropped))}
    assert all(bool(p.all()) for p in kept["umt"].values())  # full rows stay full
    assert 0 < sum(int((~p).sum()) for p in kept["umt-dropout"].values()) < 64  # some slots dropped, never a whole row
    assert bool(torch.stack(list(kept["umt-dropout"].values())).any(dim=0).all())


def test_ogm_ge_authors_starts_from_their_initialisation(tiny_config):
    """Issue 38 (audit): their weight_init (Xavier-normal linear layers with zero biases,
    Kaiming-normal fan-out convolutions, BatchNorm 1 and 0), applied to the model before training,
    seeded; the other fused methods keep the project's paired initialisation."""
    encoders = {"a": mm.EncoderSpec("resnet18", frames=None), "b": mm.EncoderSpec("mlp", in_dim=64)}

    def started(seed):
        method = create("ogm-ge-authors", encoders, tiny_config)
        method.seed = seed
        method.model_ = method.build_model(None)
        method.start_training(None, method.train_config)
        return method.model_

    model = started(0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert linears and convolutions and norms
    for layer in linears:  # Xavier normal: std sqrt(2 / (fan_in + fan_out)); biases 0
        assert float(layer.bias.abs().max()) == 0.0
        expected = (2 / (layer.in_features + layer.out_features)) ** 0.5
        assert abs(float(layer.weight.std()) / expected - 1) < 0.15
    big = max(convolutions, key=lambda c: c.weight.numel())  # Kaiming normal, fan out: std sqrt(2 / (out * k * k))
    expected = (2 / (big.out_channels * big.kernel_size[0] * big.kernel_size[1])) ** 0.5
    assert abs(float(big.weight.std()) / expected - 1) < 0.05
    assert all(float((n.weight - 1).abs().max()) == 0 and float(n.bias.abs().max()) == 0 for n in norms)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), started(0).parameters()))  # seeded
    paired = create("late-fusion-concat", encoders, tiny_config).build_model(None)
    assert not torch.equal(linears[-1].weight, [m for m in paired.modules() if isinstance(m, torch.nn.Linear)][-1].weight)
