"""The application layer behind the CLI: a run folder, and the pipeline in steps on it.

    train    -> config.yaml, models/seed<k>/<method>.safetensors, fits.json, metrics/, provenance.json
    evaluate -> masks/seed<k>.npz, results.jsonl
    report   -> report.md, robustness.png
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import yaml

from .errors import ConfigError, DataError
from . import distributed
from .checkpoint import load_method, save_method
from .config import RunConfig, config_from_dict, config_to_dict
from .data import DATASETS, Splits
from .encoders import EncoderSpec
from .experiment import (apply_training_missing, check_compatible, create_methods, default_protocols,
                         evaluate_methods, expand_methods, fit_methods, fit_records, seed_masks)
from .files import file_name, write_json, write_jsonl, write_text
from .methods import Method
from .inputs import default_spec
from .predictor import Predictor
from .provenance import environment
from .records import main_table, read_jsonl
from .report import write_report
from .runtime import resolve_device
from .train import stage_checkpoints
from .validate import validate_splits

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{config.data.name}"


def create_run_dir(config: RunConfig, out: Path | None) -> Path:
    """A new run folder holding the resolved config; an existing non-empty folder is refused.
    Under torchrun rank 0 creates it and every rank gets its path."""
    run_dir = distributed.broadcast(Path(out) if out is not None else default_run_dir(config))
    if distributed.is_main():
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir}: the run folder already exists and is not empty; choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    distributed.barrier()
    return run_dir


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def load_data(config: RunConfig) -> Splits:
    """The dataset, every row validated before anything trains (``data.on_bad_input``)."""
    options = dict(config.data.options)
    if config.data.root is not None:
        options["root"] = config.data.root
    factory = DATASETS.get(config.data.name)
    if "on_bad_input" in inspect.signature(factory).parameters:  # loaders that read files decide per cell
        options["on_bad_input"] = config.data.on_bad_input
    splits, _ = validate_splits(factory(**options).limit(config.data.limit), config.data.on_bad_input)
    return splits


def resolve_encoders(config: RunConfig, splits: Splits) -> dict[str, EncoderSpec]:
    """The dataset's default encoders, replaced where the config names one (a registered
    encoder, or a factory by import path ``package.module:factory``, with keyword arguments)."""
    encoders = dict(splits.encoders)
    for modality, spec in config.encoders.items():
        if modality not in splits.train.modalities:
            raise ConfigError(f"config encoders.{modality}: the dataset has no modality {modality!r} ({list(splits.train.modalities)})")
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"config encoders.{modality}: needs a 'name' (a registered encoder or package.module:factory)")
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        encoders[modality] = EncoderSpec(spec["name"], **kwargs)
    return encoders


def _setup(config: RunConfig, run_dir: Path, splits: Splits | None = None):
    splits = splits if splits is not None else load_data(config)
    _keep_split(run_dir, splits)
    encoders = resolve_encoders(config, splits)
    check_compatible(encoders, splits.train, splits.val, splits.test)
    return splits, encoders, expand_methods(config.methods, sorted(encoders))


def _keep_split(run_dir: Path, splits: Splits) -> None:
    """Save which sample went to which split (``splits.csv``) on the first step; later steps
    check that the data still splits the same way (a changed manifest is refused)."""
    if not splits.ids or not distributed.is_main():
        return
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([("id", "split"), *((i, name) for name, ids in splits.ids.items() for i in ids)])
    text = buffer.getvalue()
    path = run_dir / "splits.csv"
    if not path.is_file():
        write_text(path, text)
    elif path.read_text(encoding="utf-8") != text:
        raise DataError(f"{path}: the data no longer splits as when this run was trained (did the manifest change?)")


def train_run(run_dir: Path, log: Log = stderr_log, splits: Splits | None = None) -> dict[int, dict[str, Method]]:
    """Stage 1 and every method, per seed; each fitted method saved as soon as it is done.

    On a folder where some of it was done (an interrupted run, resumed), saved models are
    loaded, not retrained, and an interrupted stage resumes from its last epoch checkpoint."""
    config = read_config(run_dir)
    started = time.perf_counter()
    splits, encoders, names = _setup(config, run_dir, splits)
    provenance = _provenance(run_dir, config, splits)
    fitted_by_seed, fits = {}, []
    for seed in config.seeds:
        train, val = apply_training_missing(splits.train, splits.val, config.train_missing, seed)
        unfitted = create_methods(names, encoders, splits.train, seed, config.train, config.method_options)
        log(f"[seed {seed}] training {len(unfitted)} methods (Stage 1 first) on {len(train)} rows")

        models, checkpoints = run_dir / "models" / f"seed{seed}", run_dir / "checkpoints" / f"seed{seed}"

        def save(name: str, method: Method, models=models, checkpoints=checkpoints) -> None:
            if not distributed.is_main():
                return
            save_method(method, models / file_name(name, ".safetensors"))
            shutil.rmtree(stage_checkpoints(checkpoints, method.name), ignore_errors=True)

        def restore(name: str, method: Method, models=models) -> Method | None:
            path = models / file_name(name, ".safetensors")
            return load_method(method, path) if path.is_file() else None

        fitted_by_seed[seed] = fit_methods(
            unfitted, train, val, stages=provenance["stages"], log_dir=run_dir / "metrics" / f"seed{seed}",
            checkpoint_dir=checkpoints, on_fitted=save, restore=restore,
            on_stage=lambda s: log(f"  {s['stage']}: {s['seconds']:.1f} s, peak {s['peak_rss_mb']} MB"))
        fits += fit_records(fitted_by_seed[seed])
        if distributed.is_main():
            write_json(run_dir / "fits.json", fits)
            write_json(run_dir / "provenance.json", provenance)
    distributed.barrier()
    if distributed.is_main():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # every seed done: nothing left to resume
        _finish(run_dir, provenance, "train", started)
    return fitted_by_seed


def evaluate_run(run_dir: Path, fitted_by_seed: Mapping[int, Mapping[str, Method]] | None = None,
                 log: Log = stderr_log, splits: Splits | None = None) -> list[dict]:
    """Every protocol on the test split, per seed; models (and data) loaded from the run folder
    unless given."""
    config = read_config(run_dir)
    started = time.perf_counter()
    splits, encoders, names = _setup(config, run_dir, splits)
    provenance = _provenance(run_dir, config, splits)
    test = splits.test
    protocols = config.protocols or default_protocols(test, sorted(encoders))
    records = []
    for seed in config.seeds:
        masks = seed_masks(test, sorted(encoders), protocols, seed, run_dir)
        fitted = (fitted_by_seed or {}).get(seed) or _load_fitted(run_dir, names, encoders, splits, seed, config)
        log(f"[seed {seed}] evaluating {len(fitted)} methods under {len(masks)} masks on {len(test)} test rows")
        records += [{"dataset": config.data.name, **r} for r in evaluate_methods(fitted, test, masks, stages=provenance["stages"])]
    write_jsonl(run_dir / "results.jsonl", records)
    _finish(run_dir, provenance, "evaluate", started)
    return records


def _load_fitted(run_dir, names, encoders, splits, seed, config) -> dict[str, Method]:
    unfitted = create_methods(names, encoders, splits.train, seed, config.train, config.method_options)
    return {name: load_method(m, run_dir / "models" / f"seed{seed}" / file_name(name, ".safetensors")) for name, m in unfitted.items()}


def run_all(config: RunConfig, out: Path | None = None, log: Log = stderr_log) -> Path:
    """The whole pipeline into a new run folder; returns the path of the report."""
    run_dir = create_run_dir(config, out)
    log(f"run folder: {run_dir}")
    return _train_evaluate_report(run_dir, log)


def resume_all(run_dir: Path, log: Log = stderr_log) -> Path:
    """Finish an interrupted run in its own folder (finished stages kept); returns the report's path."""
    log(f"resuming: {run_dir}")
    return _train_evaluate_report(Path(run_dir), log)


def _train_evaluate_report(run_dir: Path, log: Log) -> Path:
    splits = load_data(read_config(run_dir))  # read and validated once for the three steps
    fitted = train_run(run_dir, log, splits)
    if distributed.is_main():  # the models are the same on every rank: rank 0 evaluates and reports
        evaluate_run(run_dir, fitted, log, splits)
        write_report(run_dir)
        write_model(run_dir, fitted, log, splits)
    distributed.barrier()
    return run_dir / "report.md"


def write_model(run_dir: Path, fitted_by_seed: Mapping[int, Mapping[str, Method]], log: Log = stderr_log,
                splits: Splits | None = None) -> Path | None:
    """``model/``: the UME-MMA model of the seed with the best validation score, ready for
    ``mmrobust predict`` (and ``Predictor.load``), with a model card holding the run's table."""
    candidates = [(seed, methods["ume-mma"]) for seed, methods in fitted_by_seed.items() if "ume-mma" in methods]
    if not candidates:
        log("no model/ written: ume-mma is not among the run's methods")
        return None
    seed, method = max(candidates, key=lambda c: c[1].val_scores_[c[1].selected_])
    config = read_config(run_dir)
    splits = splits if splits is not None else load_data(config)
    train = splits.train
    inputs = {m: splits.inputs.get(m) or default_spec(train.inputs[m].shape[1:]) for m in method.modalities}
    labels = train.label_names or [str(i) for i in range(train.num_classes)]
    card = model_card(run_dir, config, seed, method)
    predictor = Predictor(method, inputs, labels, method_options=config.method_options.get("ume-mma", {}), card=card)
    folder = predictor.save_pretrained(run_dir / "model")
    log(f"model: {folder} (seed {seed}, UME-MMA chose {method.selected_.upper()})")
    return folder


def model_card(run_dir: Path, config: RunConfig, seed: int, method: Method) -> str:
    """What the model is and how the run evaluated it: the main table, rendered from the run's records."""
    table = main_table(read_jsonl(run_dir / "results.jsonl"))
    scores = ", ".join(f"{k.upper()} {100 * v:.1f}" for k, v in method.val_scores_.items())
    return "\n".join([
        f"# mmrobust model: UME-MMA on `{config.data.name}`", "",
        f"Modalities: {', '.join(method.modalities)}, any subset at prediction time. Seed {seed} of {config.seeds} "
        f"(the best validation score); on validation it chose **{method.selected_.upper()}** ({scores}).", "",
        "Use: `mmrobust predict model --input <modality>=<file or text>` (any subset), or "
        "`mmrobust.Predictor.load('model').predict({...})`.", "",
        f"Evaluation of the run (test split, mean ± std over seeds {config.seeds}; accuracy or F1 in %):", "",
        *table, "", "The full report, with the protocols: `../report.md`.", ""])


def _provenance(run_dir: Path, config: RunConfig, splits: Splits) -> dict:
    path = run_dir / "provenance.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"environment": environment(resolve_device(config.train.device)), "dataset": splits.info,
            "stages": [], "commands": []}


def _finish(run_dir: Path, provenance: dict, command: str, started: float) -> None:
    provenance["commands"].append({"command": command, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "seconds": round(time.perf_counter() - started, 2)})
    write_json(run_dir / "provenance.json", provenance)
