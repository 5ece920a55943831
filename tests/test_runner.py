"""One runner for the library and the CLI; composite methods reload exactly the parts they were
fitted with; the report's side of the house imports no torch."""
import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mmrobust as mm
from mmrobust import pipeline
from mmrobust.cli import main
from mmrobust.config import load_config
from mmrobust.predictor import Predictor
from mmrobust.records import read_jsonl

TINY = ["train.device=cpu", "methods=[unimodal, ume, mma, ume-mma]"]
SRC = Path(mm.__file__).parent


def quiet(message):
    pass


def canonical(rows):
    return [json.loads(json.dumps(r, sort_keys=True, default=str)) for r in rows]


def test_library_and_cli_give_identical_records(tmp_path):
    assert main(["run", "--config", "tiny", *sum((["--set", s] for s in TINY), []), "--out", str(tmp_path / "cli")]) == 0
    config = load_config("tiny", TINY)
    splits = pipeline.load_data(config)
    results = mm.run_experiment(methods=config.methods, encoders=pipeline.resolve_encoders(config, splits),
                                train=splits.train, val=splits.val, test=splits.test, protocols=config.protocols,
                                seeds=config.seeds, train_config=config.train, method_options=config.method_options,
                                train_missing=config.train_missing, dataset=config.data.name, input_specs=splits.inputs)
    assert canonical(results.records) == read_jsonl(tmp_path / "cli" / "results.jsonl")
    assert canonical(results.fits) == json.loads((tmp_path / "cli" / "fits.json").read_text())


@pytest.mark.parametrize("options", ["{mma: {fusion: concat}}", "{ume: {average: probs}}"])
def test_ume_mma_reloads_the_parts_it_was_fitted_with(options, tmp_path):
    """Run, evaluate from the folder, resume and Predictor.load give identical predictions."""
    run_dir = pipeline.create_run_dir(load_config("tiny", [*TINY, f"method_options={options}"]), tmp_path / "run")
    fitted = pipeline.train_run(run_dir, quiet)
    in_memory = pipeline.evaluate_run(run_dir, fitted, quiet)
    assert canonical(pipeline.evaluate_run(run_dir, None, quiet)) == canonical(in_memory), "models reloaded from files"
    assert main(["evaluate", str(run_dir)]) == 0
    pipeline.write_report(run_dir)
    pipeline.write_model(run_dir, fitted, quiet)
    method = fitted[0]["ume-mma"]
    predictor = Predictor.load(run_dir / "model")
    test = pipeline.load_data(pipeline.read_config(run_dir)).test
    for keep in (("audio", "image"), ("image",), ("audio",)):
        inputs = {m: np.asarray(test.inputs[m]) if m in keep else None for m in ("audio", "image")}
        assert np.array_equal(predictor.method.predict_proba(inputs), method.predict_proba(inputs)), keep
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    for done in ("models/seed0/ume-mma.safetensors", "results.jsonl", "model", "report.md"):
        shutil.rmtree(resumed / done) if (resumed / done).is_dir() else (resumed / done).unlink()
    assert main(["run", "--resume", str(resumed)]) == 0
    assert read_jsonl(resumed / "results.jsonl") == canonical(in_memory)


def _module_imports(path: Path) -> set[str]:
    """The package modules (and outside packages) a module imports at its top level."""
    tree, package = ast.parse(path.read_text()), path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            out |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return out


@pytest.mark.parametrize("module", ["records", "report", "protocols"])
def test_reporting_modules_import_no_torch_and_no_runner(module):
    seen, todo = set(), [f"mmrobust.{module}"]
    while todo:
        name = todo.pop()
        path = SRC.parent / (name.replace(".", "/") + ".py")
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        todo += [m for m in _module_imports(path) if m.startswith("mmrobust.")]
        outside = {m.split(".")[0] for m in _module_imports(path) if not m.startswith("mmrobust")}
        assert "torch" not in outside, f"{name} imports torch"
    assert not {"mmrobust.experiment", "mmrobust.evaluation", "mmrobust.train"} & seen
    assert not any(name.startswith("mmrobust.methods") for name in seen)


@pytest.mark.parametrize("change, message", [
    ({"protocols": ["miss:zzz"]}, "unknown modality 'zzz'"),
    ({"method_options": {"mma": {"fusion": "nope"}}}, "unknown fusion 'nope'"),
    ({"method_options": {"mma": {"pdrop": 0.3}}}, "unexpected keyword argument 'pdrop'; check method_options.mma"),
])
def test_a_bad_protocol_or_option_is_refused_before_anything_trains(change, message, synthetic, tiny_encoders,
                                                                    tiny_config, monkeypatch):
    monkeypatch.setattr(mm.experiment, "train_stage1", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(mm.errors.MMRobustError, match=message):
        mm.run_experiment(methods=["unimodal", "mma"], encoders=tiny_encoders, train=synthetic["train"],
                          val=synthetic["val"], test=synthetic["test"], train_config=tiny_config, **change)
