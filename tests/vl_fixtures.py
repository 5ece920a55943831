"""Small real files for the vision-language tests: PNG / JPEG shapes, captions, .npy vectors,
and the MM-IMDB and Food-101 folder layouts."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
WORDS = {"circle": "a round disc", "square": "a boxy tile", "triangle": "a pointed wedge"}


def draw_shape(path: Path, shape: str, rng: np.random.Generator, size: int = 48) -> None:
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 120, 3))
    x, y = (int(v) for v in rng.integers(2, 10, 2))
    s = int(rng.integers(size // 2, size - 12))
    if shape == "circle":
        draw.ellipse([x, y, x + s, y + s], fill=colour)
    elif shape == "square":
        draw.rectangle([x, y, x + s, y + s], fill=colour)
    else:
        draw.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_manifest(folder: Path, rows: int = 60, missing_image_every: int = 7, seed: int = 0) -> Path:
    """A three-modality CSV manifest (image path, caption, .npy path), label ``shape``, no split."""
    rng = np.random.default_rng(seed)
    records = []
    _mkdir(folder / "vec")
    for i in range(rows):
        shape = SHAPES[i % 3]
        draw_shape(folder / "img" / f"{i}.png", shape, rng)
        np.save(folder / "vec" / f"{i}.npy", (rng.normal(size=6) + 2.0 * np.eye(6)[i % 3]).astype(np.float32))
        records.append({"id": f"s{i}", "image": "" if missing_image_every and i % missing_image_every == 3 else f"img/{i}.png",
                        "caption": WORDS[shape] if rng.random() < 0.7 else WORDS[SHAPES[int(rng.integers(3))]],
                        "vector": f"vec/{i}.npy", "shape": shape})
    path = folder / "data.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_mmimdb(root: Path, movies: int = 12, seed: int = 0) -> Path:
    """The layout of mmimdb.tar.gz: mmimdb/split.json and mmimdb/dataset/<id>.{json,jpeg}."""
    rng = np.random.default_rng(seed)
    base = root / "mmimdb"
    genres = [["Drama"], ["Comedy", "Romance"], ["Horror", "Thriller", "News"], ["News"]]
    ids = [f"{i:07d}" for i in range(movies)]
    for i, movie in enumerate(ids):
        meta = {"title": f"Movie {i}", "genres": genres[i % 4], "plot": [f"plot {i} about {SHAPES[i % 3]}s", "second plot" if i % 2 else f"the longest summary of movie {i}"]}
        _mkdir(base / "dataset")
        (base / "dataset" / f"{movie}.json").write_text(json.dumps(meta), encoding="utf-8")
        if i != 5:  # one movie without a poster
            img = Image.new("RGB", (30, 44), tuple(int(c) for c in rng.integers(0, 255, 3)))
            img.save(base / "dataset" / f"{movie}.jpeg", format="JPEG")
    (base / "split.json").write_text(json.dumps({"train": ids[:6], "dev": ids[6:9], "test": ids[9:]}), encoding="utf-8")
    return base


def write_food101(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """The public release's layout: images/<split>/<class>/<file>.jpg and texts/<split>_titles.csv."""
    rng = np.random.default_rng(seed)
    classes = ("apple_pie", "ramen", "tacos")
    _mkdir(root / "texts")
    for part, n in (("train", per_class), ("test", 2)):
        rows = []
        for label in classes:
            for i in range(n):
                name = f"{label}_{i}.jpg"
                folder = _mkdir(root / "images" / part / label)
                Image.new("RGB", (40, 30), tuple(int(c) for c in rng.integers(0, 255, 3))).save(folder / name, format="JPEG")
                rows.append((name, f"best {label.replace('_', ' ')} recipe, step by step {i}", label))
        with open(root / "texts" / f"{part}_titles.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return root


def write_tone_wav(path: Path, seconds: float, freq: float, rate: int = 8000) -> Path:
    """A real 16-bit mono WAV of a sine tone."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16).tobytes())
    return path


def write_mmimdb_map_layout(root: Path, movies: int = 12) -> Path:
    """MAP's MM-IMDB layout (YiLunLee/missing_aware_prompts DATA.md): split.json, images/<id>.jpeg,
    labels/<id>.json; split.json pretty-printed with 4 spaces, as MAP's copy is (that repository
    has no licence, so the list is generated here in its format, not copied)."""
    archive = write_mmimdb(root / "archive", movies)
    for folder in ("images", "labels"):
        _mkdir(root / folder)
    for path in (archive / "dataset").iterdir():
        target = root / ("images" if path.suffix == ".jpeg" else "labels") / path.name
        target.write_bytes(path.read_bytes())
    split = json.loads((archive / "split.json").read_text())
    (root / "split.json").write_text(json.dumps(split, indent=4), encoding="utf-8")
    return root


def write_food101_map_split(root: Path, val: dict[str, int]) -> Path:
    """MAP's Food-101 split.json (one line, image file names: {"train": [...], "val": [...], "test": [...]},
    as its datasets/Food101/split.json is laid out; generated, not copied): the first ``val[class]``
    training images of each class in val, the rest but the last in train (the last one unlisted)."""
    lists = {"train": [], "val": [], "test": []}
    for folder in sorted((root / "images" / "train").iterdir()):
        names = sorted(p.name for p in folder.iterdir())
        lists["val"] += names[:val.get(folder.name, 0)]
        lists["train"] += names[val.get(folder.name, 0):-1]
    lists["test"] = sorted(p.name for p in (root / "images" / "test").rglob("*.jpg"))
    (root / "split.json").write_text(json.dumps(lists), encoding="utf-8")
    return root
