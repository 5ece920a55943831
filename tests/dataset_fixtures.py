"""A small fixture for every registered dataset, in its real file layout: ``FIXTURES[name](folder)``
writes the files and returns the loader's options. The dataset contract test requires one per
registered dataset, so a new loader comes with its fixture."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from test_avclips import write_ave, write_kinetics_sound
from vl_fixtures import write_food101, write_manifest, write_mmimdb


def _avmnist_prepared(parent: Path) -> dict:
    """The layout `mmrobust prepare avmnist` writes: meta.json and <split>/{image,audio,label}.npy."""
    rng = np.random.default_rng(0)
    folder = parent / "av"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text('{"fixture": true}')
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        (folder / split).mkdir()
        np.save(folder / split / "image.npy", rng.random((n, 1, 28, 28), dtype=np.float32))
        np.save(folder / split / "audio.npy", rng.random((n, 1, 112, 112), dtype=np.float32))
        np.save(folder / split / "label.npy", np.arange(n) % 10)
    return {"root": str(folder)}


def _avmnist_multibench(folder: Path) -> dict:
    """MultiBench's download: image/{train,test}_data.npy (N x 784, 0-255), audio/... (N x 112 x 112), labels."""
    rng = np.random.default_rng(0)
    for sub in ("image", "audio"):
        (folder / sub).mkdir(parents=True)
    for split, n in (("train", 20), ("test", 10)):
        np.save(folder / "image" / f"{split}_data.npy", rng.integers(0, 256, (n, 784)).astype(np.float32))
        np.save(folder / "audio" / f"{split}_data.npy", rng.random((n, 112, 112), dtype=np.float32))
        np.save(folder / f"{split}_labels.npy", np.arange(n) % 10)
    return {"root": str(folder), "val_start": 15}


CLIPS = dict(size=32, max_frames=3, frames=2)

FIXTURES = {
    "digits": lambda folder: {},
    "synthetic": lambda folder: {},
    "avmnist": _avmnist_prepared,
    "avmnist-multibench": _avmnist_multibench,
    "kinetics-sound": lambda folder: {"root": str(write_kinetics_sound(folder / "ks")), **CLIPS,
                                      "cache_dir": str(folder / "cache")},
    "ave": lambda folder: {"root": str(write_ave(folder / "ave")), **CLIPS, "cache_dir": str(folder / "cache")},
    "manifest": lambda folder: {"path": str(write_manifest(folder / "m", rows=30)), "label": "shape",
                                "cache_dir": str(folder / "cache")},
    "mmimdb": lambda folder: {"root": str(write_mmimdb(folder / "mmimdb")), "cache_dir": str(folder / "cache")},
    "food101": lambda folder: {"root": str(write_food101(folder / "food")), "cache_dir": str(folder / "cache")},
}
