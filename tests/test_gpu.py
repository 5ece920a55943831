"""CUDA path: device choice, training and every presence pattern on the GPU (skipped without one)."""
import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.train import resolve_device

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


def test_experiment_on_cuda_matches_cpu_closely():
    data = mm.make_synthetic({"train": 400, "val": 100, "test": 200}, {"a": (1, 8, 8), "b": 6}, seed=0)
    encoders = {"a": mm.EncoderSpec("lenet-tiny", in_shape=(1, 8, 8)), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}
    runs = {}
    for device in ("cpu", "cuda"):
        config = mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device=device)
        runs[device] = mm.run_experiment(
            methods=["unimodal", "ume", "mma", "ume-mma", "late-fusion-concat", "late-fusion-dropout"],
            encoders=encoders, train=data["train"], val=data["val"], test=data["test"],
            protocols=["full", "miss:a", "miss:b", "sweep:a", "subsets"], seeds=[0], train_config=config).records
    for cpu, gpu in zip(runs["cpu"], runs["cuda"]):
        assert (cpu["method"], cpu["protocol"], cpu["rate"], cpu["n_scored"]) == (gpu["method"], gpu["protocol"], gpu["rate"], gpu["n_scored"])
        if cpu["value"] is None:
            assert gpu["value"] is None
        else:
            assert abs(cpu["value"] - gpu["value"]) < 0.05, (cpu, gpu)


def test_predict_on_cuda_with_missing_modalities():
    data = mm.make_synthetic({"train": 200, "val": 100, "test": 50}, {"a": 6, "b": 6}, seed=1)
    encoders = {m: mm.EncoderSpec("mlp-tiny", in_dim=6) for m in "ab"}
    model = mm.create_method("ume-mma", encoders=encoders, num_classes=4,
                             train_config=mm.TrainConfig(epochs=2, device="cuda")).fit(data["train"], data["val"])
    test = data["test"]
    for inputs in ({"a": test.inputs["a"]}, {"b": test.inputs["b"]}, test.inputs):
        proba = model.predict_proba(inputs)
        assert proba.shape == (50, 4) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_bf16_channels_last_pinned_training_on_cuda_matches_fp32_closely():
    data = mm.make_synthetic({"train": 300, "val": 100, "test": 100}, {"a": (1, 28, 28), "b": 6}, seed=1)
    encoders = {"a": mm.EncoderSpec("lenet-tiny"), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}
    scores = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        config = mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cuda", precision=precision,
                                channels_last=channels_last)
        method = mm.create_method("mma", encoders=encoders, num_classes=data["train"].num_classes, seed=0,
                                  train_config=config).fit(data["train"], data["val"])
        assert all(np.isfinite(h["train_loss"]) for h in method.history_)
        scores[precision] = method.score(data["test"])
    assert abs(scores["bf16"] - scores["fp32"]) < 0.08


def test_resnet18_pair_trains_a_step_on_cuda():
    rng = np.random.default_rng(0)
    data = mm.MultiModalDataset({"video": rng.integers(0, 256, (8, 2, 3, 112, 112), dtype=np.uint8),
                                 "audio": rng.normal(size=(8, 1, 129, 94)).astype(np.float32)}, rng.integers(0, 4, 8))
    config = mm.TrainConfig(epochs=1, batch_size=4, device="cuda", precision="bf16", channels_last=True)
    encoders = {"video": mm.EncoderSpec("resnet18"), "audio": mm.EncoderSpec("resnet18-spectrogram")}
    method = mm.create_method("late-fusion-dropout", encoders=encoders, num_classes=4, seed=0, train_config=config)
    method.fit(data, None)
    assert np.isfinite(method.history_[0]["train_loss"])
    assert method.predict_proba({"video": data.inputs["video"], "audio": None}).shape == (8, 4)
