"""Methods x seeds x protocols -> flat records. Stage 1 runs once per seed and is shared.

A seed is a training seed: each seed retrains every method (Stage 1 included) and draws its
evaluation masks, which are the same for every method compared.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .batch import MultiModalDataset
from .encoders import EncoderLike
from .evaluate import evaluate
from .files import write_json, write_jsonl
from .masking import sample_all_masks, sample_training_missing, save_masks
from .methods import METHODS, Method, create_method, train_stage1
from .train import TrainConfig


@dataclass
class ExperimentResults:
    """Flat evaluation records, and what each fit chose (validation scores, UME/MMA choice)."""

    records: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)

    def summary(self) -> list[dict]:
        return summarize(self.records)


def expand_methods(methods: Sequence[str], modalities: Sequence[str]) -> list[str]:
    """``unimodal`` becomes one ``unimodal:<m>`` per modality; ``ume-mma*`` go last (they reuse UME and MMA)."""
    names = []
    for name in methods:
        base = name.split(":", 1)[0]
        if base not in METHODS:
            METHODS.get(base)  # raises the registry's error, listing the known methods
        names += [f"unimodal:{m}" for m in sorted(modalities)] if name == "unimodal" else [name]
    return sorted(dict.fromkeys(names), key=lambda n: n.startswith("ume-mma"))


def run_experiment(
    *,
    methods: Sequence[str],
    encoders: Mapping[str, EncoderLike],
    train: MultiModalDataset,
    val: MultiModalDataset,
    test: MultiModalDataset,
    protocols: Sequence[str] = ("full",),
    seeds: Sequence[int] = (0,),
    train_config: TrainConfig | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    train_missing: Mapping[str, float] | None = None,
    dataset: str = "custom",
    out_dir: str | Path | None = None,
) -> ExperimentResults:
    """Train and evaluate every method for every seed under every protocol.

    ``train_missing={"audio": 0.5}`` removes a modality from that share of the training and
    validation rows (the paper's training-time missing). With ``out_dir``, the masks (with
    their sha256), per-epoch metrics, ``results.jsonl`` and ``fits.json`` are written there.
    """
    _check_compatible(encoders, train, val, test)
    names = expand_methods(methods, sorted(encoders))
    results = ExperimentResults()
    for seed in seeds:
        time.perf_counter()
        seed_records, seed_fits = _run_seed(names, encoders, train, val, test, protocols, seed, train_config,
                                            dict(method_options or {}), dict(train_missing or {}), out_dir)
        results.records += [{"dataset": dataset, **r} for r in seed_records]
        results.fits += seed_fits
        if out_dir is not None:
            write_jsonl(Path(out_dir) / "results.jsonl", results.records)
            write_json(Path(out_dir) / "fits.json", results.fits)
    return results


def _run_seed(names, encoders, train, val, test, protocols, seed, train_config, method_options, train_missing, out_dir):
    train, val = _apply_training_missing(train, val, train_missing, seed)
    masks = sample_all_masks(protocols, {m: test.present[m] for m in sorted(encoders)}, seed)
    log_dir = Path(out_dir) / "metrics" / f"seed{seed}" if out_dir is not None else None
    if out_dir is not None:
        save_masks(Path(out_dir) / "masks" / f"seed{seed}.npz", masks, meta={"seed": seed, "protocols": list(protocols)})
    common = dict(num_classes=train.num_classes, task=train.task, seed=seed, train_config=train_config or TrainConfig())
    stage1 = None
    if any(_needs_stage1(n, encoders, common, method_options) for n in names):
        stage1 = train_stage1(encoders, train, val, log_dir=log_dir, **common)
    fitted: dict[str, Method] = {}
    records, fits = [], []
    for name in names:
        started = time.perf_counter()
        method = _create(name, encoders, common, method_options)
        fitted[name] = method.fit(train, val, stage1=stage1, fitted=fitted, log_dir=log_dir)
        seconds = time.perf_counter() - started
        records += [{"method": name, "seed": seed, **r} for r in evaluate(method, test, masks)]
        fits.append({"method": name, "seed": seed, "fit_seconds": round(seconds, 3), **method.fit_summary()})
    return records, fits


def _create(name: str, encoders, common: dict, method_options) -> Method:
    base, _, modality = name.partition(":")
    options = dict(method_options.get(base, {}))
    if modality:
        options["modality"] = modality
    return create_method(base, encoders=encoders, **common, **options)


def _needs_stage1(name, encoders, common, method_options) -> bool:
    return _create(name, encoders, common, method_options).needs_stage1 or name.startswith("unimodal:")


def _apply_training_missing(train, val, train_missing: Mapping[str, float], seed: int):
    for modality, rate in sorted(train_missing.items()):
        train = train.with_present(sample_training_missing(train.present, modality, rate, seed, "train"))
        val = val.with_present(sample_training_missing(val.present, modality, rate, seed, "val"))
    return train, val


def _check_compatible(encoders, *splits: MultiModalDataset) -> None:
    for split_name, data in zip(("train", "val", "test"), splits):
        missing = set(encoders) - set(data.modalities)
        if missing:
            raise ValueError(f"the {split_name} split lacks modalities {sorted(missing)} that have encoders")
    tasks = {(d.task, d.num_classes) for d in splits}
    if len(tasks) != 1:
        raise ValueError(f"train, val and test disagree on task / number of classes: {sorted(tasks)}")


def summarize(records: Sequence[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (method, protocol, rate, pattern, metric).

    A cell with any seed n/a is n/a. ``std`` is the sample standard deviation (0 for one seed).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r.get("dataset"), r["method"], r["protocol"], r["rate"], r["pattern"], r["metric"])].append(r)
    out = []
    for (dataset, method, protocol, rate, pattern, metric), rows in groups.items():
        values = [r["value"] for r in rows]
        ok = all(v is not None and not math.isnan(v) for v in values)
        out.append({"dataset": dataset, "method": method, "protocol": protocol, "rate": rate, "pattern": pattern,
                    "metric": metric, "mean": float(np.mean(values)) if ok else None,
                    "std": float(np.std(values, ddof=1)) if ok and len(values) > 1 else (0.0 if ok else None),
                    "seeds": sorted(r["seed"] for r in rows), "n_scored": min(r["n_scored"] for r in rows)})
    return out
