"""A trained model in use: ``model/`` on disk, and predictions from whatever modalities arrive.

    model/config.json        method, encoders, input specs (mmrobust.inputs), labels, settings
    model/weights.safetensors  the fitted method (UME members and the MMA model, with its choice)
    model/calibration.json   temperatures per presence pattern and the validation rows' conformal
                             scores (multi-class models; see mmrobust.calibration)
    model/gate.safetensors   the input gate (optional): per modality its uni-modal model, training
                             statistics and threshold (config.json: detector, thresholds); an
                             implausible input is ignored and the prediction says so
    model/model_card.md      what it is, how it was evaluated, how to use it

Loading needs the library, never the training data; pre-trained extractors are referenced by
package, version and weights sha256 (and checked when used), not copied.

    predictor = Predictor.load("runs/.../model")
    predictor.predict({"image": "a.png", "audio": None})     # -> Prediction(label, probabilities, used)
    predictor.predict({"image": "a.png"}, coverage=0.9, abstain=True)  # + label_set; label None if unsure
"""
from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .batch import scatter_rows
from .calibration import Calibration
from .checkpoint import load_method, save_method
from .encoders import EncoderSpec, build_encoder, check_trusted, import_paths
from .gate import InputGate
from .models import UnimodalClassifier
from .errors import ConfigError, InputError, ModelFileError
from .files import atomic_path, disk_full, write_json, write_text
from .inputs import default_spec, gate_inputs, prepare
from .methods import Method, create_method
from .protocols import nonempty_subsets, pattern_name
from .config import TrainConfig
from .version import __version__

FORMAT = "mmrobust.model/3"  # 2: the method's own parameters (get_params); 3: ume-mma routes per presence pattern


@dataclass
class Prediction:
    label: str | list[str] | None  # multi-label: every label with probability >= 0.5; None: unsure
    probabilities: dict[str, float]  # temperature-scaled for the pattern of ``used`` when calibrated
    used: list[str]  # the modalities the request gave (its presence pattern)
    label_set: list[str] | None = None  # with a coverage: the conformal prediction set
    unsure: bool = False  # with abstain: the set is not a single label
    answered_by: str | None = None  # what answered that pattern: UME-MMA's choice (``unimodal:text``, ``mma`` ...)
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)  # modality -> why the input gate ignored it
    # modality -> why the gate found it implausible, though it answered: nothing else was given (a row
    # never loses every modality); with abstain, such an answer is unsure
    implausible: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Predictor:
    """A fitted method with what it needs to read raw inputs: input specs and label names."""

    def __init__(self, method: Method, inputs: Mapping[str, dict], label_names: Sequence[str], *,
                 card: str | None = None, calibration: Calibration | None = None, gate: InputGate | None = None) -> None:
        self.method, self.label_names = method, list(label_names)
        self.inputs = dict(inputs)
        self.modalities = list(method.modalities)
        self.card = card
        self.calibration = calibration
        self.gate = gate

    # pragma: no mutate start (files and manifests: the hardening tests' ground, not the mutation campaign's)
    # --- files ---------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        method = self.method
        config = {"format": FORMAT, "mmrobust_version": __version__, "method": method.registry_name,
                  "params": method.get_params(), "seed": method.seed, "num_classes": method.num_classes,
                  "task": method.task, "label_names": self.label_names, "modalities": self.modalities,
                  "encoders": {m: _spec_dict(s) for m, s in method.encoders.items()}, "inputs": self.inputs,
                  "train": dataclasses.asdict(method.train_config),
                  "calibration": self.calibration.mode if self.calibration else None,
                  "needs_trust_code": bool(import_paths(method.encoders)),
                  "gate": self.gate.to_dict() if self.gate is not None else None,
                  "routing": {pattern_name(subset): method.answered_by(pattern_name(subset))  # what answers each pattern
                              for subset in nonempty_subsets(method.modalities)}}
        tmp = folder.with_name(f".{folder.name}.tmp")  # complete or absent: written aside, then renamed
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self._write(tmp, config)
        except (OSError, RuntimeError, SafetensorError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(err, tmp.parent):
                raise OSError(errno.ENOSPC, f"{folder}: the disk is full while writing the model; nothing was "
                                            "replaced (free some space, then save it again)") from None
            raise
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder

    def _write(self, tmp: Path, config: dict) -> None:
        """Every file of the model folder, into ``tmp``."""
        save_method(self.method, tmp / "weights.safetensors")
        write_json(tmp / "config.json", config)
        if self.calibration is not None:
            write_json(tmp / "calibration.json", self.calibration.to_dict())
        if self.gate is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.gate.state_tensors().items()},
                      str(tmp / "gate.safetensors"), metadata={"mmrobust": json.dumps(_gate_identity(tmp, config["gate"]))})
        write_text(tmp / "model_card.md", self.card or _card(config))

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None, *, trust_code: bool = False) -> "Predictor":
        """A saved model. It builds registered parts only: an encoder named by an import path
        (a user's own, recorded as ``needs_trust_code``) is refused unless ``trust_code``."""
        folder = Path(folder)
        path = folder / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: not a saved model (no config.json)")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{path}: not valid JSON ({err})") from None
        check_model_config(config, path)
        check_trusted(config.get("encoders", {}), str(path), trust_code)
        if len(config.get("label_names", [])) != config.get("num_classes"):
            raise ModelFileError(f"{path}: {len(config.get('label_names', []))} label_names for "
                                 f"{config.get('num_classes')} classes")
        if config.get("format") != FORMAT:
            raise ModelFileError(f"{path}: format {config.get('format')!r}, expected {FORMAT!r}"
                                 + (" (a model saved by an earlier mmrobust: train it again)" if
                                    str(config.get("format", "")).startswith("mmrobust.model/") else ""))
        train = TrainConfig(**{**config["train"], **({"device": device} if device else {}), "progress": False})
        encoders = {m: EncoderSpec(d["name"], **{k: v for k, v in d.items() if k != "name"}) for m, d in config["encoders"].items()}
        try:
            method = create_method(config["method"], encoders=encoders, num_classes=config["num_classes"], task=config["task"],
                                   seed=config["seed"], train_config=train, **config["params"])
            method = load_method(method, folder / "weights.safetensors")
        except (TypeError, KeyError, AttributeError, ValueError, IndexError) as err:  # a hand-edited file
            raise ModelFileError(f"{folder}: the model's files do not fit together ({type(err).__name__}: {err}); "
                                 "config.json or the weights' metadata was edited") from None
        card = (folder / "model_card.md").read_text(encoding="utf-8") if (folder / "model_card.md").is_file() else None
        return cls(method, config["inputs"], config["label_names"], card=card, calibration=_read_calibration(folder, config),
                   gate=_read_gate(folder, config, encoders, method.device))

    from_pretrained = load

    # pragma: no mutate end
    # --- predictions -------------------------------------------------------------------------
    def predict(self, sample: Mapping[str, Any] | Sequence[Mapping[str, Any]], base: str | Path = ".", *,
                coverage: float | None = None, abstain: bool = False, gate: bool = True) -> Any:
        """One sample (a dict modality -> array, path or text; ``None`` or absent = missing) or a
        list of them; paths relative to ``base``. With ``coverage`` (e.g. 0.9) each prediction
        carries its conformal label set, calibrated for its presence pattern; with ``abstain``
        the label is ``None`` (``unsure``) when that set is not a single label. With the model's
        input gate (``gate=False`` turns it off) an implausible input is treated as missing:
        ``ignored`` says which and why, ``used`` lists what answered."""
        one = isinstance(sample, Mapping)
        rows = [sample] if one else list(sample)
        predictions = self._predict_rows(rows, Path(base), coverage, abstain, gate=gate)
        return predictions[0] if one else predictions

    def _predict_rows(self, rows: Sequence[Mapping[str, Any]], base: Path, coverage: float | None, abstain: bool,
                      names: Sequence[str] | None = None, *, gate: bool) -> list[Prediction]:
        names = names or [f"sample {i}" for i in range(len(rows))]
        if abstain and coverage is None:
            raise ConfigError("abstain needs a coverage (e.g. coverage=0.9): the model abstains when its set is not one label")
        if coverage is not None and self.calibration is None:
            raise ConfigError("this model has no conformal calibration (multi-label, or saved without a validation split)")
        for i, row in enumerate(rows):
            unknown = sorted(set(row) - set(self.modalities))
            if unknown:
                raise InputError(f"{names[i]}: unknown modality {unknown[0]!r}; this model takes {', '.join(self.modalities)}")
        present = {m: np.array([_given(row.get(m)) for row in rows]) for m in self.modalities}
        empty = [i for i in range(len(rows)) if not any(present[m][i] for m in self.modalities)]
        if empty:
            raise InputError(f"{names[empty[0]]}: no modality given; this model takes any of {', '.join(self.modalities)}")
        inputs = {m: self._column(m, rows, present[m], base) for m in self.modalities}
        ignored, implausible = (self._gate(inputs, present, rows, base) if gate and self.gate is not None
                                else ([{} for _ in rows], [{} for _ in rows]))
        present = {m: p & np.array([m not in why for why in ignored]) for m, p in present.items()}
        used = [[m for m in self.modalities if present[m][i]] for i in range(len(rows))]
        patterns = [pattern_name(u) for u in used]
        if coverage is not None:
            self.calibration.check_rows(patterns, coverage)
        raw = self.method.predict_proba(inputs, {m: torch.from_numpy(p) for m, p in present.items()})
        proba = self.calibration.calibrate(raw, patterns) if self.calibration is not None else raw
        bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
        if len(bad):
            raise ModelFileError(f"{names[bad[0]]}: the model gave non-finite probabilities (its weights or calibration "
                                 "are broken); no answer is given")
        sets = self.calibration.prediction_sets(raw, patterns, coverage) if coverage is not None else [None] * len(rows)
        return [self._prediction(p, u, s, abstain, self.method.answered_by(pattern), why, kept)
                for p, u, s, pattern, why, kept in zip(proba, used, sets, patterns, ignored, implausible)]

    def _gate(self, inputs: Mapping[str, Any], present: Mapping[str, np.ndarray], rows,
              base: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Per row: the modalities the input gate ignores, and those it finds implausible but keeps
        (a row never loses every modality), each with its reason."""
        raw = {m: self._column(m, rows, present[m], base, for_gate=True) for m, g in self.gate.gates.items() if g.reads_raw}
        scores = self.gate.scores(inputs, {m: present[m] for m in self.gate.modalities}, raw)
        flagged = self.gate.ignored(scores)
        above = {m: np.nan_to_num(scores[m], nan=-np.inf) > self.gate.gates[m].threshold for m in scores}
        n = len(next(iter(present.values())))
        return ([{m: self.gate.reason(m, scores[m][i]) for m in scores if flagged[m][i]} for i in range(n)],
                [{m: self.gate.reason(m, scores[m][i]) for m in scores if above[m][i] and not flagged[m][i]} for i in range(n)])

    def _column(self, m: str, rows, present: np.ndarray, base: Path, for_gate: bool = False):
        """Modality ``m`` of ``rows`` as the model's input (``for_gate``: as an input gate that
        reads raw inputs reads it, :func:`mmrobust.inputs.gate_inputs`)."""
        if not present.any():
            return None
        values = [row[m] for row, given in zip(rows, present) if given]
        spec = self.inputs.get(m) or default_spec(np.asarray(values[0]).shape)
        batch = (gate_inputs if for_gate else prepare)(m, spec, values, base)
        return scatter_rows(batch, np.flatnonzero(present), len(rows))

    def _prediction(self, proba: np.ndarray, used: list[str], label_set: np.ndarray | None, abstain: bool,
                    answered_by: str, ignored: dict[str, str] | None = None,
                    implausible: dict[str, str] | None = None) -> Prediction:
        probabilities = {name: float(p) for name, p in zip(self.label_names, proba)}
        if self.method.task == "multilabel":
            label = [name for name, p in probabilities.items() if p >= 0.5]
        else:
            label = self.label_names[int(np.argmax(proba))]
        said = {"answered_by": answered_by, "ignored": dict(ignored or {}), "implausible": dict(implausible or {})}
        if label_set is None:
            return Prediction(label, probabilities, used, **said)
        names = [n for n, keep in zip(self.label_names, label_set) if keep]
        unsure = abstain and (len(names) != 1 or bool(implausible))
        return Prediction(None if unsure else label, probabilities, used, label_set=names, unsure=unsure, **said)

    # pragma: no mutate start (manifests and bad cells: the hardening tests' ground, not the mutation campaign's)
    def predict_manifest(self, manifest: str | Path, out: str | Path, batch_size: int = 64, progress: bool | None = None,
                         *, coverage: float | None = None, abstain: bool = False, on_bad_input: str = "error",
                         gate: bool = True) -> Path:
        """Predictions for every row of a CSV / JSONL manifest (columns named as the modalities),
        written to ``out`` (CSV: id, label, used, answered_by, ignored (``modality: reason``, ``; ``-joined),
        implausible (inputs the gate doubted but kept: nothing else was given, the same way),
        one probability column per label; with a
        ``coverage``, also the label set (``|``-joined) and ``unsure``; an unsure label is empty).

        A bad cell (unreadable file, wrong shape, ...) is an error naming the manifest line and id;
        with ``on_bad_input="missing"`` that modality is dropped for the row (``used`` says what
        the prediction was made from) and a row with nothing usable gets an empty label."""
        from .config import BAD_INPUT_POLICIES
        from .data.manifest import default_id, read_rows

        if on_bad_input not in BAD_INPUT_POLICIES:
            raise ConfigError(f"on_bad_input must be one of {BAD_INPUT_POLICIES}, got {on_bad_input!r}")
        manifest, out = Path(manifest), Path(out)
        header, rows, lines = read_rows(manifest)
        if not rows:
            raise InputError(f"{manifest}: no rows to predict (only a header)")
        columns = [m for m in self.modalities if m in header]
        if not columns:
            raise InputError(f"{manifest}: no column named like a modality of this model ({', '.join(self.modalities)})")
        samples = [{m: row[m] or None for m in columns} for row in rows]
        ids = [row.get("id") or default_id(line) for row, line in zip(rows, lines)]
        where = [f"{manifest}, line {line} (id {sample_id!r})" for line, sample_id in zip(lines, ids)]
        predictions: list[Prediction | None] = []
        for start in tqdm(range(0, len(samples), batch_size), desc="predict", unit="batch",
                          disable=True if progress is False else None):
            batch = slice(start, start + batch_size)
            try:
                predictions += self._predict_rows(samples[batch], manifest.parent, coverage, abstain, gate=gate)
            except InputError:  # find the row (and the cell) at fault
                predictions += [self._predict_row(sample, place, manifest.parent, coverage, abstain, on_bad_input, gate=gate)
                                for sample, place in zip(samples[batch], where[batch])]
        sets = ["set", "unsure"] if coverage is not None else []
        lines = [["id", "label", *sets, "used", "answered_by", "ignored", "implausible", *self.label_names]]
        for sample_id, p in zip(ids, predictions):
            if p is None:  # nothing usable in this row (policy missing)
                lines.append([sample_id, "", *[""] * len(sets), "", "", "", "", *[""] * len(self.label_names)])
                continue
            label = "|".join(p.label) if isinstance(p.label, list) else (p.label or "")
            extra = ["|".join(p.label_set), int(p.unsure)] if coverage is not None else []
            lines.append([sample_id, label, *extra, "+".join(p.used), p.answered_by,
                          "; ".join(f"{m}: {why}" for m, why in sorted(p.ignored.items())),
                          "; ".join(f"{m}: {why}" for m, why in sorted(p.implausible.items())),
                          *(f"{p.probabilities[n]:.6f}" for n in self.label_names)])
        with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(lines)
        return out

    def _predict_row(self, sample: Mapping[str, Any], where: str, base: Path, coverage: float | None, abstain: bool,
                     on_bad_input: str, *, gate: bool) -> Prediction | None:
        """One manifest row; a bad cell is an error naming the row, or (``missing``) is dropped."""
        try:
            return self._predict_rows([sample], base, coverage, abstain, names=[where], gate=gate)[0]
        except InputError as err:
            if on_bad_input == "error":
                message = str(err) if str(err).startswith(where) else f"{where}: {err}"
                raise InputError(message + " (or use --on-bad-input missing)") from None
        usable = {m: v for m, v in sample.items() if _given(v) and self._readable(m, v, base)}
        return self._predict_rows([usable], base, coverage, abstain, gate=gate)[0] if usable else None

    def _readable(self, modality: str, value: Any, base: Path) -> bool:
        try:
            self._column(modality, [{modality: value}], np.array([True]), base)
            return True
        except InputError:
            return False
    # pragma: no mutate end


# pragma: no mutate start (model files: see above)
MODEL_KEYS = {"format": str, "method": str, "encoders": dict, "num_classes": int, "task": str, "seed": int,
              "train": dict, "params": dict, "inputs": dict, "label_names": list}


def check_model_config(config: Any, path: Path) -> None:
    """``config.json`` against its schema, before anything is built from it (one line naming the
    key, never a traceback from deep inside)."""
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got a {type(config).__name__}")
    for key, kind in MODEL_KEYS.items():
        if key not in config:
            raise ModelFileError(f"{path}: no {key!r} (a model folder written by `mmrobust run` or save_pretrained has it)")
        if not isinstance(config[key], kind) or (kind is int and isinstance(config[key], bool)):
            raise ModelFileError(f"{path}: {key!r} is a {type(config[key]).__name__}, expected a {kind.__name__}")
    for m, entry in config["encoders"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ModelFileError(f"{path}: encoders.{m} is {entry!r}; expected an object with a 'name'")
    unknown = sorted(set(config["train"]) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ModelFileError(f"{path}: unknown train setting(s) {unknown}")
    if not set(config["encoders"]) <= set(config["inputs"]) or not all(
            isinstance(spec, dict) and "kind" in spec for spec in config["inputs"].values()):
        raise ModelFileError(f"{path}: 'inputs' must describe each modality of 'encoders' ({sorted(config['encoders'])}) "
                             "with its 'kind'")


def _read_calibration(folder: Path, config: dict) -> Calibration | None:
    path = folder / "calibration.json"
    if not config.get("calibration"):
        return None
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (config.json says the model is calibrated: {config['calibration']})")
    patterns = [pattern_name(s) for s in nonempty_subsets(sorted(config["encoders"]))]
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")), patterns)
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise ModelFileError(f"{path}: not a valid calibration file ({err})") from None


def _read_gate(folder: Path, config: dict, encoders: Mapping[str, EncoderSpec], device) -> InputGate | None:
    """The input gate saved with the model, its uni-modal models rebuilt from the encoder specs."""
    if not config.get("gate"):
        return None
    path = folder / "gate.safetensors"
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (config.json describes an input gate)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            identity = json.loads((f.metadata() or {}).get("mmrobust", "null"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({err})") from None
    expected = _gate_identity(folder, config["gate"])
    if identity is not None and identity.get("weights_sha256") != expected["weights_sha256"]:
        raise ModelFileError(f"{path}: the gate of another model (it names weights {str(identity.get('weights_sha256'))[:12]}..., "
                             f"this folder's are {expected['weights_sha256'][:12]}...); copy the model folder whole")
    if identity is not None and identity.get("reads") != expected["reads"]:
        raise ModelFileError(f"{folder / 'config.json'}: the gate reads {identity.get('reads')} as saved, but config.json "
                             f"says {expected['reads']}; restore the 'reads' entries")
    modalities = config["gate"].get("modalities", {}) if isinstance(config["gate"], dict) else {}
    unknown = sorted(set(modalities) - set(encoders))
    if unknown:
        raise ModelFileError(f"{folder / 'config.json'}: the gate names modalities without an encoder: {unknown}")
    models = {m: UnimodalClassifier(build_encoder(encoders[m], m), config["num_classes"]) for m in modalities}
    gate = InputGate.restore(config["gate"], tensors, models, str(path))
    for m, g in gate.gates.items():
        _check_gate_reads(path, m, g, config.get("inputs", {}).get(m), encoders[m])
        g.model.to(device)
    return gate


def _gate_identity(folder: Path, gate: Mapping[str, Any]) -> dict:
    """What a gate file says of its model: the sha256 of the weights beside it (their tensors, not
    the file: its metadata holds training times), and what it reads of each modality (its raw
    input or the model's)."""
    modalities = gate.get("modalities", {}) if isinstance(gate, Mapping) else {}
    reads = {m: entry.get("reads", "input") if isinstance(entry, Mapping) else None for m, entry in modalities.items()}
    return {"format": "mmrobust.gate/1", "weights_sha256": _tensors_sha256(folder / "weights.safetensors"), "reads": reads}


def _tensors_sha256(path: Path) -> str:
    """The sha256 of a safetensors file's tensors: each name, dtype, shape and bytes, by name."""
    import hashlib

    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            tensor = f.get_tensor(name).contiguous()
            digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _check_gate_reads(path: Path, m: str, gate, spec: Mapping[str, Any] | None, encoder: EncoderSpec) -> None:
    """The gate's input statistics fit what it will read of ``m`` (its raw input or the model's),
    where that size is known: else the first prediction would fail on shapes."""
    from .gate import INPUT_DIMS
    from .pretrained import THUMBNAIL

    if "input_centre" not in gate.statistics or spec is None:
        return
    if gate.reads_raw:
        size = THUMBNAIL * THUMBNAIL if spec.get("kind") == "extractor" else int(np.prod(spec.get("shape", [0])))
    else:
        size = int(encoder.kwargs.get("in_dim", 0)) if spec.get("kind") == "extractor" else int(np.prod(spec.get("shape", [0])))
    expected, kept = min(size, INPUT_DIMS), int(gate.statistics["input_centre"].shape[0])
    if size and kept != expected:
        raise ModelFileError(f"{path}: the gate of {m} reads {kept} values of each input, but this model's "
                             f"{'raw ' if gate.reads_raw else ''}input of {m} gives {expected} (was its 'reads' in "
                             f"config.json changed?)")


def _spec_dict(spec) -> dict:
    if not isinstance(spec, EncoderSpec):
        raise ConfigError("only registry encoders (EncoderSpec) can be saved with a model, not a factory function")
    return spec.to_dict()


def _card(config: dict) -> str:
    return (f"# mmrobust model: {config['method']}\n\nModalities: {', '.join(config['modalities'])}; "
            f"{config['num_classes']} classes ({config['task']}); seed {config['seed']}.\n")
# pragma: no mutate end


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())
