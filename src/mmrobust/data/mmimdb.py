"""MM-IMDB (Arevalo et al. 2017): movie posters and plots, 23 genres, multi-label.

Reads the layout of the authors' archive (``mmimdb.tar.gz``)::

    mmimdb/split.json               {"train": [ids], "dev": [ids], "test": [ids]}
    mmimdb/dataset/<id>.json        {"plot": ["...", ...], "genres": ["Drama", ...], ...}
    mmimdb/dataset/<id>.jpeg        the poster

Text = the first plot summary; image = the poster. Genres outside the standard 23 are
dropped; a movie left with none of them is skipped and counted.
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


def _root(root: Path) -> Path:
    for candidate in (root, root / "mmimdb"):
        if (candidate / "split.json").is_file():
            return candidate
    raise DataError(f"{root}: not an MM-IMDB folder (expected split.json and dataset/, as in mmimdb.tar.gz)")


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


def read_mmimdb(root: str | Path) -> tuple[Table, int]:
    """The MM-IMDB table, and how many movies had none of the 23 genres (skipped)."""
    root = _root(Path(root))
    split_ids = _read_json(root / "split.json")
    missing = sorted(set(SPLITS) - set(split_ids))
    if missing:
        raise DataError(f"{root / 'split.json'}: no {missing[0]!r} list (expected train, dev and test)")
    ids, texts, images, labels, split, skipped = [], [], [], [], [], 0
    for name, ours in SPLITS.items():
        for movie in split_ids[name]:
            movie = str(movie)
            meta_path = root / "dataset" / f"{movie}.json"
            meta = _read_json(meta_path)
            genres = [g for g in meta.get("genres", []) if g in GENRES]
            if not genres:
                skipped += 1
                continue
            plots = meta.get("plot") or []
            plot = (plots[0] if isinstance(plots, list) and plots else plots if isinstance(plots, str) else "").strip()
            image = root / "dataset" / f"{movie}.jpeg"
            ids.append(movie)
            texts.append(plot or None)
            images.append(str(image) if image.is_file() else None)
            labels.append(genres)
            split.append(ours)
    table = Table(str(root), root, ids, {"image": images, "text": texts}, {"image": "image", "text": "text"},
                  labels, split, multilabel=True, label_names=list(GENRES))
    return table, skipped


@DATASETS.register("mmimdb")
def mmimdb(root: str, extractors: Mapping[str, str] | None = None, finetune: Sequence[str] = (),
           cache_dir: str | None = None, bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """MM-IMDB: poster + plot, 23 genres, multi-label (the authors' archive layout)."""
    table, skipped = read_mmimdb(root)
    return build_splits(table, extractors, finetune, cache_dir, info={"dataset": "MM-IMDB", "skipped_no_genre": skipped,
                                                                      "split": "the archive's split.json"},
                        bad_inputs=bad_inputs, device=device)
