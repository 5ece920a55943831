"""Run configuration: typed dataclasses, YAML presets, ``--set key=value`` overrides.

The fully resolved configuration is saved in every run folder (``config.yaml``); a run can
be repeated from it alone. Pure (no torch): the command line parses and checks a config
before anything heavy is imported.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, Union

import yaml

from .calibration import check_mode
from .errors import ConfigError
from .registry import PAPER_METHODS

BAD_INPUT_POLICIES = ("error", "missing")  # stop, naming the input | treat the modality as missing


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")
PRECISIONS = ("fp32", "bf16")
GATE_MODES = ("on", "off")
GATE_DETECTORS = ("auto", "mahalanobis", "energy", "knn", "none")  # mmrobust.gate
GATE_FALSE_ALARMS = 0.005  # benchmarks/failures/RESULTS.md: 1% on validation gave up to 2.8% on held-out speakers
# the soft gate: an input's weight falls from 1 at its threshold to 0 this many clean spreads above it (not a measured
# optimum: on the digits' validation rows degraded by noise, contrast and shift every ramp above 0 did worse than the
# hard gate at its worst condition; benchmarks/degraded/choose_ramp.py; it is reported to show the trade)
GATE_SOFT_RAMP = 4.0


@dataclass
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: str = "none"  # none | cosine | step
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor
    patience: int | None = None  # early stopping: epochs without a better validation score
    grad_clip: float | None = None  # max gradient norm
    eval_batch_size: int = 512
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    progress: bool = False  # show a progress bar
    precision: str = "fp32"  # fp32 | bf16 (autocast of the training step)
    channels_last: bool = False  # CNN weights in channels_last memory format (faster convolutions on GPUs)
    compile: bool = False  # torch.compile each encoder (dynamic shapes: encoders see only present rows)
    threads: int | None = None  # CPU threads of torch; None: half the cores (benchmarks/speed: spinning threads
    #                             on a busy machine cost several-fold; results depend on this number)
    jobs: int | None = None  # worker processes for independent seeds; None: as many as the cores allow at
    #                          `threads` threads (one on a GPU). Records do not depend on it (not in the fingerprint)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null: half the cores), got {self.threads}")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1 (or null: as many as the cores allow), got {self.jobs}")

    def scaled(self, lr_scale: float, epoch_fraction: float) -> "TrainConfig":
        """The fine-tuning settings: ``lr * lr_scale`` for ``ceil(epochs * epoch_fraction)`` epochs."""
        return dataclasses.replace(self, lr=self.lr * lr_scale, epochs=max(1, math.ceil(self.epochs * epoch_fraction)))


@dataclass
class DataConfig:
    """Which data: a registered dataset and its arguments."""

    name: str = "digits"  # a registered dataset (see `mmrobust list`)
    root: str | None = None  # the dataset's folder, for datasets read from disk
    limit: int | None = None  # keep the first N rows of each split (quick runs)
    options: dict[str, Any] = field(default_factory=dict)  # further keyword arguments of the dataset
    on_bad_input: str = "error"  # error: stop, naming the row | missing: treat the bad modality as missing

    def __post_init__(self) -> None:
        if self.on_bad_input not in BAD_INPUT_POLICIES:
            raise ConfigError(f"on_bad_input must be one of {BAD_INPUT_POLICIES}, got {self.on_bad_input!r}")


@dataclass
class RunConfig:
    """Everything a run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    methods: list[str] = field(default_factory=lambda: list(PAPER_METHODS))
    protocols: list[str] | None = None  # None: full, each miss:<m>, each sweep:<m>, subsets
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=64, lr=1e-3))
    encoders: dict[str, Any] = field(default_factory=dict)  # modality -> {name: ..., kwargs} or a name; empty: dataset defaults
    method_options: dict[str, dict] = field(default_factory=dict)  # method -> keyword arguments
    train_missing: dict[str, float] = field(default_factory=dict)  # modality (or 'both', MAP) -> share of training rows without it
    calibration: str = "per-pattern"  # temperature scaling fitted on validation: per-pattern | global | none
    gate: str | bool = "on"  # on: an implausible present input is treated as missing (mmrobust.gate) | off
    gate_detector: str = "auto"  # auto (the input parts; mahalanobis for tokens) | mahalanobis | energy | knn | none
    gate_false_alarms: float = GATE_FALSE_ALARMS  # the share of clean validation inputs of a modality the gate may ignore

    def __post_init__(self) -> None:
        check_mode(self.calibration)
        if isinstance(self.gate, bool):  # YAML reads a bare on / off (--set gate=off) as a boolean
            self.gate = "on" if self.gate else "off"
        if self.gate not in GATE_MODES:
            raise ConfigError(f"gate must be one of {GATE_MODES}, got {self.gate!r}")
        if self.gate_detector not in GATE_DETECTORS:
            raise ConfigError(f"gate_detector must be one of {GATE_DETECTORS}, got {self.gate_detector!r}")
        if not 0.0 < self.gate_false_alarms < 1.0:
            raise ConfigError(f"gate_false_alarms must lie strictly between 0 and 1, got {self.gate_false_alarms!r}")
        if not self.seeds:
            raise ConfigError("seeds: give at least one training seed (e.g. seeds=[0])")
        if self.protocols is not None and not self.protocols:
            raise ConfigError("protocols=[] evaluates nothing: give at least one (e.g. protocols=[full]), or leave "
                              "protocols out for the defaults")
        if self.train.epochs < 1:
            raise ConfigError(f"train.epochs={self.train.epochs} trains nothing: every model would stay at its random "
                              "initialisation; give 1 or more")


def list_presets() -> list[str]:
    folder = resources.files("mmrobust") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


MAX_YAML_DEPTH = 50  # a config is a few levels deep


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: a config never needs ``*name``, and nested aliases
    (a "billion laughs") expand into exponentially many values once the config is walked."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config",
                                              self.peek_event().start_mark)
        self.depth = getattr(self, "depth", 0) + 1
        try:
            if self.depth > MAX_YAML_DEPTH:  # deeper, and composing it would exhaust Python's recursion
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str) -> Any:
    """A config's YAML: safe (no Python objects), no aliases."""
    return yaml.load(text, Loader=_ConfigLoader)


def load_config(name_or_path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A preset name or a YAML file (default: the `digits` preset), then ``key=value`` overrides."""
    data = _read_yaml(name_or_path or "digits")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = load_yaml(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({yaml_error_text(err)})") from None
        _set_dotted(data, key.strip(), value)
    return config_from_dict(data)


def _read_yaml(name_or_path: str | Path) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        source = path.read_text(encoding="utf-8")
    elif str(name_or_path) in list_presets():
        source = (resources.files("mmrobust") / "presets" / f"{name_or_path}.yaml").read_text(encoding="utf-8")
    else:
        raise ConfigError(f"unknown config {str(name_or_path)!r}: not a file, and not a preset ({', '.join(list_presets())})")
    try:
        data = load_yaml(source) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{name_or_path}: not valid YAML ({yaml_error_text(err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping of keys to values")
    return data


def yaml_error_text(err: Exception) -> str:
    """A YAML error on one line (its message spans several), cut to a readable length."""
    return " ".join(str(err).split())[:200]


def _set_dotted(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[last] = value


def config_from_dict(data: dict) -> RunConfig:
    """A RunConfig from plain data, every key and type checked."""
    return _build(RunConfig, data, "")


def config_to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


def config_sha256(config: RunConfig) -> str:
    """A fingerprint of the resolved configuration (key order does not matter), without the
    settings that cannot change a result (:data:`SCHEDULING`): a run may resume with other ones."""
    return hashlib.sha256(json.dumps(_without_scheduling(config_to_dict(config)), sort_keys=True).encode("utf-8")).hexdigest()


SCHEDULING = ("jobs",)  # train settings that change how fast a run goes, never what it records


def _without_scheduling(data: dict) -> dict:
    train = {k: v for k, v in data.get("train", {}).items() if k not in SCHEDULING}
    return {**data, "train": train} if "train" in data else data


def config_differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every key (dotted) whose value differs."""
    out = []
    saved, wanted = (_without_scheduling(saved), _without_scheduling(wanted)) if not prefix else (saved, wanted)
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; known keys here: {', '.join(sorted(known))}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _check(value, hint, f"{prefix}{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from err


def _check(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        for arm in arms[1:]:  # the first arm that takes the value (the first gives the error message)
            if isinstance(arm, type) and isinstance(value, arm) and not (arm in (int, float) and isinstance(value, bool)):
                return value
        return _check(value, arms[0], key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        return [_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} expects a mapping, got {value!r}")
        return {_check(k, args[0], key): _check(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"config key {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
