"""Checkpoints every epoch and resume: an interrupted run ends exactly as an uninterrupted one."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import mmrobust as mm
from mmrobust.cli import main
from mmrobust.records import read_jsonl
from mmrobust.train import TrainConfig, train_module


class Interrupt(Exception):
    pass


def _fit(data, checkpoint_dir, log_path, fail_at=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    seen = {"batches": 0}

    def step(batch, epoch):
        seen["batches"] += 1
        if fail_at is not None and seen["batches"] == fail_at:
            raise Interrupt  # the middle of an epoch
        logits = model(batch.inputs["a"].float())
        return {"loss": nn.functional.cross_entropy(logits, batch.target), "logits": logits}

    val = data["val"]

    def validate():
        with torch.no_grad():
            return float((model(torch.as_tensor(val.inputs["a"]).float()).argmax(1) == val.target).float().mean())

    config = TrainConfig(epochs=7, batch_size=32, lr=3e-3, optimizer="sgd", schedule="step", step_size=2, patience=4,
                         device="cpu")  # exact equality is promised on the CPU (GPU kernels may be non-deterministic)
    history = train_module(model, step, data["train"], config, seed=5, validate=validate, log_path=log_path,
                           checkpoint_dir=checkpoint_dir)
    return model, history


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(synthetic, tmp_path):
    clean, clean_history = _fit(synthetic, tmp_path / "clean", tmp_path / "clean.jsonl")
    with pytest.raises(Interrupt):
        _fit(synthetic, tmp_path / "cut", tmp_path / "cut.jsonl", fail_at=8 * 3 + 4)  # epoch 3, batch 5
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["epoch-0001", "epoch-0002"]  # the last two complete epochs
    resumed, resumed_history = _fit(synthetic, tmp_path / "cut", tmp_path / "cut.jsonl")
    for a, b in zip(clean.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert _strip(resumed_history) == _strip(clean_history)
    logged = [json.loads(line) for line in (tmp_path / "cut.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [r["epoch"] for r in clean_history]  # no epoch logged twice


KILL_IN_MMA = textwrap.dedent("""
    import os, signal, sys
    import mmrobust.train as train
    original = train._train_epoch
    def killing(module, step, data, optimizer, config, device, seed, epoch):
        def step_then_kill(batch, e, calls=[0]):
            calls[0] += 1
            if type(module).__name__ == "LateFusionClassifier" and e == 1 and calls[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(batch, e)
        return original(module, step_then_kill, data, optimizer, config, device, seed, epoch)
    train._train_epoch = killing
    from mmrobust.cli import main
    sys.exit(main(sys.argv[1:]))
""")

ARGS = ["--config", "tiny", "--set", "train.epochs=3", "--set", "methods=[unimodal, ume, mma, ume-mma]",
        "--set", "train.device=cpu"]


def test_sigkill_mid_epoch_then_resume_gives_the_same_results(tmp_path, monkeypatch):
    assert main(["run", *ARGS, "--out", str(tmp_path / "clean")]) == 0
    killed = subprocess.run([sys.executable, "-c", KILL_IN_MMA, "run", *ARGS, "--out", str(tmp_path / "cut")],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    saved = sorted(p.name for p in (tmp_path / "cut" / "models" / "seed0").iterdir())
    assert saved == sorted(["stage1-audio.safetensors", "stage1-image.safetensors", "unimodal-audio.safetensors",
                            "unimodal-image.safetensors", "ume.safetensors"])
    assert [p.name for p in (tmp_path / "cut" / "checkpoints" / "seed0" / "mma").iterdir()] == ["epoch-0000"]

    def no_stage1(*args, **kwargs):
        raise AssertionError("Stage 1 was trained again although it was saved")

    monkeypatch.setattr(mm.experiment, "train_stage1", no_stage1)
    assert main(["run", "--resume", str(tmp_path / "cut")]) == 0
    cut, clean = (read_jsonl(tmp_path / name / "results.jsonl") for name in ("cut", "clean"))
    # accuracies identical; calibration metrics close: a model reloaded from its file may sum in
    # another order than the one in memory (float32 rounding), and this near-chance tiny model's
    # likelihood is flat in the temperature, which amplifies that
    assert [r for r in cut if r["metric"] == "accuracy"] == [r for r in clean if r["metric"] == "accuracy"]
    assert [{**r, "value": None} for r in cut] == [{**r, "value": None} for r in clean]
    assert all((a["value"] is None) == (b["value"] is None) for a, b in zip(cut, clean))
    assert [r["value"] for r in cut if r["value"] is not None] == pytest.approx(
        [r["value"] for r in clean if r["value"] is not None], rel=2e-2, abs=1e-6)
    assert not (tmp_path / "cut" / "checkpoints").exists()


def test_resume_refuses_a_different_config(tmp_path, capsys):
    assert main(["train", *ARGS, "--out", str(tmp_path / "run")]) == 0
    assert main(["run", "--resume", str(tmp_path / "run"), *ARGS[:-2], "--set", "train.epochs=4"]) == 2
    assert "train.epochs: 3 -> 4" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "run"), *ARGS]) == 0  # the same config is fine


def test_a_truncated_checkpoint_falls_back_to_the_epoch_before_or_says_what_to_delete(synthetic, tmp_path):
    """Issue 17: a damaged epoch checkpoint is not a dead end. Issue 28: the fallback to the epoch
    before could never happen (each save deleted the older epochs); the one before is now kept."""
    import shutil

    from mmrobust.errors import ModelFileError

    clean, _ = _fit(synthetic, tmp_path / "clean", tmp_path / "clean.jsonl")
    for cut in ("cut", "cut-both"):
        with pytest.raises(Interrupt):
            _fit(synthetic, tmp_path / cut, tmp_path / f"{cut}.jsonl", fail_at=8 * 3 + 4)
        assert sorted(p.name for p in (tmp_path / cut).iterdir()) == ["epoch-0001", "epoch-0002"]
    weights = tmp_path / "cut" / "epoch-0002" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: epoch 1 takes over, and the run ends the same
    with pytest.warns(UserWarning, match="epoch-0002: not a readable checkpoint"):
        resumed, _ = _fit(synthetic, tmp_path / "cut", tmp_path / "cut.jsonl")
    assert all(torch.equal(a, b) for a, b in zip(clean.state_dict().values(), resumed.state_dict().values()))
    for epoch in ("epoch-0001", "epoch-0002"):
        weights = tmp_path / "cut-both" / epoch / "weights.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.warns(UserWarning, match="not a readable checkpoint"), \
            pytest.raises(ModelFileError, match=r"cut-both: no readable epoch checkpoint .*delete that folder to train this stage again"):
        _fit(synthetic, tmp_path / "cut-both", tmp_path / "cut-both.jsonl")
    shutil.rmtree(tmp_path / "cut-both")
    (tmp_path / "cut-both.jsonl").unlink()
    again, _ = _fit(synthetic, tmp_path / "cut-both", tmp_path / "cut-both.jsonl")
    assert all(torch.equal(a, b) for a, b in zip(clean.state_dict().values(), again.state_dict().values()))


def test_a_full_disk_while_checkpointing_says_so_and_keeps_the_earlier_epochs(synthetic, tmp_path, monkeypatch):
    import errno

    from mmrobust import train as train_module

    calls = {"n": 0}
    real = train_module.save_file

    def save_file(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third epoch's checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_file", save_file)
    with pytest.raises(OSError, match=r"the disk is full while saving the checkpoint of epoch 2; the earlier checkpoints "
                                      r"are kept: free some space, then resume"):
        _fit(synthetic, tmp_path / "full", tmp_path / "full.jsonl")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["epoch-0000", "epoch-0001"]  # no temporary left
    monkeypatch.setattr(train_module, "save_file", real)
    clean, _ = _fit(synthetic, tmp_path / "clean", tmp_path / "clean.jsonl")
    resumed, _ = _fit(synthetic, tmp_path / "full", tmp_path / "full.jsonl")
    assert all(torch.equal(a, b) for a, b in zip(clean.state_dict().values(), resumed.state_dict().values()))
