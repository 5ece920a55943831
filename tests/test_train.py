import json

import numpy as np
import pytest
import torch
from torch import nn

import mmrobust as mm
from mmrobust.train import epoch_batches, train_module


def setup(n=64):
    data = mm.MultiModalDataset({"a": np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)},
                                np.arange(n) % 2)
    model = nn.Linear(3, 2)

    def step(batch, epoch):
        logits = model(batch.inputs["a"])
        return {"loss": nn.functional.cross_entropy(logits, batch.target), "logits": logits}

    return data, model, step


def test_keeps_the_best_epoch_and_logs_json_lines(tmp_path):
    data, model, step = setup()
    scores = iter([0.1, 0.9, 0.2, 0.3])
    states = []

    def validate():
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    history = train_module(model, step, data, mm.TrainConfig(epochs=4, device="cpu"), seed=0, validate=validate,
                           log_path=tmp_path / "log.jsonl")
    assert [h["selected"] for h in history] == [False, True, False, False]
    assert all(torch.equal(v, states[1][k]) for k, v in model.state_dict().items())
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3] and lines[1]["val_score"] == 0.9


def test_early_stopping():
    data, model, step = setup()
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    history = train_module(model, step, data, mm.TrainConfig(epochs=5, patience=2, device="cpu"), seed=0,
                           validate=lambda: next(scores))
    assert len(history) == 3


def test_does_not_disturb_the_callers_random_state():
    data, model, step = setup()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_module(model, step, data, mm.TrainConfig(epochs=1, device="cpu"), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_batches_are_a_pure_function_of_seed_and_epoch():
    a, b = epoch_batches(50, 16, 0, 3), epoch_batches(50, 16, 0, 3)
    assert all((x == y).all() for x, y in zip(a, b)) and [len(x) for x in a] == [16, 16, 16, 2]
    assert sorted(np.concatenate(a).tolist()) == list(range(50))
    assert not (np.concatenate(a) == np.concatenate(epoch_batches(50, 16, 0, 4))).all()


@pytest.mark.parametrize("kwargs", [dict(optimizer="rmsprop"), dict(schedule="poly"), dict(lr=0)])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        mm.TrainConfig(**kwargs)


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "step"), ("adamw", "cosine")])
def test_optimisers_and_schedules(optimizer, schedule):
    data, model, step = setup()
    history = train_module(model, step, data, mm.TrainConfig(epochs=3, optimizer=optimizer, schedule=schedule,
                                                             step_size=1, gamma=0.5, lr=0.1, device="cpu"), seed=0)
    lrs = [h["lr"] for h in history]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < lrs[0]


def test_finetune_settings():
    config = mm.TrainConfig(epochs=5, lr=1e-3).scaled(0.1, 0.5)
    assert config.epochs == 3 and config.lr == pytest.approx(1e-4)


def test_bf16_and_channels_last_train_a_cnn():
    from mmrobust.train import TrainConfig, prepare_module

    rng = np.random.default_rng(0)
    data = mm.MultiModalDataset({"image": rng.normal(size=(64, 1, 28, 28)).astype(np.float32)}, rng.integers(0, 3, 64))
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", precision="bf16", channels_last=True)
    method = mm.create_method("unimodal", encoders={"image": mm.EncoderSpec("lenet-tiny")}, num_classes=3,
                              modality="image", train_config=config).fit(data, data)
    losses = [h["train_loss"] for h in method.history_]
    assert len(losses) == 2 and all(np.isfinite(losses))
    conv = next(m for m in method.model_.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    assert prepare_module(torch.nn.Linear(2, 2), TrainConfig(), torch.device("cpu")).weight.device.type == "cpu"


@pytest.mark.slow
def test_compiled_encoders_train():
    from mmrobust.train import TrainConfig

    rng = np.random.default_rng(0)
    data = mm.MultiModalDataset({"a": rng.normal(size=(40, 6)).astype(np.float32)}, rng.integers(0, 2, 40))
    config = TrainConfig(epochs=1, batch_size=16, device="cpu", compile=True)
    method = mm.create_method("unimodal", encoders={"a": mm.EncoderSpec("mlp-tiny", in_dim=6)}, num_classes=2,
                              modality="a", train_config=config).fit(data, data)
    assert np.isfinite(method.history_[0]["train_loss"])
