import json

from mmrobust.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet", "ume-mma", "late-fusion-dropout", "sweep:<m>", "synthetic"):
        assert name in out


def test_run_in_process(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["run", "--seeds", "0", "--epochs", "2", "--methods", "unimodal", "ume", "mma", "--device", "cpu",
                 "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "ume" in printed and str(out_dir / "results.jsonl") in printed
    records = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"unimodal:a", "unimodal:b", "ume", "mma"}
    assert main(["run", "--out", str(out_dir)]) == 2, "an existing run folder is never overwritten"
