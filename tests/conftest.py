import os

import pytest
import torch

import mmrobust as mm

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # pre-trained weights come from installed packages, never the network


@pytest.fixture
def tiny_config():
    return mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu")


@pytest.fixture(scope="session")
def synthetic():
    return mm.make_synthetic({"train": 240, "val": 80, "test": 120}, {"a": 6, "b": 6}, noise=1.0, seed=0)


@pytest.fixture
def tiny_encoders():
    return {"a": mm.EncoderSpec("mlp-tiny", in_dim=6), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}


@pytest.fixture(scope="session")
def paper_run_dir(tmp_path_factory):
    """A tiny `mmrobust run` of the paper's methods on the embedded digits (read, never modified)."""
    from mmrobust.cli import main

    out = tmp_path_factory.mktemp("paper-run") / "run"
    args = ["--config", "tiny", "--set", "train.device=cpu", "--set", "methods=[unimodal, ume, mma, ume-mma]"]
    assert main(["run", *args, "--out", str(out)]) == 0
    return out
