import json
from pathlib import Path

import pytest

from mmrobust.cli import main
from mmrobust.config import load_config
from mmrobust.errors import ConfigError

SMALL = ["--config", "tiny", "--set", "data.limit=120", "--set", "methods=[unimodal, ume, mma, ume-mma]", "--device", "cpu"]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet", "ume-mma", "late-fusion-dropout", "sweep:<m>", "digits", "tiny"):
        assert name in out


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_then_steps_agree(tmp_path, capsys):
    """`run` in process; then `train` + `evaluate` + `report` in steps give the same records."""
    whole, steps = tmp_path / "whole", tmp_path / "steps"
    assert main(["run", *SMALL, "--out", str(whole)]) == 0
    assert f"report: {whole / 'report.md'}" in capsys.readouterr().out
    for name in ("config.yaml", "provenance.json", "fits.json", "results.jsonl", "report.md", "robustness.png",
                 "masks/seed0.npz", "models/seed0/mma.safetensors", "metrics/seed0/mma.jsonl",
                 "models/seed0/unimodal-audio.safetensors"):
        assert (whole / name).is_file(), name
    provenance = json.loads((whole / "provenance.json").read_text())
    assert {"seed0/stage1", "seed0/mma", "seed0/evaluate/mma"} <= {s["stage"] for s in provenance["stages"]}
    assert provenance["environment"]["packages"]["torch"]
    assert main(["train", *SMALL, "--out", str(steps)]) == 0
    assert main(["evaluate", str(steps)]) == 0
    assert main(["report", str(steps)]) == 0
    assert read(steps / "results.jsonl") == read(whole / "results.jsonl")
    assert "ume-mma" in (steps / "report.md").read_text()


def test_errors_are_one_line_and_nothing_is_overwritten(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert main(["run", "--config", "tiny", "--out", str(tmp_path / "used")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    assert main(["run", "--config", "tiny", "--set", "train.epoch=2", "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, capsys):
    """An unavailable device, a missing manifest or an unknown method: one line, no stub folder."""
    import torch

    if not torch.cuda.is_available():
        assert main(["run", "--config", "tiny", "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
        err = capsys.readouterr().err
        assert "device 'cuda': this machine has 0 CUDA device(s)" in err and "Traceback" not in err
        assert not (tmp_path / "gpu").exists()
    assert main(["run", "--manifest", str(tmp_path / "absent.csv"), "--label", "y", "--out", str(tmp_path / "m")]) == 2
    assert "absent.csv" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["train", "--config", "tiny", "--set", "methods=[nope]", "--out", str(tmp_path / "n")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "n").exists()


def test_threads_setting_reaches_training_and_provenance(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    assert main(["run", *SMALL, "--threads", "2", "--out", str(tmp_path / "run")]) == 0
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["environment"]["torch_threads"] == 2 and torch.get_num_threads() == before
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # the CPU that made the records, as the kernel names it, and torch's instruction set
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        assert names and provenance["environment"]["cpu_model"].startswith(names[0])
    assert provenance["environment"]["cpu_capability"] in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR", "SVE256"}
    assert provenance["stages"][0]["stage"].startswith("data: ")  # extraction counts in the time totals
    err = capsys.readouterr().err
    # a plain line per finished stage, with the run's progress (no bar control characters when not a terminal)
    assert "1/7 stages" in err and "of training left" in err and "\r" not in err
    assert main(["run", *SMALL, "--threads", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "threads must be >= 1" in capsys.readouterr().err


def test_an_empty_prediction_manifest_is_an_error(tmp_path, capsys):
    assert main(["run", *SMALL, "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "rows.csv").write_text("id,image,audio\n")
    assert main(["predict", str(tmp_path / "run" / "model"), "--manifest", str(tmp_path / "rows.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "no rows to predict" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_configuration_errors_are_one_line_and_early(tmp_path, capsys):
    """Issue 17: tracebacks turned into one line, and checks moved before any folder exists."""
    cases = [
        (["--set", "seeds=[0"], "--set seeds=[0: the value is not valid YAML"),
        (["--set", "seeds=!!python/object/apply:os.system ['echo hi']"], "not valid YAML"),
        (["--set", "seeds=[]"], "seeds: give at least one training seed"),
        (["--set", "method_options={mma: {p_drop: 1.5}}"], "p_drop must be a probability in [0, 1), got 1.5"),
        (["--set", "protocols=[miss:video]"], "video"),
        (["--set", "method_options={mma: {nope: 1}}"], "nope"),
    ]
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        assert main(["run", "--config", "tiny", *extra, "--out", str(out)]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not out.exists(), extra


def test_out_that_is_a_file_or_a_run(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["run", "--config", "tiny", "--out", str(tmp_path / "file")]) == 2
    assert "a file, not a folder" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seeds: [0]\n")
    assert main(["run", "--config", "tiny", "--out", str(tmp_path / "run")]) == 2
    assert f"mmrobust run --resume {tmp_path / 'run'}" in capsys.readouterr().err


def test_a_run_folder_with_a_broken_config_is_named(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seeds: [0\n")
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "config.yaml: not valid YAML" in err and "Traceback" not in err


def test_a_hand_edited_run_config_is_refused_on_resume_and_evaluate(tmp_path, capsys):
    import yaml

    run = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(run)]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"], config["train"]["lr"] = 6, 0.05
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    for command in (["run", "--resume", str(run)], ["evaluate", str(run)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "config.yaml: changed since the run was created" in err and "train.epochs: 1 -> 6" in err, err
        assert "train.lr: " in err and "-> 0.05" in err
    # issue 28: without its fingerprint a folder trained with a hand-edited config; now refused
    provenance = json.loads((run / "provenance.json").read_text())
    del provenance["config_sha256"]
    (run / "provenance.json").write_text(json.dumps(provenance))
    for command in (["run", "--resume", str(run)], ["evaluate", str(run)]):
        assert main(command) == 2
        assert "provenance.json: no config_sha256" in capsys.readouterr().err


def test_a_run_folder_is_locked_while_a_process_writes_it(tmp_path, capsys):
    """Issue 28: two processes could --resume (or evaluate) one folder at once, both writing.
    The lock is the OS's: a holder killed with SIGKILL leaves a file, not a lock."""
    import signal
    import subprocess
    import sys

    from mmrobust.pipeline import run_lock

    run = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(run)]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from mmrobust.pipeline import run_lock; lock = run_lock(Path(sys.argv[1])); "
                               "lock.__enter__(); print('locked', flush=True); time.sleep(120)", str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        for command in (["run", "--resume", str(run)], ["evaluate", str(run)], ["train", "--resume", str(run)]):
            assert main(command) == 2
            assert f"mmrobust (pid {holder.pid}) is writing this run folder" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / ".lock").is_file()  # left behind by the killed holder, and not a lock
    with run_lock(run):
        pass
    assert main(["evaluate", str(run)]) == 0
    (run / ".reliability.png.x1y2.tmp").write_bytes(b"half a png")  # a kill during the report left it
    assert main(["run", "--resume", str(run)]) == 0 and not list(run.glob(".*.tmp"))


def test_a_config_error_is_said_before_torch_is_imported(tmp_path):
    """Issue 28: a config error took 6-20 s because `run` imported torch before reading the config."""
    import subprocess
    import sys

    code = ("import sys; from mmrobust.cli import main; "
            f"rc = main(['run', '--set', 'train.epochs=zero', '--out', {str(tmp_path / 'run')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"] and "train.epochs' expects int, got 'zero'" in out.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="train.epochs=0 trains nothing"):  # it ran, exit 0, untrained models
        load_config("tiny", ["train.epochs=0"])
