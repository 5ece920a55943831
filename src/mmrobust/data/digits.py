"""The embedded `digits` dataset: a small AV-MNIST shipped inside the package.

Images: real MNIST digits, PCA-degraded (stored as PCA coefficients, rebuilt on load); the
pictures themselves are kept for the input gate (``raw``).
Audio: spoken digits synthesised with espeak-ng and recorded by people (Free Spoken Digit
Dataset; speakers george and lucas only in the test split), noisy, as 32 x 32 log mel spectrograms
(audio front-end preset ``digits``), each clip stored once and paired through an index
array. Built by ``scripts/make_digits.py``; provenance and licences in ``files/DIGITS.md``.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from ..batch import MultiModalDataset
from ..encoders import EncoderSpec
from ..registry import DATASETS
from ..validate import BadInputs
from .splits import Splits

SPLITS = ("train", "val", "test")
LABELS = [str(d) for d in range(10)]


def digits_path() -> Path:
    return Path(str(resources.files("mmrobust.data") / "files" / "digits.npz"))


def load_digits_arrays(path: str | Path | None = None) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Per split: ``image`` (N x 1 x 28 x 28 float32 in about [0, 1]), ``audio`` (N x 1 x 32 x 32
    float32 in [0, 1]), ``label`` and, where the file keeps them, ``image_raw`` (the pictures
    before the projection, N x 1 x 28 x 28 float32 in [0, 1]); and the dataset's metadata."""
    path = Path(path) if path is not None else digits_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the digits data file is missing (build it with scripts/make_digits.py)")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        clips = data["clip_spectrogram"].astype(np.float32)[:, None] / 255.0
        meta["spectrogram_range"] = [float(v) for v in data["spectrogram_range"]]
        meta["pca_projection"] = {"mean": (data["pca_mean"] / 255.0).tolist(), "components": data["pca_components"].tolist()}
        splits = {}
        for split in SPLITS:
            flat = data["pca_mean"] + data[f"{split}_image_coef"] @ data["pca_components"]
            splits[split] = {
                "image": (flat / 255.0).astype(np.float32).reshape(-1, 1, 28, 28),
                "audio": clips[data[f"{split}_audio_index"]],
                "audio_clip": data[f"{split}_audio_index"].astype(np.int64),
                "label": data[f"{split}_label"].astype(np.int64),
            }
            if f"{split}_image_raw" in data.files:
                splits[split]["image_raw"] = (data[f"{split}_image_raw"] / np.float32(255.0)).reshape(-1, 1, 28, 28)
    return splits, meta


@DATASETS.register("digits")
def digits(path: str | Path | None = None, *, bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """Embedded AV-MNIST-style digits: PCA-degraded MNIST + noisy speech, synthetic and real (5k/1k/5k)."""
    arrays, meta = load_digits_arrays(path)
    splits = {
        split: MultiModalDataset({"image": a["image"], "audio": a["audio"]}, a["label"], num_classes=10, label_names=LABELS,
                                 sources={"audio": a["audio_clip"]},  # clips are reused across rows
                                 raw={"image": a["image_raw"]} if "image_raw" in a else None)
        for split, a in arrays.items()
    }
    info = {k: meta[k] for k in ("name", "sizes", "clips", "variants", "speakers", "accents", "snr_db", "pca", "espeak_ng")}
    inputs = {"image": {"kind": "image", "shape": [1, 28, 28], "pca": meta["pca_projection"]},
              "audio": {"kind": "wav", "shape": [1, 32, 32], "frontend": "digits", "range": meta["spectrogram_range"]}}
    return Splits(**splits, encoders=digits_encoders(), info=info, inputs=inputs)


def digits_encoders() -> dict[str, EncoderSpec]:
    """MultiBench-style LeNets: 3 layers for the 28 x 28 image and for the 32 x 32 spectrogram."""
    return {"image": EncoderSpec("lenet", in_shape=(1, 28, 28), channels=6, layers=3),
            "audio": EncoderSpec("lenet-spectrogram", in_shape=(1, 32, 32), channels=6, layers=3)}
