"""The application layer behind the CLI: a run folder, and the pipeline in steps on it.

    train    -> config.yaml, models/seed<k>/<method>.safetensors, fits.json, metrics/, provenance.json
    evaluate -> masks/seed<k>.npz, results.jsonl
    report   -> report.md, robustness.png
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import ctypes.util
import dataclasses
import io
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

import yaml

from . import distributed
from .config import (RunConfig, load_yaml, config_differences, config_from_dict, config_sha256, config_to_dict,
                     yaml_error_text)
from .data import DATASETS, Splits
from .encoders import EncoderSpec, check_trusted
from .errors import ConfigError, DataError, RunFolderBusyError, WorkerError
from .evaluation import fit_calibration
from .experiment import Experiment, FolderStore, SeedEvaluation, with_training_missing
from .files import write_json, write_text
from .methods import Method
from .inputs import default_spec, describe_input
from .predictor import Predictor
from .provenance import environment, measure
from .records import choice_text, main_table, read_jsonl
from .report import modalities_text, write_report
from .runtime import cpu_threads, resolve_device, resolve_jobs, resolve_threads
from .validate import SHOWN, BadInputs, validate_splits

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
        check_new_folder(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    distributed.barrier()
    return run_dir


def check_new_folder(out: Path | None) -> None:
    """``--out`` must be a new or empty folder: never a file, never a run to overwrite."""
    if out is None or not Path(out).exists():
        return
    out = Path(out)
    if not out.is_dir():
        raise FileExistsError(f"{out}: a file, not a folder; choose another --out")
    if (out / "config.yaml").is_file():
        raise FileExistsError(f"{out}: already a run folder; finish it with `mmrobust run --resume {out}`, "
                              f"or choose another --out")
    if any(out.iterdir()):
        raise FileExistsError(f"{out}: the folder already exists and is not empty; choose another --out")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock (``.lock``, an OS file lock: released when the process ends,
    however it ends, so a lock left by a killed run never blocks) while a process writes it; a
    second process is refused, naming the holder. Rank 0 alone locks under torchrun; where the
    OS has no ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    if fcntl is None or not distributed.is_main():
        yield
        return
    with open(Path(run_dir) / ".lock", "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusyError(f"{run_dir}: {holder} is writing this run folder; wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"mmrobust (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_unchanged(config: RunConfig, run_dir: Path) -> None:
    """The run folder's ``config.yaml`` must still be the configuration the run was created with
    (its fingerprint is in ``provenance.json``): a hand-edited one is refused, naming the keys,
    and so is a folder whose fingerprint is gone (nothing to check the config against)."""
    path = Path(run_dir) / "provenance.json"
    if not path.is_file():  # a folder made by create_run_dir alone (the Python API), or not written yet (torchrun)
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    if "config_sha256" not in recorded:
        raise ConfigError(f"{path}: no config_sha256 (the fingerprint of the run's config); the run cannot be checked "
                          "against its config.yaml: start a new run")
    if recorded["config_sha256"] == config_sha256(config):
        return
    changed = ", ".join(config_differences(recorded["config"], config_to_dict(config))) or "formatting only"
    raise ConfigError(f"{Path(run_dir) / 'config.yaml'}: changed since the run was created ({changed}); "
                      f"put it back, or start a new run with the new settings")


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({yaml_error_text(err)})") from None
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_data(config: RunConfig, log: Log = stderr_log) -> Splits:
    """The dataset, every row validated before anything trains: one bad-input policy object
    (``data.on_bad_input``) goes to the loader and to validation; ``train.device`` is where
    feature extraction runs. What a user must know (warnings, bad inputs) goes to ``log``."""
    options = dict(config.data.options)
    if config.data.root is not None:
        options["root"] = config.data.root
    bad = BadInputs(config.data.on_bad_input)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        splits = DATASETS.create(config.data.name, **options, bad_inputs=bad, device=config.train.device)
        splits, _ = validate_splits(splits.limit(config.data.limit), bad)
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    if modalities_text(splits.info):
        log(f"modalities, as read: {modalities_text(splits.info)}")
    for note in notes:
        log(f"warning: {note}")
    if bad.marked_missing or bad.dropped:
        log(f"--on-bad-input missing: {len(bad.marked_missing)} cell(s) marked missing, {len(bad.dropped)} row(s) "
                   f"dropped; the first {min(SHOWN, len(bad.marked_missing) + len(bad.dropped))} are listed in the report, "
                   f"all counts in provenance.json (dataset.bad_inputs)")
    return dataclasses.replace(splits, info={**splits.info, "warnings": notes}) if notes else splits


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


def experiment_for(config: RunConfig, splits: Splits) -> Experiment:
    """The experiment a run's config describes, on its data (the CLI and the library share it)."""
    return Experiment(methods=config.methods, encoders=resolve_encoders(config, splits), train=splits.train,
                      val=splits.val, test=splits.test, protocols=config.protocols, seeds=config.seeds,
                      train_config=config.train, method_options=config.method_options,
                      train_missing=config.train_missing, dataset=config.data.name, calibration=config.calibration,
                      gate=config.gate == "on", gate_detector=config.gate_detector, gate_false_alarms=config.gate_false_alarms,
                      input_specs=splits.inputs)


class RunFolderStore(FolderStore):
    """The CLI's run folder: a :class:`FolderStore` that logs progress and keeps provenance."""

    def __init__(self, folder: Path, provenance: dict, log: Log) -> None:
        super().__init__(folder)
        self.provenance, self.log = provenance, log
        self.planned, self.done, self.started = 0, 0, time.perf_counter()

    def plan(self, stages: int) -> None:
        self.planned, self.done, self.started = stages, 0, time.perf_counter()

    def stage(self, stage: dict) -> None:
        """One plain line per finished training stage (a log file reads it as a terminal does)."""
        self.done += 1
        line = f"  {stage['stage']}: {stage['seconds']:.1f} s, peak {stage['peak_rss_mb']} MB"
        if self.planned:
            elapsed = time.perf_counter() - self.started
            left = elapsed / self.done * max(0, self.planned - self.done)
            line += (f" | {self.done}/{self.planned} stages, {_duration(elapsed)} elapsed, about "
                     f"{_duration(left)} of training left")
        self.log(line)

    def fits(self, fits: list[dict]) -> None:
        super().fits(fits)
        if distributed.is_main():
            write_json(self.folder / "provenance.json", self.provenance)


class WorkerStore(RunFolderStore):
    """What a worker process writes for its share of a run: models, checkpoints, metrics and
    masks (each in its own files); the run's shared files (``fits.json``, ``results.jsonl``,
    ``provenance.json``) are the parent's, written from what the workers return."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, {}, stderr_log)  # no plan: a line per stage, without the run's count

    def fits(self, fits: list[dict]) -> None:
        pass

    def records(self, records: list[dict]) -> None:
        pass

    def evidence(self, evidence: list[dict], reliability: list[dict]) -> None:
        pass


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _setup(config: RunConfig, run_dir: Path, splits: Splits | None, log: Log,
           trust_code: bool) -> tuple[Experiment, RunFolderStore]:
    check_trusted(config.encoders, str(run_dir / "config.yaml"), trust_code)
    check_unchanged(config, run_dir)
    splits = splits if splits is not None else load_data(config)
    _keep_split(run_dir, splits)
    return experiment_for(config, splits), RunFolderStore(run_dir, _provenance(run_dir, config, splits), log)


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


def train_run(run_dir: Path, log: Log = stderr_log, splits: Splits | None = None, *,
              trust_code: bool = False, jobs: int | None = None,
              pool: ProcessPoolExecutor | None = None) -> dict[int, dict[str, Method]]:
    """Stage 1 and every method, per seed; each fitted method saved as soon as it is done.

    On a folder where some of it was done (an interrupted run, resumed), saved models are
    loaded, not retrained, and an interrupted stage resumes from its last epoch checkpoint.
    An encoder the folder's config names by import path is built only with ``trust_code``.
    With several ``jobs`` (default ``train.jobs``, see :func:`seed_workers`), or a ``pool`` of
    them, the seeds still to train are trained by worker processes into the folder, wave by wave
    (:meth:`~mmrobust.experiment.Experiment.training_waves`: Stage 1 per seed beside the methods
    trained from scratch, then each method that needs Stage 1, then the composites), then loaded
    as a resume would. Workers read the data the folder's config names (not ``splits``), as
    ``--resume`` does."""
    started = time.perf_counter()
    config = read_config(run_dir)
    experiment, store = _setup(config, run_dir, splits, log, trust_code)
    pending = [seed for seed in experiment.seeds if not all(store.has(seed, name) for name in experiment.create_methods(seed))]
    with worker_pool(config, jobs, len(pending), pool) as workers:
        if workers is not None:
            log(f"training seeds {pending} in {min(seed_workers(config, jobs), len(pending))} worker processes")
            waves = [[(seed, share) for share in wave for seed in pending] for wave in experiment.training_waves(pending[0])]
            for wave in waves:
                for stages in in_workers(workers, train_share, run_dir, wave):
                    store.provenance["stages"] += stages
    fitted = experiment.fit(store, store.provenance["stages"])
    distributed.barrier()
    if distributed.is_main():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # every seed done: nothing left to resume
        _finish(run_dir, store.provenance, "train", started)
    return fitted


def evaluate_run(run_dir: Path, fitted: Mapping[int, Mapping[str, Method]] | None = None,
                 log: Log = stderr_log, splits: Splits | None = None, *, trust_code: bool = False,
                 jobs: int | None = None, pool: ProcessPoolExecutor | None = None) -> list[dict]:
    """Every protocol on the test split, per seed; models (and data) loaded from the run folder
    unless given (an import-path encoder only with ``trust_code``). With several ``jobs`` (or a
    ``pool``) the seeds are evaluated by worker processes (each loads its seed's models), joined
    in seed order."""
    started = time.perf_counter()
    config = read_config(run_dir)
    experiment, store = _setup(config, run_dir, splits, log, trust_code)
    with worker_pool(config, jobs, len(experiment.seeds), pool) as workers:
        if workers is not None:
            log(f"evaluating seeds {list(experiment.seeds)} in {min(seed_workers(config, jobs), len(experiment.seeds))} "
                "worker processes")
            parts = in_workers(workers, evaluate_seed, run_dir, [(seed,) for seed in experiment.seeds])
            for _, stages in parts:
                store.provenance["stages"] += stages
            records = experiment.combine([evaluation for evaluation, _ in parts], store, store.provenance["stages"]).records
        else:
            fitted = fitted if fitted is not None else _load_fitted(experiment, store)
            records = experiment.evaluate(fitted, store, store.provenance["stages"]).records
    _finish(run_dir, store.provenance, "evaluate", started)
    return records


def seed_workers(config: RunConfig, jobs: int | None = None) -> int:
    """Worker processes for a run's independent seeds: ``jobs``, else ``train.jobs``, else as
    many as the cores allow at ``train.threads`` (one on a GPU, and one under torchrun)."""
    if distributed.world_size() > 1:
        return 1
    wanted = jobs if jobs is not None else config.train.jobs
    return resolve_jobs(wanted, config.train.threads, str(resolve_device(config.train.device)))


@contextlib.contextmanager
def worker_pool(config: RunConfig, jobs: int | None, seeds: int,
                pool: ProcessPoolExecutor | None = None) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for ``seeds`` independent seeds: ``pool`` when given (the caller's, for
    several steps), else a new one of :func:`seed_workers` processes; ``None`` when fewer than two
    seeds or workers would share the work (it is then done here)."""
    if seeds < 2 or (pool is None and seed_workers(config, jobs) < 2):
        yield None
    elif pool is not None:
        yield pool
    else:
        with new_pool(min(seed_workers(config, jobs), seeds)) as own:
            yield own


def new_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` processes, spawned (a fork of a process whose torch threads have run can hang)
    when first needed, each killed when this process dies (a killed run leaves nobody writing
    its folder)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def in_workers(pool: ProcessPoolExecutor, task: Callable, run_dir: Path, shares: list[tuple]) -> list:
    """``task(run_dir, *share)`` for each share on ``pool``; the results in the shares' order. A
    worker that dies (killed by the system) is one error saying how to go on, not a traceback."""
    futures = [pool.submit(task, str(run_dir), *share) for share in shares]
    try:
        return [future.result() for future in futures]
    except BrokenProcessPool:
        raise WorkerError(f"{run_dir}: a worker process died during {task.__name__.strip('_').replace('_', ' ')} (killed by the "
                          f"system: out of memory?); every stage it finished is saved: `mmrobust run --resume "
                          f"{run_dir}` goes on (add --jobs 1 to use one process)") from None


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when the process that started it dies (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


_worker_data: dict[str, Splits] = {}  # in a worker process: each run's data, read once for all its tasks


def _seed_experiment(run_dir: Path, seed: int) -> tuple[Experiment, WorkerStore, RunConfig]:
    """In a worker: the run's experiment reduced to one seed, on the data read again (once)."""
    config = dataclasses.replace(read_config(run_dir), seeds=[seed])
    key = str(Path(run_dir).resolve())
    if key not in _worker_data:
        _worker_data[key] = load_data(config, log=lambda message: None)  # what it found, the parent said
    return experiment_for(config, _worker_data[key]), WorkerStore(run_dir), config


def train_share(run_dir: str, seed: int, names: list[str]) -> list[dict]:
    """A worker's task: train methods ``names`` of one seed into the run folder (what they need
    comes from it); returns the stages' time and memory."""
    experiment, store, _ = _seed_experiment(Path(run_dir), seed)
    stages: list[dict] = []
    experiment.fit_share(seed, names, store, stages)
    return stages


def evaluate_seed(run_dir: str, seed: int) -> tuple[SeedEvaluation, list[dict]]:
    """A worker's task: evaluate one seed's saved models; returns its evaluation and stages."""
    experiment, store, config = _seed_experiment(Path(run_dir), seed)
    stages: list[dict] = []
    with cpu_threads(config.train.threads):
        evaluation = experiment.evaluate_seed(seed, _load_fitted(experiment, store)[seed], store, stages)
    return evaluation, stages


def _load_fitted(experiment: Experiment, store: RunFolderStore) -> dict[int, dict[str, Method]]:
    """Every fitted method of the run, from its saved models."""
    fitted = {}
    for seed in experiment.seeds:
        fitted[seed] = {}
        for name, method in experiment.create_methods(seed).items():
            path = store.model_path(seed, name)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no saved model (was `mmrobust train` run for this folder?)")
            fitted[seed][name] = store.restore(seed, name, method)
    return fitted


def new_run(config: RunConfig, out: Path | None = None, log: Log = stderr_log) -> tuple[Path, Splits]:
    """A new run folder and its data, the data read and validated and the experiment checked
    (device, methods, protocols, options) first: a run that cannot start leaves no folder behind."""
    check_new_folder(out)
    stages: list[dict] = []
    with measure(stages, "data: read, validated, features extracted"):
        splits = load_data(config)
    experiment_for(config, splits)
    run_dir = create_run_dir(config, out)
    log(f"run folder: {run_dir} (data read and checked in {stages[0]['seconds']:.1f} s)")
    if distributed.is_main():
        provenance = _provenance(run_dir, config, splits)
        provenance["stages"] += stages
        provenance.update(config=config_to_dict(config), config_sha256=config_sha256(config))
        write_json(run_dir / "provenance.json", provenance)
    return run_dir, splits


def run_all(config: RunConfig, out: Path | None = None, log: Log = stderr_log, *, jobs: int | None = None) -> Path:
    """The whole pipeline into a new run folder; returns the path of the report."""
    run_dir, splits = new_run(config, out, log)
    with run_lock(run_dir):
        return _train_evaluate_report(run_dir, log, splits, trust_code=True, jobs=jobs)  # the caller's own config


def resume_all(run_dir: Path, log: Log = stderr_log, *, trust_code: bool = False, jobs: int | None = None) -> Path:
    """Finish an interrupted run in its own folder (finished stages kept); returns the report's path."""
    log(f"resuming: {run_dir}")
    with run_lock(Path(run_dir)):
        for leftover in Path(run_dir).glob(".*.tmp"):  # a file half-written when the run was killed
            leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover, ignore_errors=True)
        return _train_evaluate_report(Path(run_dir), log, trust_code=trust_code, jobs=jobs)


def _train_evaluate_report(run_dir: Path, log: Log, splits: Splits | None = None, *, trust_code: bool,
                           jobs: int | None = None) -> Path:
    config = read_config(run_dir)
    splits = splits if splits is not None else load_data(config)  # read and validated once for the three steps
    with worker_pool(config, jobs, len(config.seeds)) as pool:  # one pool: its workers start once
        fitted = train_run(run_dir, log, splits, trust_code=trust_code, jobs=jobs, pool=pool)
        if distributed.is_main():  # the models are the same on every rank: rank 0 evaluates and reports
            evaluate_run(run_dir, fitted, log, splits, trust_code=trust_code, jobs=jobs, pool=pool)
    if distributed.is_main():
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
    seed, method = max(candidates, key=lambda c: c[1].val_score_)
    config = read_config(run_dir)
    splits = splits if splits is not None else load_data(config)
    train = splits.train
    inputs = {m: splits.inputs.get(m) or default_spec(train.inputs[m].shape[1:]) for m in method.modalities}
    labels = train.label_names or [str(i) for i in range(train.num_classes)]
    val = with_training_missing(splits.val, config.train_missing, seed, "val")  # the rows this seed's model saw
    calibration = fit_calibration(method, val, config.calibration)
    gate = experiment_for(config, splits).fit_gate(fitted_by_seed[seed], with_training_missing(train, config.train_missing, seed, "train"), val) \
        if config.gate == "on" else None
    card = model_card(run_dir, config, seed, method, inputs, gate)
    predictor = Predictor(method, inputs, labels, card=card, calibration=calibration, gate=gate)
    folder = predictor.save_pretrained(run_dir / "model")
    log(f"model: {folder} (seed {seed}; per presence pattern it uses {choice_text(method.fit_summary())})")
    return folder


RULE = ("the paper's UME-or-MMA choice unless a uni-modal model of a present modality, the weighted ensemble or MMA "
        "beats it by more than a validation standard error, then the simplest within one of the best")


def model_card(run_dir: Path, config: RunConfig, seed: int, method: Method, inputs: Mapping[str, dict],
               gate=None) -> str:
    """What the model is, what it does to each input, and how the run evaluated it: the main
    table, rendered from the run's records."""
    evidence = read_jsonl(run_dir / "evidence.jsonl") if (run_dir / "evidence.jsonl").is_file() else []
    table = main_table(read_jsonl(run_dir / "results.jsonl"), evidence)
    return "\n".join([
        f"# mmrobust model: UME-MMA on `{config.data.name}`", "",
        f"Modalities: {', '.join(method.modalities)}, any subset at prediction time. Seed {seed} of {config.seeds} "
        f"(the best validation score). Per presence pattern it uses, as chosen on validation: {choice_text(method.fit_summary())} "
        f"({RULE}; the report's routing table shows the scores).", "",
        "Use: `mmrobust predict model --input <modality>=<file or text>` (any subset), or "
        "`mmrobust.Predictor.load('model').predict({...})`. What `predict` does to each input, as training did "
        "(the spec is in `config.json`):", "",
        *[f"- {m}: {describe_input(spec)}" for m, spec in sorted(inputs.items())], "",
        f"Calibration: `{config.calibration}` temperature scaling fitted on the validation split "
        "(`calibration.json`; probabilities are scaled for the presence pattern of each request). "
        "`--coverage 0.9` (`coverage=0.9`) adds a conformal label set whose coverage holds within each presence "
        "pattern; `--abstain` answers *unsure* when that set is not a single label. The report's per-pattern "
        "tables show how well each holds on the test split.", "",
        *([f"Input gate ({gate.detector}; `gate.safetensors`): an input less plausible than "
           f"{100 * (1 - gate.false_alarms):g}% of the clean validation inputs of its modality is treated as missing "
           "(the prediction's `ignored` says which and why; `--gate off` turns it off). Thresholds: "
           + ", ".join(f"{m} {g.threshold:.1f}" for m, g in sorted(gate.gates.items()))
           + ". The report's Silent failures table shows what it catches.", ""] if gate is not None else []),
        f"Evaluation of the run (test split, mean ± std over seeds {config.seeds}, 95% bootstrap interval in "
        "brackets; accuracy or F1 in %):", "",
        *table, "", "The full report, with the protocols: `../report.md`.", ""])


def _provenance(run_dir: Path, config: RunConfig, splits: Splits) -> dict:
    path = run_dir / "provenance.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"environment": environment(resolve_device(config.train.device), resolve_threads(config.train.threads)),
            "dataset": splits.info,
            "stages": [], "commands": [],
            "config": config_to_dict(config), "config_sha256": config_sha256(config)}  # its fingerprint from birth


def _finish(run_dir: Path, provenance: dict, command: str, started: float) -> None:
    provenance["commands"].append({"command": command, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "seconds": round(time.perf_counter() - started, 2)})
    write_json(run_dir / "provenance.json", provenance)
