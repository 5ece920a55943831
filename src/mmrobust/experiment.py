"""Methods x seeds x protocols -> flat records. Stage 1 runs once per seed and is shared.

A seed is a training seed: each seed retrains every method (Stage 1 included) and draws its
evaluation masks, which are the same for every method compared. The two phases are also
usable apart: :func:`fit_methods` (one seed) and :func:`evaluate_methods`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError
from .batch import MultiModalDataset
from .encoders import EncoderLike
from .evaluate import evaluate
from .files import write_json, write_jsonl
from .masking import sample_training_missing
from .protocols import ProtocolMask, sample_all_masks, save_masks
from .methods import METHODS, Method, create_method, train_stage1
from .methods.unimodal import Stage1, UnimodalMethod
from .provenance import measure
from .records import summarize
from .runtime import resolve_device
from .train import TrainConfig


@dataclass
class ExperimentResults:
    """Flat evaluation records, what each fit chose, and the time and memory of each stage."""

    records: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)

    def summary(self) -> list[dict]:
        return summarize(self.records)


def expand_methods(methods: Sequence[str], modalities: Sequence[str]) -> list[str]:
    """``unimodal`` becomes one ``unimodal:<m>`` per modality; ``ume-mma*`` go last (they reuse UME and MMA)."""
    names = []
    for name in methods:
        base, _, modality = name.partition(":")
        METHODS.get(base)  # raises the registry's error, listing the known methods
        if modality and modality not in modalities:
            raise ConfigError(f"method {name!r}: unknown modality {modality!r}; the data has {list(modalities)}")
        names += [f"unimodal:{m}" for m in sorted(modalities)] if name == "unimodal" else [name]
    return sorted(dict.fromkeys(names), key=lambda n: n.startswith("ume-mma"))


def default_protocols(data: MultiModalDataset, modalities: Sequence[str]) -> list[str]:
    """``observed`` (when the data has gaps), ``full``, each ``miss:<m>``, each ``sweep:<m>``, ``subsets``."""
    gaps = any(not bool(data.present[m].all()) for m in modalities)
    mods = sorted(modalities)
    return (["observed"] if gaps else []) + ["full", *[f"miss:{m}" for m in mods], *[f"sweep:{m}" for m in mods], "subsets"]


def create_methods(names: Sequence[str], encoders: Mapping[str, EncoderLike], data: MultiModalDataset, seed: int,
                   train_config: TrainConfig, method_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Method]:
    """Unfitted methods of one seed, by expanded name (``unimodal:<m>`` included)."""
    out = {}
    for name in names:
        base, _, modality = name.partition(":")
        options = dict((method_options or {}).get(base, {}))
        if modality:
            options["modality"] = modality
        out[name] = create_method(base, encoders=encoders, num_classes=data.num_classes, task=data.task, seed=seed,
                                  train_config=train_config, **options)
    return out


Restore = Callable[[str, Method], "Method | None"]


def fit_methods(
    methods: Mapping[str, Method], train: MultiModalDataset, val: MultiModalDataset, *,
    stages: list[dict] | None = None, log_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
    on_fitted: Callable[[str, Method], None] | None = None, on_stage: Callable[[dict], None] | None = None,
    restore: Restore | None = None,
) -> dict[str, Method]:
    """Fit the methods of one seed in order; Stage 1 first (once), when any method needs it.

    ``on_fitted(name, method)`` is called as each method is fitted (to save it; Stage 1's
    models as ``stage1:<m>``); ``on_stage(stage)`` with each stage's time and memory record
    (to show progress). ``restore(name, method)`` may return an already fitted method (a
    finished stage of an interrupted run), which is then not trained again; a stage that was
    interrupted resumes from its last epoch checkpoint in ``checkpoint_dir``.
    """
    stages = [] if stages is None else stages
    on_stage = on_stage or (lambda stage: None)
    on_fitted = on_fitted or (lambda name, method: None)
    restore = restore or (lambda name, method: None)
    first = next(iter(methods.values()))
    device, seed = resolve_device(first.train_config.device), first.seed
    stage1 = None
    if any(m.needs_stage1 or name.startswith("unimodal:") for name, m in methods.items()):
        encoders = {m: spec for method in methods.values() for m, spec in method.encoders.items()}
        settings = dict(num_classes=first.num_classes, task=first.task, seed=seed, train_config=first.train_config,
                        metric=first.metric)
        stage1 = _restore_stage1(encoders, settings, restore)
        if stage1 is None:
            with measure(stages, f"seed{seed}/stage1", device):
                stage1 = train_stage1(encoders, train, val, log_dir=log_dir, checkpoint_dir=checkpoint_dir, **settings)
            on_stage(stages[-1])
            for m, method in stage1.methods.items():
                on_fitted(f"stage1:{m}", method)
    fitted: dict[str, Method] = {}
    for name, method in methods.items():
        fitted[name] = restore(name, method)
        if fitted[name] is not None:
            continue
        with measure(stages, f"seed{seed}/{name}", device):
            fitted[name] = method.fit(train, val, stage1=stage1, fitted=fitted, log_dir=log_dir, checkpoint_dir=checkpoint_dir)
        on_stage(stages[-1])
        on_fitted(name, method)
    return fitted


def _restore_stage1(encoders, settings: dict, restore: Restore) -> Stage1 | None:
    """Stage 1 from its saved models, when every modality's model was saved."""
    stage1 = Stage1(settings["seed"])
    for m in sorted(encoders):
        method = restore(f"stage1:{m}", UnimodalMethod(encoders, modality=m, **settings))
        if method is None:
            return None
        stage1.methods[m] = method
    return stage1


def evaluate_methods(fitted: Mapping[str, Method], test: MultiModalDataset, masks: Sequence[ProtocolMask],
                     *, stages: list[dict] | None = None) -> list[dict]:
    """Records of every fitted method (of one seed) under every mask."""
    stages = [] if stages is None else stages
    records = []
    for name, method in fitted.items():
        with measure(stages, f"seed{method.seed}/evaluate/{name}", method.device):
            records += [{"method": name, "seed": method.seed, **r} for r in evaluate(method, test, masks)]
    return records


def fit_records(fitted: Mapping[str, Method]) -> list[dict]:
    return [{"method": name, "seed": m.seed, **m.fit_summary()} for name, m in fitted.items()]


def apply_training_missing(train: MultiModalDataset, val: MultiModalDataset, train_missing: Mapping[str, float], seed: int):
    """The paper's training-time missing: the validation split is masked like the training split."""
    for modality, rate in sorted(train_missing.items()):
        train = train.with_present(sample_training_missing(train.present, modality, rate, seed, "train"))
        val = val.with_present(sample_training_missing(val.present, modality, rate, seed, "val"))
    return train, val


def seed_masks(test: MultiModalDataset, modalities: Sequence[str], protocols: Sequence[str], seed: int,
               out_dir: str | Path | None = None) -> list[ProtocolMask]:
    """The test masks of one seed, saved (with their sha256) under ``out_dir/masks`` when given."""
    masks = sample_all_masks(protocols, {m: test.present[m] for m in modalities}, seed)
    if out_dir is not None:
        save_masks(Path(out_dir) / "masks" / f"seed{seed}.npz", masks, meta={"seed": seed, "protocols": list(protocols)})
    return masks


def run_experiment(
    *,
    methods: Sequence[str],
    encoders: Mapping[str, EncoderLike],
    train: MultiModalDataset,
    val: MultiModalDataset,
    test: MultiModalDataset,
    protocols: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    train_config: TrainConfig | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    train_missing: Mapping[str, float] | None = None,
    dataset: str = "custom",
    out_dir: str | Path | None = None,
) -> ExperimentResults:
    """Train and evaluate every method for every seed under every protocol.

    ``protocols=None`` means :func:`default_protocols`. ``train_missing={"audio": 0.5}``
    removes a modality from that share of the training and validation rows. With
    ``out_dir``, the masks (with their sha256), per-epoch metrics, ``results.jsonl`` and
    ``fits.json`` are written there.
    """
    check_compatible(encoders, train, val, test)
    names = expand_methods(methods, sorted(encoders))
    protocols = list(protocols) if protocols is not None else default_protocols(test, sorted(encoders))
    config = train_config or TrainConfig()
    results = ExperimentResults()
    for seed in seeds:
        seed_train, seed_val = apply_training_missing(train, val, train_missing or {}, seed)
        masks = seed_masks(test, sorted(encoders), protocols, seed, out_dir)
        log_dir = Path(out_dir) / "metrics" / f"seed{seed}" if out_dir is not None else None
        unfitted = create_methods(names, encoders, test, seed, config, method_options)
        fitted = fit_methods(unfitted, seed_train, seed_val, stages=results.stages, log_dir=log_dir)
        results.records += [{"dataset": dataset, **r} for r in evaluate_methods(fitted, test, masks, stages=results.stages)]
        results.fits += fit_records(fitted)
        if out_dir is not None:
            write_jsonl(Path(out_dir) / "results.jsonl", results.records)
            write_json(Path(out_dir) / "fits.json", results.fits)
    return results


def check_compatible(encoders, *splits: MultiModalDataset) -> None:
    for split_name, data in zip(("train", "val", "test"), splits):
        missing = set(encoders) - set(data.modalities)
        if missing:
            raise ConfigError(f"the {split_name} split lacks modalities {sorted(missing)} that have encoders")
    tasks = {(d.task, d.num_classes) for d in splits}
    if len(tasks) != 1:
        raise ConfigError(f"train, val and test disagree on task / number of classes: {sorted(tasks)}")
