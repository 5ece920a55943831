"""Data parallel training with torchrun on gloo: two processes give the losses and weights of
one process on the same global batches, and the whole pipeline runs under it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU, also on a machine with GPUs
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_two_gloo_ranks_match_one_process(tmp_path):
    single = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "one.json")],
                            capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = torchrun(str(HERE / "ddp_worker.py"), str(tmp_path / "two.json"), cwd=tmp_path)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["world"] == 1 and two["world"] == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=1e-5)
    for key, value in one["state"].items():
        np.testing.assert_allclose(two["state"][key], value, rtol=0, atol=1e-5, err_msg=key)


def test_the_pipeline_runs_under_torchrun(tmp_path):
    out = tmp_path / "run"
    done = torchrun("-m", "mmrobust", "run", "--config", "tiny", "--out", str(out), "--set", "train.device=cpu",
                    "--set", "methods=[unimodal, ume, mma, ume-mma]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file() and not (out / "checkpoints").exists()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = [(r["method"], r["seed"], r["protocol"], r["rate"], r["pattern"], r["metric"]) for r in records]
    assert len(keys) == len(set(keys))  # written once, by rank 0
    assert {r["method"] for r in records} == {"unimodal:image", "unimodal:audio", "ume", "ume-weighted", "mma", "ume-mma"}
