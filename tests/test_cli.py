import json


from mmrobust.cli import main

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
