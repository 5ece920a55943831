"""The one runner: methods x seeds x protocols -> flat records. Stage 1 runs once per seed and is
shared by every method that needs it; composite methods (UME-MMA) receive the fitted parts.

A seed is a training seed: each seed retrains every method (Stage 1 included) and draws its
evaluation masks, which are the same for every method compared.

:class:`Experiment` runs; a :class:`Store` says where things go. The default store keeps
nothing; :class:`FolderStore` writes a run folder (masks, per-epoch metrics, epoch checkpoints,
fitted models, ``results.jsonl``, ``fits.json``) and restores what an interrupted run finished.
``mm.run_experiment(...)`` and ``mmrobust run`` both run through here.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import distributed
from .batch import MultiModalDataset
from .checkpoint import load_method, save_method
from .encoders import EncoderLike
from .errors import ConfigError
from .calibration import check_mode
from .encoding import shared_encodings
from .evaluation import Conditions, evaluate_method, fit_calibration
from .failures import check_corruptible, input_ranges, is_picture, raw_kind
from .gate import DEFAULT_DETECTOR, FALSE_ALARMS, InputGate, check_detector
from .evidence import bootstrap_evidence
from .files import file_name, write_json, write_jsonl
from .masking import sample_training_missing
from .methods import METHOD_GROUPS, METHODS, Method, create_method, train_stage1
from .methods.unimodal import Stage1, UnimodalMethod
from .protocols import FAILURE_KINDS, ProtocolMask, parse_protocol, sample_all_masks, save_masks
from .provenance import measure
from .records import main_metric, reference_modality, reference_name, summarize
from .runtime import cpu_threads, resolve_device
from .config import TrainConfig
from .train import stage_checkpoints


@dataclass
class ExperimentResults:
    """Flat evaluation records, what each fit chose, and the time and memory of each stage."""

    records: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)  # bootstrap intervals, per method and condition
    reliability: list[dict] = field(default_factory=list)  # reliability-diagram bins, per method and pattern

    def summary(self) -> list[dict]:
        return summarize(self.records)


@dataclass
class SeedEvaluation:
    """One seed's part of the evaluation: its records, reliability bins and each row's decisions."""

    seed: int
    records: list[dict] = field(default_factory=list)
    reliability: list[dict] = field(default_factory=list)
    decisions: dict[tuple, dict] = field(default_factory=dict)  # (method, seed) -> the method's decisions


class Store:
    """Where a run's products go, and what an earlier attempt left: by default nowhere, nothing."""

    def log_dir(self, seed: int) -> Path | None:
        return None

    def checkpoint_dir(self, seed: int) -> Path | None:
        return None

    def restore(self, seed: int, name: str, method: Method) -> Method | None:
        """An already fitted ``method`` (a finished stage of an interrupted run), or None."""
        return None

    def has(self, seed: int, name: str) -> bool:
        """Whether :meth:`restore` has that method fitted."""
        return False

    def saved(self, seed: int, name: str, method: Method) -> None:
        """Called as each method (and each Stage-1 model, as ``stage1:<m>``) is fitted."""

    def masks(self, seed: int, masks: Sequence[ProtocolMask], protocols: Sequence[str]) -> None:
        """Called with each seed's test masks."""

    def records(self, records: list[dict]) -> None:
        """Called with every record so far, after each seed is evaluated."""

    def fits(self, fits: list[dict]) -> None:
        """Called with what every fit so far chose, after each seed is fitted."""

    def evidence(self, evidence: list[dict], reliability: list[dict]) -> None:
        """Called once every seed is evaluated, with the intervals and the reliability bins."""

    def plan(self, stages: int) -> None:
        """Called before training with the number of training stages to come (restored ones included)."""

    def stage(self, stage: dict) -> None:
        """Called with each trained stage's time and memory record (to show progress)."""

    def log(self, message: str) -> None:
        """Progress messages."""


class FolderStore(Store):
    """A run folder: written by rank 0, read back to resume (see ``mmrobust.pipeline``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def log_dir(self, seed: int) -> Path:
        return self.folder / "metrics" / f"seed{seed}"

    def checkpoint_dir(self, seed: int) -> Path:
        return self.folder / "checkpoints" / f"seed{seed}"

    def model_path(self, seed: int, name: str) -> Path:
        return self.folder / "models" / f"seed{seed}" / file_name(name, ".safetensors")

    def restore(self, seed: int, name: str, method: Method) -> Method | None:
        path = self.model_path(seed, name)
        return load_method(method, path) if path.is_file() else None

    def has(self, seed: int, name: str) -> bool:
        return self.model_path(seed, name).is_file()

    def saved(self, seed: int, name: str, method: Method) -> None:
        if distributed.is_main():
            save_method(method, self.model_path(seed, name))
            shutil.rmtree(stage_checkpoints(self.checkpoint_dir(seed), method.name), ignore_errors=True)

    def masks(self, seed: int, masks: Sequence[ProtocolMask], protocols: Sequence[str]) -> None:
        if distributed.is_main():
            save_masks(self.folder / "masks" / f"seed{seed}.npz", masks, meta={"seed": seed, "protocols": list(protocols)})

    def records(self, records: list[dict]) -> None:
        if distributed.is_main():
            write_jsonl(self.folder / "results.jsonl", records)

    def fits(self, fits: list[dict]) -> None:
        if distributed.is_main():
            write_json(self.folder / "fits.json", fits)

    def evidence(self, evidence: list[dict], reliability: list[dict]) -> None:
        if distributed.is_main():
            write_jsonl(self.folder / "evidence.jsonl", evidence)
            write_json(self.folder / "reliability.json", reliability)


@dataclass
class Experiment:
    """Every method for every seed under every protocol, on one train / val / test split.

    ``protocols=None`` means :func:`default_protocols`. ``method_options`` gives a method's
    keyword arguments by its name; ``train_missing={"audio": 0.5}`` removes a modality from that
    share of the training and validation rows (the paper's training-time missing).
    ``calibration`` (``per-pattern``, ``global``, ``none``): the temperature scaling fitted on
    validation whose effect the records show; ``groups`` (one id per test row, rows of one source
    sharing it) makes the bootstrap resample those groups instead of rows under every condition;
    by default each condition resamples the rows linked by the test data's ``sources`` of the
    modalities present (rows that share an audio clip move together only where the audio is there).
    """

    methods: Sequence[str]
    encoders: Mapping[str, EncoderLike]
    train: MultiModalDataset
    val: MultiModalDataset
    test: MultiModalDataset
    protocols: Sequence[str] | None = None
    seeds: Sequence[int] = (0,)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_missing: Mapping[str, float] = field(default_factory=dict)
    dataset: str = "custom"
    calibration: str = "per-pattern"
    groups: Sequence | None = None
    gate: bool = True
    gate_detector: str = DEFAULT_DETECTOR
    gate_false_alarms: float = FALSE_ALARMS
    input_specs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # modality -> how its raw input is read

    def __post_init__(self) -> None:
        check_compatible(self.encoders, self.train, self.val, self.test)
        check_mode(self.calibration)
        resolve_device(self.train_config.device)  # a device this machine lacks is refused before anything trains
        if self.groups is not None and len(self.groups) != len(self.test):
            raise ConfigError(f"groups: {len(self.groups)} ids for {len(self.test)} test rows")
        self.names = expand_methods(self.methods, self.modalities)
        check_detector(self.gate_detector)
        self.ranges = {m: r for m, r in input_ranges(self.train).items() if m in self.modalities}
        breakable = sorted({*self.ranges, *(m for m in self.modalities if raw_kind(self.input_specs.get(m, {})))})
        self.protocols = (list(self.protocols) if self.protocols is not None
                          else default_protocols(self.test, self.modalities, failing=breakable))
        for protocol in self.protocols:  # a bad protocol is refused before anything trains
            kind, arg, _ = parse_protocol(protocol, self.modalities)
            if kind == "fail" and arg not in breakable:
                raise ConfigError(f"protocol {protocol!r}: {arg} is neither an array input nor read through an "
                                  "extractor (tokens?); a silent failure breaks raw inputs")
            if kind == "corrupt":
                check_corruptible(protocol, self.input_specs.get(arg, {}), self.test.inputs[arg], self.test.raw.get(arg),
                                  self.test.cells.get(arg))
        if self.seeds:  # and so is a bad method option (options do not depend on the seed)
            self.create_methods(self.seeds[0])

    @property
    def modalities(self) -> list[str]:
        return sorted(self.encoders)

    def create_methods(self, seed: int) -> dict[str, Method]:
        """The unfitted methods of one seed by name; a composite's parts are added before it."""
        methods = {name: self._create(name, seed) for name in self.names}
        for name, method in list(methods.items()):
            for part in getattr(method, "part_names", ()):
                methods.setdefault(part, self._create(part, seed))
        return dict(sorted(methods.items(), key=lambda item: bool(getattr(item[1], "part_names", ()))))

    def _create(self, name: str, seed: int) -> Method:
        modality = reference_modality(name)
        base = "unimodal" if modality else name
        options = {**self.method_options.get(base, {}), **({"modality": modality} if modality else {})}
        try:
            return create_method(base, encoders=self.encoders, num_classes=self.train.num_classes, task=self.train.task,
                                 seed=seed, train_config=self.train_config, **options)
        except TypeError as err:  # an option the method does not take
            raise ConfigError(f"method {name!r}: {err}; check method_options.{base}") from err

    def stages_per_seed(self) -> int:
        """Training stages of one seed: every method, and Stage 1 when any needs it."""
        methods = self.create_methods(self.seeds[0])
        return len(methods) + any(m.needs_stage1 or reference_modality(n) for n, m in methods.items())

    def seed_data(self, seed: int) -> tuple[MultiModalDataset, MultiModalDataset]:
        """The training and validation rows of one seed (training-time missing applied)."""
        return (with_training_missing(self.train, self.train_missing, seed, "train"),
                with_training_missing(self.val, self.train_missing, seed, "val"))

    def fit(self, store: Store | None = None, stages: list[dict] | None = None) -> dict[int, dict[str, Method]]:
        """Every method of every seed, fitted (or restored from ``store``)."""
        store, stages = store or Store(), [] if stages is None else stages
        fitted = {}
        with cpu_threads(self.train_config.threads):
            store.plan(len(self.seeds) * self.stages_per_seed())
            for seed in self.seeds:
                train, val = self.seed_data(seed)
                methods = self.create_methods(seed)
                if all(store.has(seed, name) for name in methods):
                    store.log(f"[seed {seed}] {len(methods)} methods fitted: loading them")
                else:
                    store.log(f"[seed {seed}] training {len(methods)} methods (Stage 1 first) on {len(train)} rows")
                fitted[seed] = fit_methods(methods, train, val, store, seed, stages)
                store.fits(fit_records(fitted))
        return fitted

    def fit_share(self, seed: int, names: Sequence[str], store: Store, stages: list[dict]) -> dict[str, Method]:
        """The methods ``names`` of one seed with what they need (their parts, Stage 1), fitted,
        or restored from ``store`` where it has them: one worker's share of a run."""
        methods = self.create_methods(seed)
        needed = {*names, *(part for name in names for part in getattr(methods[name], "part_names", ()))}
        train, val = self.seed_data(seed)
        with cpu_threads(self.train_config.threads):
            return fit_methods({n: m for n, m in methods.items() if n in needed}, train, val, store, seed, stages)

    def training_waves(self, seed: int) -> list[list[list[str]]]:
        """One seed's methods in waves of shares (the methods a worker fits together) independent
        of each other: first Stage 1 (the uni-modal references, which fit it) beside the methods
        that need nothing fitted (trained from scratch), then what needs Stage 1, then the
        composites (UME-MMA), which need their parts. Stage 1 comes first in its wave: the
        second waits for it."""
        methods = self.create_methods(seed)
        composite = [n for n, m in methods.items() if getattr(m, "part_names", ())]
        references = [n for n in methods if reference_modality(n)]
        if not references:  # Stage 1 comes with the first method that needs it
            references = [n for n, m in methods.items() if m.needs_stage1 and n not in composite][:1]
        alone = [n for n, m in methods.items() if not m.needs_stage1 and n not in composite and n not in references]
        rest = [n for n in methods if n not in composite and n not in references and n not in alone]
        first = ([references] if references else []) + [[n] for n in alone]
        return [wave for wave in (first, [[n] for n in rest], [[n] for n in composite]) if wave]

    def evaluate(self, fitted: Mapping[int, Mapping[str, Method]], store: Store | None = None,
                 stages: list[dict] | None = None) -> ExperimentResults:
        """Records of every fitted method under every mask of every protocol, seed by seed; then
        the bootstrap intervals over all seeds, and the reliability bins per pattern."""
        store, stages = store or Store(), [] if stages is None else stages
        with cpu_threads(self.train_config.threads):
            return self._evaluate(fitted, store, stages)

    def _evaluate(self, fitted: Mapping[int, Mapping[str, Method]], store: Store, stages: list[dict]) -> ExperimentResults:
        return self.combine([self.evaluate_seed(seed, fitted[seed], store, stages) for seed in self.seeds], store, stages)

    def evaluate_seed(self, seed: int, fitted: Mapping[str, Method], store: Store, stages: list[dict]) -> SeedEvaluation:
        """The records of one seed's fitted methods under every mask of every protocol (its test
        masks go to ``store``); :meth:`combine` joins the seeds. A worker process runs it alone."""
        out = SeedEvaluation(seed)
        masks = sample_all_masks(self.protocols, {m: self.test.present[m] for m in self.modalities}, seed)
        store.masks(seed, masks, self.protocols)
        store.log(f"[seed {seed}] evaluating {len(fitted)} methods under {len(masks)} masks on {len(self.test)} test rows")
        train, val = self.seed_data(seed)
        gate = self.fit_gate(fitted, train, val, store)
        conditions = Conditions(self.test, self.ranges, gate, seed, self.input_specs)
        with shared_encodings():  # methods that hold the same Stage-1 (or MMA) weights encode each input once
            for name, method in fitted.items():
                with measure(stages, f"seed{seed}/evaluate/{name}", method.device):
                    calibration = fit_calibration(method, val, self.calibration)
                    evaluation = evaluate_method(method, self.test, masks, calibration=calibration, conditions=conditions)
                tags = {"dataset": self.dataset, "method": name, "seed": seed}
                out.records += [{**tags, **r} for r in evaluation.records]
                out.reliability += [{**tags, **r} for r in evaluation.reliability]
                out.decisions[(name, seed)] = evaluation.decisions
        return out

    def combine(self, seeds: Sequence[SeedEvaluation], store: Store, stages: list[dict]) -> ExperimentResults:
        """The seeds' evaluations, in seed order, as one result: the records (each seed's written
        to ``store`` as it is added), then the bootstrap intervals over all seeds."""
        results, decisions = ExperimentResults(stages=stages), {}
        for seed in sorted(seeds, key=lambda s: self.seeds.index(s.seed)):
            results.records += seed.records
            results.reliability += seed.reliability
            decisions.update(seed.decisions)
            store.records(results.records)
        groups = np.asarray(self.groups) if self.groups is not None else None
        results.evidence = bootstrap_evidence(decisions, self.test.target.numpy(), main_metric(results.records),
                                              self.modalities, dataset=self.dataset, groups=groups, sources=self.test.sources)
        store.evidence(results.evidence, results.reliability)
        return results

    def fit_gate(self, methods: Mapping[str, Method], train: MultiModalDataset, val: MultiModalDataset,
                 store: Store | None = None) -> InputGate | None:
        """The input gate of one seed, from its uni-modal models (``None`` when off or when the run
        has no uni-modal model of every modality)."""
        references = {m: methods.get(reference_name(m)) for m in self.modalities}
        if not self.gate or any(r is None for r in references.values()):
            if self.gate and store is not None:
                store.log("no input gate: it needs the uni-modal model of every modality (method `unimodal`)")
            return None
        return InputGate.fit({m: r.model_ for m, r in references.items()}, train, val, detector=self.gate_detector,
                             false_alarms=self.gate_false_alarms,
                             pictures=[m for m in self.modalities if is_picture(self.input_specs.get(m, {}))])

    def run(self, store: Store | None = None) -> ExperimentResults:
        """Fit, then evaluate: the whole experiment."""
        stages: list[dict] = []
        fitted = self.fit(store, stages)
        results = self.evaluate(fitted, store, stages)
        results.fits = fit_records(fitted)
        return results


def with_training_missing(data: MultiModalDataset, train_missing: Mapping[str, float], seed: int,
                          split: str) -> MultiModalDataset:
    """``data`` with the paper's training-time missing of one seed applied (``split``: train or val)."""
    for modality, rate in sorted(train_missing.items()):
        data = data.with_present(sample_training_missing(data.present, modality, rate, seed, split))
    return data


def fit_records(fitted: Mapping[int, Mapping[str, Method]]) -> list[dict]:
    """What every fit chose (validation scores, epoch kept, UME or MMA), seed by seed."""
    return [{"method": name, "seed": seed, **method.fit_summary()} for seed, methods in fitted.items()
            for name, method in methods.items()]


def fit_methods(methods: Mapping[str, Method], train: MultiModalDataset, val: MultiModalDataset, store: Store,
                seed: int, stages: list[dict]) -> dict[str, Method]:
    """Fit the methods of one seed in order: Stage 1 first (once, when any method needs it),
    composites after their parts. Finished stages come back from ``store``; an interrupted one
    resumes from its last epoch checkpoint."""
    first = next(iter(methods.values()))
    device = resolve_device(first.train_config.device)
    folders = dict(log_dir=store.log_dir(seed), checkpoint_dir=store.checkpoint_dir(seed))
    stage1 = None
    if any(m.needs_stage1 or reference_modality(name) for name, m in methods.items()):
        settings = dict(num_classes=first.num_classes, task=first.task, seed=seed, train_config=first.train_config,
                        metric=first.metric)
        encoders = {m: spec for method in methods.values() for m, spec in method.encoders.items()}
        stage1 = _restore_stage1(encoders, settings, store, seed)
        if stage1 is None:
            with measure(stages, f"seed{seed}/stage1", device):
                stage1 = train_stage1(encoders, train, val, **folders, **settings)
            store.stage(stages[-1])
            for m, method in stage1.methods.items():
                store.saved(seed, f"stage1:{m}", method)
    fitted: dict[str, Method] = {}
    for name, method in methods.items():
        fitted[name] = store.restore(seed, name, method)
        if fitted[name] is not None:
            continue
        with measure(stages, f"seed{seed}/{name}", device):
            fitted[name] = method.fit(train, val, stage1=stage1, fitted=fitted, **folders)
        store.stage(stages[-1])
        store.saved(seed, name, method)
    return fitted


def _restore_stage1(encoders, settings: dict, store: Store, seed: int) -> Stage1 | None:
    """Stage 1 from its saved models, when every modality's model was saved."""
    stage1 = Stage1(seed)
    for m in sorted(encoders):
        method = store.restore(seed, f"stage1:{m}", UnimodalMethod(encoders, modality=m, **settings))
        if method is None:
            return None
        stage1.methods[m] = method
    return stage1


def expand_methods(methods: Sequence[str], modalities: Sequence[str]) -> list[str]:
    """``unimodal`` becomes one ``unimodal:<m>`` per modality (the references); a group
    (``paper``, ``baselines``, ``comparison``) becomes its methods."""
    methods = [m for name in methods for m in METHOD_GROUPS.get(name, (name,))]
    names = []
    for name in methods:
        modality = reference_modality(name)
        METHODS.get("unimodal" if modality else name)  # raises the registry's error, listing the known methods
        if modality and modality not in modalities:
            raise ConfigError(f"method {name!r}: unknown modality {modality!r}; the data has {list(modalities)}")
        names += [reference_name(m) for m in sorted(modalities)] if name == "unimodal" else [name]
    return list(dict.fromkeys(names))


def default_protocols(data: MultiModalDataset, modalities: Sequence[str], failing: Sequence[str] = ()) -> list[str]:
    """``observed`` (when the data has gaps), ``full``, each ``miss:<m>``, each ``sweep:<m>``,
    ``subsets``, and each failure of each modality in ``failing`` (those with raw inputs)."""
    gaps = any(not bool(data.present[m].all()) for m in modalities)
    mods = sorted(modalities)
    failures = [f"fail:{m}@{kind}" for m in sorted(failing) for kind in FAILURE_KINDS]
    return ((["observed"] if gaps else []) + ["full", *[f"miss:{m}" for m in mods], *[f"sweep:{m}" for m in mods], "subsets"]
            + failures)


def check_compatible(encoders, *splits: MultiModalDataset) -> None:
    for split_name, data in zip(("train", "val", "test"), splits):
        missing = set(encoders) - set(data.modalities)
        if missing:
            raise ConfigError(f"the {split_name} split lacks modalities {sorted(missing)} that have encoders")
    tasks = {(d.task, d.num_classes) for d in splits}
    if len(tasks) != 1:
        raise ConfigError(f"train, val and test disagree on task / number of classes: {sorted(tasks)}")


def run_experiment(*, out_dir: str | Path | None = None, **kwargs: Any) -> ExperimentResults:
    """Train and evaluate every method for every seed under every protocol (see :class:`Experiment`
    for the arguments). With ``out_dir``, a run folder is written there (:class:`FolderStore`)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return Experiment(**kwargs).run(FolderStore(out_dir) if out_dir is not None else None)
