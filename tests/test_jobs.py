"""Issue 29: independent seeds in worker processes (``--jobs``), with the records of one process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from safetensors import safe_open

from mmrobust.cli import main

RECORDS = ("results.jsonl", "fits.json", "evidence.jsonl", "reliability.json")


def _tensors(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_two_jobs_give_the_records_of_one(tmp_path, capsys):
    """The same run with --jobs 2 and --jobs 1: byte-identical records, masks and weights
    (only the time each epoch took differs in a model's metadata)."""
    args = ["run", "--config", "tiny", "--seeds", "0", "1", "--threads", "1", "--device", "cpu",
            "--set", "methods=[unimodal, late-fusion, ume, mma, ume-mma]"]
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert "training seeds [0, 1] in 2 worker processes" in capsys.readouterr().err
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert "worker processes" not in capsys.readouterr().err
    one, two = tmp_path / "one", tmp_path / "two"
    for name in RECORDS + ("masks/seed0.npz", "masks/seed1.npz", "model/calibration.json", "model/gate.safetensors"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    models = sorted(p.relative_to(one) for p in (one / "models").rglob("*.safetensors"))
    assert models == sorted(p.relative_to(two) for p in (two / "models").rglob("*.safetensors"))
    assert {f"models/seed{s}/{n}.safetensors" for s in (0, 1) for n in ("stage1-audio", "mma", "ume-mma")} <= set(map(str, models))
    for model in models:
        a, b = _tensors(one / model), _tensors(two / model)
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), model
    stages = [s["stage"] for s in __import__("json").loads((two / "provenance.json").read_text())["stages"]]
    assert "seed1/stage1" in stages and "seed1/evaluate/ume-mma" in stages, "the workers' stages reach provenance"
    assert [line for line in (one / "report.md").read_text().splitlines() if "ume-mma" in line][:3] == \
        [line for line in (two / "report.md").read_text().splitlines() if "ume-mma" in line][:3]


def test_a_worker_dies_with_the_run(tmp_path):
    """kill -9 of the run leaves no worker writing its folder (a resume may start at once)."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        from mmrobust.pipeline import in_workers, new_pool

        def task(run_dir, seed):
            Path(run_dir, f"pid{seed}").write_text(str(os.getpid()))
            time.sleep(120)

        if __name__ == "__main__":
            with new_pool(2) as pool:
                in_workers(pool, task, Path(sys.argv[1]), [(0,), (1,)])
    """))
    run = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    pids = [tmp_path / "pid0", tmp_path / "pid1"]
    deadline = time.monotonic() + 60
    while not all(p.is_file() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.read_text()) for p in pids]
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # leave no orphan behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_jobs_is_how_fast_not_what_so_it_is_not_in_the_fingerprint():
    """A run may resume with other jobs (the records do not depend on them); 0 jobs is refused."""
    import pytest

    from mmrobust.config import config_differences, config_sha256, config_to_dict, load_config
    from mmrobust.errors import ConfigError
    from mmrobust.runtime import resolve_jobs

    one, four = load_config("tiny", ["train.jobs=1"]), load_config("tiny", ["train.jobs=4"])
    assert config_sha256(one) == config_sha256(four) == config_sha256(load_config("tiny", []))
    assert config_sha256(one) != config_sha256(load_config("tiny", ["train.threads=3"]))
    assert config_differences(config_to_dict(one), config_to_dict(four)) == []
    with pytest.raises(ConfigError, match="jobs must be >= 1"):
        load_config("tiny", ["train.jobs=0"])
    cores = len(os.sched_getaffinity(0))
    assert resolve_jobs(None, 1) == cores and resolve_jobs(None, cores) == 1 and resolve_jobs(3, 1) == 3
    assert resolve_jobs(None, 1, "cuda:0") == 1


def test_a_worker_writes_its_seed_and_never_the_runs_shared_files(tmp_path):
    """Two workers writing fits.json, results.jsonl or provenance.json would clobber each other:
    those are the parent's, written from what the workers return."""
    from mmrobust.pipeline import WorkerStore

    store = WorkerStore(tmp_path)
    store.fits([{"method": "ume", "seed": 1}])
    store.records([{"method": "ume", "seed": 1, "value": 0.5}])
    store.evidence([{"method": "ume"}], [])
    assert list(tmp_path.iterdir()) == []


def test_kill_9_of_a_run_with_workers_then_resume_gives_the_records_of_one_process(tmp_path, capsys):
    """A run with two workers, killed (-9) as soon as its first model is saved, then resumed with
    two workers: the records of an uninterrupted one-process run (the workers died with it, so
    nothing else wrote the folder meanwhile)."""
    args = ["--config", "tiny", "--seeds", "0", "1", "--threads", "1", "--device", "cpu",
            "--set", "methods=[unimodal, ume, mma, ume-mma]", "--set", "train.epochs=2"]
    assert main(["run", *args, "--jobs", "1", "--out", str(tmp_path / "clean")]) == 0
    cut = tmp_path / "cut"
    run = subprocess.Popen([sys.executable, "-m", "mmrobust", "run", *args, "--jobs", "2", "--out", str(cut)],
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(cut.glob("models/seed*/*.safetensors")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert not (cut / "results.jsonl").exists(), "killed before the end"
    capsys.readouterr()
    assert main(["run", "--resume", str(cut), "--jobs", "2"]) == 0
    for name in RECORDS:
        assert (cut / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def _die(run_dir: str, seed: int) -> None:
    """A worker's task that gets killed, as the system's out-of-memory killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_by_the_system_is_one_error_saying_how_to_go_on(tmp_path):
    import pytest

    from mmrobust.errors import WorkerError
    from mmrobust.pipeline import in_workers, new_pool

    with new_pool(1) as pool, pytest.raises(WorkerError, match=r"a worker process died during die .*--resume"):
        in_workers(pool, _die, tmp_path, [(0,)])


def test_stage1_trains_beside_the_methods_trained_from_scratch_and_each_wave_needs_only_earlier_ones():
    import mmrobust as mm
    from mmrobust.experiment import Experiment

    data = mm.make_synthetic({"train": 40, "val": 20, "test": 20}, {"a": 3, "b": 3}, seed=0)
    encoders = {m: mm.EncoderSpec("mlp-tiny", in_dim=3) for m in ("a", "b")}
    experiment = Experiment(methods=["unimodal", "late-fusion", "late-fusion-unimodal-init", "ume", "mma", "ume-mma"],
                            encoders=encoders, train=data["train"], val=data["val"], test=data["test"], seeds=[0],
                            train_config=mm.TrainConfig(epochs=1, device="cpu", progress=False))
    assert experiment.training_waves(0) == [
        [["unimodal:a", "unimodal:b"], ["late-fusion"]],  # Stage 1 (with the references) first, then from scratch
        [["late-fusion-unimodal-init"], ["ume"], ["mma"], ["ume-weighted"]],  # what needs Stage 1 (and UME-MMA's candidate)
        [["ume-mma"]],  # what needs those
    ]
