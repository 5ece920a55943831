"""MM-IMDB (Arevalo et al. 2017): movie posters and plots, 23 genres, multi-label.

Reads either layout people have on disk (``root`` relative, absolute or with ``~``):

- the authors' archive (``mmimdb.tar.gz``, johnarevalo/gmu-mmimdb)::

    mmimdb/split.json               {"train": [ids], "dev": [ids], "test": [ids]}
    mmimdb/dataset/<id>.json        {"plot": ["...", ...], "genres": ["Drama", ...], ...}
    mmimdb/dataset/<id>.jpeg        the poster

- MAP's (YiLunLee/missing_aware_prompts, ``DATA.md`` and ``vilt/utils/write_mmimdb.py``)::

    split.json  images/<id>.jpeg  labels/<id>.json

Text (``text``): a movie has one or more plot summaries; ``longest`` (the default: the dataset's
authors' and MMBT's choice), ``first``, or ``all`` joined by a space (MAP's). Image = the
poster. Genres outside the standard 23 are dropped; a movie left with none of them is skipped
and counted.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DataError
from ..registry import DATASETS
from ..validate import BadInputs
from .splits import Splits
from .table import Table, build_splits

GENRES = ("Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
          "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation",
          "Musical", "Western", "Sport", "Short", "Film-Noir")
SPLITS = {"train": "train", "dev": "val", "test": "test"}
TEXTS = ("longest", "first", "all")
LAYOUTS = {"archive": ("dataset", "dataset"), "map": ("images", "labels")}  # layout -> (posters, metadata) folders


def _root(root: Path) -> tuple[Path, str]:
    """The folder with ``split.json`` and its layout (``archive`` or ``map``)."""
    root = root.expanduser().resolve()
    for candidate in (root, root / "mmimdb"):
        if (candidate / "split.json").is_file():
            if (candidate / "dataset").is_dir():
                return candidate, "archive"
            if (candidate / "labels").is_dir():
                return candidate, "map"
    raise DataError(f"{root}: not an MM-IMDB folder (expected split.json with dataset/ as in mmimdb.tar.gz, "
                    f"or with images/ and labels/ as MAP lays it out)")


def plot_text(plots: object, text: str) -> str:
    """The text of a movie's plot summaries under the ``text`` choice (see the module's docstring)."""
    if isinstance(plots, str):
        plots = [plots]
    plots = [p.strip() for p in plots if isinstance(p, str) and p.strip()] if isinstance(plots, list) else []
    if not plots:
        return ""
    if text == "first":
        return plots[0]
    if text == "all":
        return " ".join(plots)
    return max(plots, key=len)  # the first of the longest


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_mmimdb(root: str | Path, text: str = "longest") -> tuple[Table, int]:
    """The MM-IMDB table, and how many movies had none of the 23 genres (skipped)."""
    if text not in TEXTS:
        raise DataError(f"MM-IMDB text {text!r}: expected one of {', '.join(TEXTS)}")
    root, layout = _root(Path(root))
    posters, metadata = LAYOUTS[layout]
    split_ids = _read_json(root / "split.json")
    missing = sorted(set(SPLITS) - set(split_ids))
    if missing:
        raise DataError(f"{root / 'split.json'}: no {missing[0]!r} list (expected train, dev and test)")
    ids, texts, images, labels, split, skipped = [], [], [], [], [], 0
    for name, ours in SPLITS.items():
        for movie in split_ids[name]:
            movie = str(movie)
            meta = _read_json(root / metadata / f"{movie}.json")
            genres = [g for g in meta.get("genres", []) if g in GENRES]
            if not genres:
                skipped += 1
                continue
            plot = plot_text(meta.get("plot") or [], text)
            image = f"{posters}/{movie}.jpeg"  # relative to the root (the table's base)
            ids.append(movie)
            texts.append(plot or None)
            images.append(image if (root / image).is_file() else None)
            labels.append(genres)
            split.append(ours)
    table = Table(str(root), root, ids, {"image": images, "text": texts}, {"image": "image", "text": "text"},
                  labels, split, multilabel=True, label_names=list(GENRES))
    return table, skipped


@DATASETS.register("mmimdb")
def mmimdb(root: str, extractors: Mapping[str, str] | None = None, finetune: Sequence[str] = (),
           cache_dir: str | None = None, text: str = "longest", bad_inputs: BadInputs | None = None,
           device: str = "auto") -> Splits:
    """MM-IMDB: poster + plot, 23 genres, multi-label (the archive's or MAP's layout)."""
    table, skipped = read_mmimdb(root, text)
    return build_splits(table, extractors, finetune, cache_dir, info={"dataset": "MM-IMDB", "skipped_no_genre": skipped,
                                                                      "split": "split.json", "text": f"{text} plot"},
                        bad_inputs=bad_inputs, device=device)
