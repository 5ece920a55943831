"""UPMC Food-101 (Wang et al. 2015): food photos and the titles of their web pages, 101 classes.

Reads the layout of the public release (as on Kaggle)::

    images/train/<class>/<image>.jpg     images/test/<class>/<image>.jpg
    texts/train_titles.csv               texts/test_titles.csv    rows: image, text, class (no header)

The release has no validation split: a seeded, stratified share of the training rows
(``val_share``, default 10%) is held out for validation.
"""
from __future__ import annotations

import csv
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
    root = Path(root)
    if not (root / "images").is_dir():
        raise DataError(f"{root}: not a UPMC Food-101 folder (expected images/ and texts/)")
    ids, texts, images, labels, split = [], [], [], [], []
    for part in ("train", "test"):
        rows = _read_titles(root / "texts" / f"{part}_titles.csv")
        part_split = stratified_split([r[2] for r in rows], seed, (1 - val_share, val_share, 0.0)) if part == "train" else ["test"] * len(rows)
        for (image, text, label), where in zip(rows, part_split):
            path = root / "images" / part / label / image
            if not path.is_file() and on_bad_input == "error":
                raise DataError(f"{root / 'texts' / f'{part}_titles.csv'}: image {image!r} of class {label!r} not found at {path}")
            ids.append(f"{part}/{image}")
            texts.append(text or None)
            images.append(str(path))
            labels.append([label])
            split.append(where)
    return Table(str(root), root, ids, {"image": images, "text": texts}, {"image": "image", "text": "text"}, labels, split)


@DATASETS.register("food101")
def food101(root: str, extractors: Mapping[str, str] | None = None, finetune: Sequence[str] = (),
            cache_dir: str | None = None, val_share: float = 0.1, seed: int = 0,
            bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """UPMC Food-101: photo + page title, 101 classes (the public release's layout)."""
    bad_inputs = bad_inputs if bad_inputs is not None else BadInputs()
    table = read_food101(root, val_share, seed, bad_inputs.policy)
    return build_splits(table, extractors, finetune, cache_dir,
                        info={"dataset": "UPMC Food-101", "split": f"test as released; val = {val_share:.0%} of train, seed {seed}"},
                        bad_inputs=bad_inputs, device=device)
