"""Using a trained model: model/ written by a run, loaded in a fresh process, predictions from
files and arrays with any subset of modalities."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mmrobust as mm
from mmrobust.cli import main
from mmrobust.data.digits import digits_path, load_digits_arrays
from mmrobust.errors import InputError
from mmrobust.inputs import pca_project, prepare
from mmrobust.predictor import Predictor
from shared_data import HAVE_REAL_DATA, MISSING, MNIST
from vl_fixtures import write_tone_wav


def test_round_trip_gives_identical_predictions_for_every_pattern(paper_run_dir, tmp_path):
    predictor = Predictor.load(paper_run_dir / "model")
    arrays, _ = load_digits_arrays()
    test = {m: arrays["test"][m][:40] for m in ("image", "audio")}
    again = Predictor.load(predictor.save_pretrained(tmp_path / "copy"))
    for present in ({"image": True, "audio": True}, {"image": True, "audio": False}, {"image": False, "audio": True}):
        rows = [{m: test[m][i] if present[m] else None for m in test} for i in range(40)]
        first, second = predictor.predict(rows, gate=False), again.predict(rows, gate=False)  # the gate: test_gate.py
        assert [p.probabilities for p in first] == [p.probabilities for p in second]
        assert all(p.used == [m for m in ("audio", "image") if present[m]] for p in first)
        pattern = "+".join(m for m in ("audio", "image") if present[m])
        routed = json.loads((paper_run_dir / "model" / "config.json").read_text())["routing"]
        assert {p.answered_by for p in first} == {routed[pattern]}  # the model file's choice, reported per prediction
        direct = predictor.method.predict_proba({m: test[m] if present[m] else None for m in test})
        scaled = predictor.calibration.calibrate(direct, [pattern] * 40)  # temperature-scaled per pattern
        assert np.allclose([[p.probabilities[str(c)] for c in range(10)] for p in first], scaled, atol=1e-6)


def _png(path, pixels):
    Image.fromarray((pixels[0] * 255).round().clip(0, 255).astype(np.uint8), mode="L").save(path)


def test_predict_from_files_in_a_fresh_process_with_either_modality_absent(paper_run_dir, tmp_path):
    arrays, _ = load_digits_arrays()
    _png(tmp_path / "digit.png", arrays["test"]["image"][0])
    write_tone_wav(tmp_path / "word.wav", 0.6, 300.0)
    for inputs in (["image=" + str(tmp_path / "digit.png")], ["audio=" + str(tmp_path / "word.wav")],
                   ["image=" + str(tmp_path / "digit.png"), "audio=" + str(tmp_path / "word.wav")]):
        args = [sys.executable, "-m", "mmrobust", "predict", str(paper_run_dir / "model")]
        for item in inputs:
            args += ["--input", item]
        done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout)
        assert result["label"] in [str(d) for d in range(10)] and abs(sum(result["probabilities"].values()) - 1) < 1e-5
        # a pure tone is no spoken digit: the input gate may ignore it, and then says so
        assert sorted(result["used"] + list(result["ignored"])) == sorted(item.split("=")[0] for item in inputs)
        assert result["used"], "a row is never left with nothing"
    # the input spec carries the training images' PCA: the stored images lie on its subspace
    predictor = Predictor.load(paper_run_dir / "model")
    stored = arrays["test"]["image"][:5]
    assert np.allclose(pca_project(np.stack(stored), predictor.inputs["image"]["pca"]), np.stack(stored), atol=1e-5)


@pytest.mark.skipif(not HAVE_REAL_DATA, reason=MISSING)
def test_a_real_mnist_png_becomes_the_degraded_image_the_model_was_trained_on(paper_run_dir, tmp_path):
    from mmrobust.data.idx import load_mnist

    raw, _ = load_mnist(MNIST, "test")
    arrays, _ = load_digits_arrays()
    with np.load(digits_path()) as data:
        rows = data["test_mnist_index"][:5]
    predictor = Predictor.load(paper_run_dir / "model")
    for i, row in enumerate(rows):
        Image.fromarray(raw[row].astype(np.uint8), mode="L").save(tmp_path / f"{row}.png")
        prepared = prepare("image", predictor.inputs["image"], [tmp_path / f"{row}.png"])[0].numpy()
        assert np.abs(prepared - arrays["test"]["image"][i]).max() < 1e-4


def test_predict_a_manifest_to_csv(paper_run_dir, tmp_path):
    arrays, _ = load_digits_arrays()
    for i in range(3):
        np.save(tmp_path / f"a{i}.npy", arrays["test"]["audio"][i])
        _png(tmp_path / f"i{i}.png", arrays["test"]["image"][i])
    (tmp_path / "rows.csv").write_text("id,image,audio\nx,i0.png,a0.npy\ny,,a1.npy\nz,i2.png,\n")
    assert main(["predict", str(paper_run_dir / "model"), "--manifest", str(tmp_path / "rows.csv"),
                 "--out", str(tmp_path / "preds.csv")]) == 0
    lines = (tmp_path / "preds.csv").read_text().splitlines()
    assert lines[0].startswith("id,label,used,answered_by,ignored,implausible,0,1,") and [line.split(",")[2] for line in lines[1:]] == ["audio+image", "audio", "image"]


def test_bad_inputs_are_named(paper_run_dir, tmp_path):
    predictor = Predictor.load(paper_run_dir / "model")
    with pytest.raises(InputError, match="unknown modality 'video'"):
        predictor.predict({"video": np.zeros(3)})
    with pytest.raises(InputError, match="no modality given"):
        predictor.predict({"image": None, "audio": ""})
    with pytest.raises(InputError, match=r"image: expected an input of shape \[1, 28, 28\], got \[28, 28\]"):
        predictor.predict({"image": np.zeros((28, 28))})
    with pytest.raises(InputError, match="image: .*missing.png: file not found"):
        predictor.predict({"image": tmp_path / "missing.png"})
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        predictor.predict({"image": tmp_path / "bad.png"})
    assert main(["predict", str(tmp_path), "--input", "image=x.png"]) == 2  # not a model folder


def test_python_save_and_load_of_a_fitted_method(tmp_path, synthetic, tiny_encoders, tiny_config):
    method = mm.create_method("ume-mma", encoders=tiny_encoders, num_classes=4, seed=0, train_config=tiny_config)
    method.fit(synthetic["train"], synthetic["val"])
    predictor = Predictor(method, {"a": {"kind": "array", "shape": [6]}, "b": {"kind": "array", "shape": [6]}},
                          ["w", "x", "y", "z"])
    loaded = Predictor.from_pretrained(predictor.save_pretrained(tmp_path / "m"))
    row = {"a": synthetic["test"].inputs["a"][0], "b": None}
    assert loaded.predict(row) == predictor.predict(row)
    assert torch.equal(next(iter(loaded.method.state_tensors().values())), next(iter(method.state_tensors().values())))


def test_a_model_with_too_few_label_names_or_broken_json_is_named(paper_run_dir, tmp_path):
    import shutil

    from mmrobust.errors import ModelFileError

    copy = tmp_path / "model"
    shutil.copytree(paper_run_dir / "model", copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "label_names": config["label_names"][:3]}))
    with pytest.raises(ModelFileError, match="3 label_names for 10 classes"):
        Predictor.load(copy)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="config.json: not valid JSON"):
        Predictor.load(copy)


def test_high_bit_depth_and_oversized_images(paper_run_dir, tmp_path):
    """Issue 17: a 16-bit PNG keeps its grey levels (not binarised); a decompression bomb is
    refused in one line, quickly."""
    predictor = Predictor.load(paper_run_dir / "model")
    spec = {k: v for k, v in predictor.inputs["image"].items() if k != "pca"}
    ramp = np.tile(np.linspace(0, 1, 28, dtype=np.float32), (28, 1))
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.round(ramp * 255).astype(np.uint8), mode="L").save(tmp_path / "flat.png")
    deep, flat = (prepare("image", spec, [tmp_path / f"{n}.png"])[0].numpy()[0] for n in ("deep", "flat"))
    assert len(np.unique(deep)) > 20 and np.abs(deep - flat).max() < 1 / 255 + 1e-6
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # a few tens of KB on disk
    with pytest.raises(InputError, match=r"bomb.png: not a readable image .*decompression bomb"):
        predictor.predict({"image": tmp_path / "bomb.png"})
    Image.new("1", (8000, 8000)).save(tmp_path / "large.png")  # under PIL's own limit, over ours
    with pytest.raises(InputError, match=r"large.png: 8000 x 8000 pixels; images up to 50,000,000 pixels"):
        predictor.predict({"image": tmp_path / "large.png"})


def test_a_prediction_manifest_names_the_bad_row_and_follows_the_policy(paper_run_dir, tmp_path, capsys):
    """Issue 17: an empty row or a bad file is named by its manifest line and id (not its place in
    a batch); with --on-bad-input missing the bad cell is dropped and `used` says so."""
    arrays, _ = load_digits_arrays()
    lines = ["id,image,audio"]
    for i in range(70):
        np.save(tmp_path / f"a{i}.npy", arrays["test"]["audio"][i])
        lines.append(f"s{i},,a{i}.npy")
    lines[67] = "s66,,"  # line 68: nothing given
    (tmp_path / "broken.png").write_bytes(b"not a png")
    lines[69] = "s68,broken.png,a68.npy"  # line 70: a bad image beside a good audio
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    args = ["predict", str(paper_run_dir / "model"), "--manifest", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 2
    assert "rows.csv, line 68 (id 's66'): no modality given" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    assert main(args + ["--on-bad-input", "missing"]) == 0
    out = {row.split(",")[0]: row.split(",") for row in (tmp_path / "p.csv").read_text().splitlines()[1:]}
    assert out["s66"][1:3] == ["", ""] and out["s68"][2] == "audio" and out["s67"][2] == "audio" and len(out) == 70


@pytest.mark.parametrize("edit, message", [
    (lambda c: {**c, "temperatures": {**c["temperatures"], "audio+image": -1.0}}, "temperature -1.0 for 'audio\\+image'"),
    (lambda c: {**c, "temperatures": {**c["temperatures"], "audio+image": float("nan")}}, "temperature nan"),
    (lambda c: {**c, "temperatures": {**c["temperatures"], "*": 0}}, "temperature 0 for '\\*'"),
    (lambda c: {**c, "temperatures": {**c["temperatures"], "audio": float("inf")}}, "temperature inf"),
    (lambda c: {**c, "scores": {**c["scores"], "audio": [float("nan")] * 40}}, "conformal scores for 'audio'"),
    (lambda c: {**c, "temperatures": {"video": 1.0}}, "'video', not a presence pattern"),
    (lambda c: [c], "expected an object"),
])
def test_an_edited_calibration_file_is_refused_not_applied(paper_run_dir, tmp_path, edit, message):
    """Issue 28: a negative temperature answered 5 instead of 3 (probabilities inverted), NaN gave
    label '0' with NaN probabilities and exit 0, NaN scores gave empty sets that were not 'unsure'."""
    import shutil

    from mmrobust.errors import ModelFileError

    copy = tmp_path / "model"
    shutil.copytree(paper_run_dir / "model", copy)
    calibration = json.loads((copy / "calibration.json").read_text())
    (copy / "calibration.json").write_text(json.dumps(edit(calibration)))  # json writes NaN and Infinity as Python does
    with pytest.raises(ModelFileError, match=f"calibration.json: not a valid calibration file .*{message}"):
        Predictor.load(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda c: [c], "expected a JSON object, got a list"),
    (lambda c: {k: v for k, v in c.items() if k != "inputs"}, "no 'inputs'"),
    (lambda c: {**c, "train": {**c["train"], "warp_speed": 9}}, "unknown train setting\\(s\\) \\['warp_speed'\\]"),
    (lambda c: {**c, "encoders": {**c["encoders"], "audio": "cnn"}}, "encoders.audio is 'cnn'"),
    (lambda c: {**c, "encoders": {**c["encoders"], "audio": ["cnn"]}}, "encoders.audio is \\['cnn'\\]"),
    (lambda c: {**c, "params": {**c["params"], "nonsense": 1}}, "do not fit together \\(TypeError"),
    (lambda c: {**c, "num_classes": "10"}, "'num_classes' is a str, expected a int"),
])
def test_an_edited_model_config_is_one_line_never_a_traceback(paper_run_dir, tmp_path, edit, message):
    import shutil

    from mmrobust.cli import main
    from mmrobust.errors import ModelFileError

    copy = tmp_path / "model"
    shutil.copytree(paper_run_dir / "model", copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(edit(config)))
    with pytest.raises(ModelFileError, match=message):
        Predictor.load(copy)
    assert main(["predict", str(copy), "--input", "audio=x.npy"]) == 2
