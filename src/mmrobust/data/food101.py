"""UPMC Food-101 (Wang et al. 2015): food photos and the titles of their web pages, 101 classes.

Reads the layout of the public release (as on Kaggle; ``root`` relative, absolute or with ``~``)::

    images/train/<class>/<image>.jpg     images/test/<class>/<image>.jpg
    texts/train_titles.csv               texts/test_titles.csv    rows: image, text, class (no header)
    split.json                           optional: MAP's lists (YiLunLee/missing_aware_prompts,
                                         datasets/Food101/split.json): {"train": [images], "val": [...], "test": [...]}

The release has no validation split. With MAP's ``split.json`` beside it, its ``val`` list (6,846
of the training images) is the validation split, its ``train`` list the training split, and a
training title in neither list is left out and counted (``unlisted`` in the run's provenance), as
MAP's own reader keeps only what its lists name. Without it, a seeded, stratified share of the
training rows (``val_share``, default 10%) is held out.
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DataError
from ..registry import DATASETS
from ..validate import BadInputs
from .splits import Splits
from .manifest import IMAGE_SUFFIXES
from .table import Table, build_splits, stratified_split


def _read_titles(path: Path) -> list[tuple[str, str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected texts/train_titles.csv and texts/test_titles.csv)")
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line, values in enumerate(csv.reader(f), start=1):
            if not values:
                continue
            if line == 1 and not values[0].lower().endswith(IMAGE_SUFFIXES):
                continue  # a header row
            if len(values) != 3:
                raise DataError(f"{path}, line {line}: expected 3 fields (image, text, class), got {len(values)}")
            rows.append((values[0].strip(), values[1].strip(), values[2].strip()))
    return rows


def read_food101(root: str | Path, val_share: float = 0.1, seed: int = 0, on_bad_input: str = "error") -> Table:
    """The Food-101 table; a listed image that is absent is an error here, or (``on_bad_input=
    "missing"``) left for :func:`build_splits` to mark missing and count."""
    return _read(Path(root).expanduser().resolve(), val_share, seed, on_bad_input)[0]


def _read(root: Path, val_share: float, seed: int, on_bad_input: str) -> tuple[Table, dict]:
    """The table, and how its validation split was made."""
    if not (root / "images").is_dir():
        raise DataError(f"{root}: not a UPMC Food-101 folder (expected images/ and texts/)")
    lists = _map_lists(root / "split.json")
    ids, texts, images, labels, split = [], [], [], [], []
    unlisted = 0
    for part in ("train", "test"):
        rows = _read_titles(root / "texts" / f"{part}_titles.csv")
        if part == "test":
            part_split = ["test"] * len(rows)
        elif lists is not None:
            part_split = ["val" if r[0] in lists["val"] else "train" if r[0] in lists["train"] else None for r in rows]
        else:
            part_split = stratified_split([r[2] for r in rows], seed, (1 - val_share, val_share, 0.0))
        for (image, text, label), where in zip(rows, part_split):
            if where is None:
                unlisted += 1
                continue
            path = f"images/{part}/{label}/{image}"  # relative to the root (the table's base)
            if not (root / path).is_file() and on_bad_input == "error":
                raise DataError(f"{root / 'texts' / f'{part}_titles.csv'}: image {image!r} of class {label!r} not found at {root / path}")
            ids.append(f"{part}/{image}")
            texts.append(text or None)
            images.append(path)
            labels.append([label])
            split.append(where)
    how = ({"split": "test as released; train and val from MAP's split.json", "unlisted": unlisted} if lists is not None
           else {"split": f"test as released; val = {val_share:.0%} of train, seed {seed}"})
    table = Table(str(root), root, ids, {"image": images, "text": texts}, {"image": "image", "text": "text"}, labels, split)
    return table, how


def _map_lists(path: Path) -> dict[str, set[str]] | None:
    """MAP's ``split.json`` (image file names per split), or None where there is none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("train", "val")):
        raise DataError(f"{path}: expected MAP's split lists, a JSON object with 'train' and 'val' lists of image names")
    return {k: {str(v) for v in data[k]} for k in ("train", "val")}


@DATASETS.register("food101")
def food101(root: str, extractors: Mapping[str, str] | None = None, finetune: Sequence[str] = (),
            cache_dir: str | None = None, val_share: float = 0.1, seed: int = 0,
            bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """UPMC Food-101: photo + page title, 101 classes (the public release's layout)."""
    bad_inputs = bad_inputs if bad_inputs is not None else BadInputs()
    table, how = _read(Path(root).expanduser().resolve(), val_share, seed, bad_inputs.policy)
    if how.get("unlisted"):
        warnings.warn(f"{table.source}: {how['unlisted']} training titles are in neither of split.json's train and val "
             "lists: left out, as MAP's reader does", UserWarning, stacklevel=2)
    return build_splits(table, extractors, finetune, cache_dir, info={"dataset": "UPMC Food-101", **how},
                        bad_inputs=bad_inputs, device=device)
