"""A table of samples (one cell per modality: a file path or a text) -> :class:`Splits`.

The manifest loader, MM-IMDB and Food-101 all read their files into a :class:`Table`;
:func:`build_splits` turns it into tensors: cached features of a frozen pre-trained extractor
(default), the extractor's preprocessed inputs (fine-tuning), or ``.npy`` feature vectors.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..batch import MultiModalDataset, move_to, scatter_rows
from ..encoders import EncoderSpec
from ..errors import DataError
from ..pretrained import DEFAULT_EXTRACTORS, ExtractorError, FeatureCache, get_extractor, resolve_path
from ..runtime import derive_seed, resolve_device
from ..validate import BadInputs
from .splits import Splits

CELL_KINDS = ("image", "text", "audio", "video", "features")
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
SPLIT_SHARES = (0.70, 0.15, 0.15)
CHUNK = 32


@dataclass
class Table:
    source: str  # the file or folder read, for messages and provenance
    base: Path  # relative paths resolve against it
    ids: list[str]
    cells: dict[str, list[str | None]]  # modality -> one cell per row; None: missing
    kinds: dict[str, str]  # modality -> image | text | audio | video | features
    labels: list[list[str]]  # one or more labels per row
    split: list[str] | None = None  # train / val / test per row; None: a seeded stratified split
    multilabel: bool = False
    label_names: list[str] | None = None  # a fixed vocabulary; None: the sorted labels seen
    groups: list[str] | None = None  # the source each row comes from (rows sharing one are not independent)
    lines: list[int] | None = None  # the line of ``source`` each row starts on (a manifest), for messages

    def place(self, row: int) -> dict[str, Any]:
        """Where a row is, for records and messages: its line in the manifest, or else its index."""
        return {"line": self.lines[row]} if self.lines is not None else {"row": row}

    def where(self, row: int) -> str:
        line = f", line {self.lines[row]}" if self.lines is not None else ""
        return f"{self.source}{line}: sample {self.ids[row]!r}"

    def check(self) -> None:
        """Unique ids, at least one modality per row, labels in the vocabulary."""
        seen: dict[str, int] = {}
        for row, sample_id in enumerate(self.ids):
            if sample_id in seen:
                twice = (f"lines {self.lines[seen[sample_id]]} and {self.lines[row]}" if self.lines is not None
                         else f"rows {seen[sample_id] + 1} and {row + 1}")
                raise DataError(f"{self.source}: sample id {sample_id!r} appears twice ({twice})")
            seen[sample_id] = row
            if all(self.cells[m][row] is None for m in self.cells):
                raise DataError(f"{self.where(row)} has every modality missing ({', '.join(self.cells)})")
            if not self.labels[row]:
                raise DataError(f"{self.where(row)} has no label")
            if not self.multilabel and len(self.labels[row]) > 1:
                raise DataError(f"{self.where(row)} has several labels {self.labels[row]} in a multi-class task")
        for m, kind in self.kinds.items():
            if kind not in CELL_KINDS:
                raise DataError(f"{self.source}: modality {m!r} has kind {kind!r}; expected one of {CELL_KINDS}")
        if self.label_names is not None:
            vocabulary = set(self.label_names)
            for row, labels in enumerate(self.labels):
                unknown = [label for label in labels if label not in vocabulary]
                if unknown:
                    raise DataError(f"{self.where(row)} has unknown label {unknown[0]!r}; "
                                    f"known: {', '.join(self.label_names)}")


def build_splits(table: Table, extractors: Mapping[str, str] | None = None, finetune: Iterable[str] = (),
                 cache_dir: str | Path | None = None, split_seed: int = 0, info: Mapping[str, Any] | None = None,
                 bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """Features (or preprocessed inputs) per modality, targets, and the train / val / test split.

    Every present cell is read before anything trains (a cached feature was read when it was
    cached: its key is the file's content). Under ``bad_inputs``'s policy ``missing`` an unreadable
    cell becomes missing, a row left with nothing is dropped, both recorded there. Frozen features
    are computed on ``device``. ``table`` itself is never changed."""
    table.check()
    split = _split_rows(table, split_seed)
    table = dataclasses.replace(table, cells={m: list(cells) for m, cells in table.cells.items()}, split=split)  # our own copy
    bad = bad_inputs if bad_inputs is not None else BadInputs()
    finetune = set(finetune)
    unknown = sorted(finetune - set(table.cells))
    if unknown:
        raise DataError(f"finetune: no modality {unknown[0]!r} (modalities: {', '.join(table.cells)})")
    names = table.label_names or sorted({label for labels in table.labels for label in labels})
    target = _targets(table.labels, names, table.multilabel)
    inputs, encoders, used, specs, raw = {}, {}, {}, {}, {}
    for m in table.cells:
        if table.kinds[m] == "features":
            inputs[m] = _npy_column(table, m, bad)
            encoders[m] = EncoderSpec("mlp", in_dim=int(inputs[m].shape[1]))
            specs[m] = {"kind": "array", "shape": [int(inputs[m].shape[1])]}
            continue
        name = (extractors or {}).get(m, DEFAULT_EXTRACTORS[table.kinds[m]])
        extractor = get_extractor(name)
        if extractor.kind != table.kinds[m]:
            raise DataError(f"modality {m!r} holds {table.kinds[m]} cells but extractor {name!r} reads {extractor.kind}")
        used[m] = {"extractor": name, **extractor.identity(), "finetune": m in finetune}
        specs[m] = {"kind": "extractor", "extractor": name, "finetune": m in finetune, "identity": extractor.identity()}
        if m in finetune:
            inputs[m] = _preprocessed_column(table, m, extractor, bad)
            encoders[m] = EncoderSpec("pretrained", extractor=name)
        else:
            inputs[m], view = _feature_column(table, m, extractor, FeatureCache(cache_dir, extractor), bad, device)
            if view is not None:
                raw[m] = view
            encoders[m] = EncoderSpec("mlp", in_dim=int(inputs[m].shape[1]))
    present = {m: np.array([c is not None for c in table.cells[m]]) for m in table.cells}  # after unreadable cells
    keep = np.any(np.stack(list(present.values())), axis=0)
    bad.dropped += [{"split": split[row], **table.place(row), "id": table.ids[row], "reason": "nothing readable left"}
                    for row in np.flatnonzero(~keep)]
    full = MultiModalDataset(inputs, target, present, num_classes=len(names),
                             task="multilabel" if table.multilabel else "multiclass", label_names=names,
                             sources={m: np.asarray(table.groups) for m in inputs} if table.groups else None, raw=raw,
                             cells={m: _cells(table, m) for m in inputs if m not in finetune})
    rows = {s: np.flatnonzero((np.asarray(split) == s) & keep) for s in SPLIT_NAMES}
    for s, idx in rows.items():
        if len(idx) == 0:
            raise DataError(f"{table.source}: the {s} split has no rows")
    _warn_few_groups(table, rows["test"])
    ids = {s: [table.ids[i] for i in idx] for s, idx in rows.items()}
    lines = {s: [table.lines[i] for i in idx] for s, idx in rows.items()} if table.lines is not None else {}
    meta = {"source": table.source, "rows": {s: len(idx) for s, idx in rows.items()}, "modalities": dict(table.kinds),
            "extractors": used, "missing": {m: int((~present[m]).sum()) for m in table.cells},
            "bad_inputs": bad.summary(), **(info or {})}
    return Splits(*(full.subset(rows[s]) for s in SPLIT_NAMES), encoders=encoders, info=meta, ids=ids, inputs=specs,
                  lines=lines)


def _cells(table: Table, m: str) -> list[str | None]:
    """Each row's cell of ``m`` as a ``corrupt:`` condition reads it again: a file's absolute path, a text as is."""
    if table.kinds[m] == "text":
        return list(table.cells[m])
    return [None if c is None else str(resolve_path(c, table.base).resolve()) for c in table.cells[m]]


def _targets(labels: Sequence[list[str]], names: list[str], multilabel: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    if not multilabel:
        return np.array([index[row[0]] for row in labels], dtype=np.int64)
    target = np.zeros((len(labels), len(names)), dtype=np.float32)
    for i, row in enumerate(labels):
        target[i, [index[label] for label in row]] = 1.0
    return target


def _split_rows(table: Table, seed: int) -> list[str]:
    if table.split is not None:
        return table.split
    return stratified_split([labels[0] for labels in table.labels], seed)


def stratified_split(strata: Sequence[str], seed: int, shares: Sequence[float] = SPLIT_SHARES,
                     at_least_one: bool = False) -> list[str]:
    """A seeded split, stratified: within each stratum (a class; the first label of a multi-label
    row), ``round(share * n)`` rows go to val and to test, the rest to train; ``at_least_one``:
    one at least to val (and to test, where its share is not 0) from a stratum of two rows or more."""
    split = ["train"] * len(strata)
    by_stratum: dict[str, list[int]] = {}
    for row, stratum in enumerate(strata):
        by_stratum.setdefault(stratum, []).append(row)
    for stratum in sorted(by_stratum):
        rows = np.array(by_stratum[stratum])
        rows = rows[np.random.default_rng(derive_seed(seed, "split", stratum)).permutation(len(rows))]
        n_val, n_test = round(shares[1] * len(rows)), round(shares[2] * len(rows))
        if at_least_one and len(rows) >= 2:
            n_val, n_test = max(n_val, 1), max(n_test, 1 if shares[2] > 0 and len(rows) >= 3 else 0)
        for row in rows[:n_val]:
            split[row] = "val"
        for row in rows[n_val:n_val + n_test]:
            split[row] = "test"
    return split


def _present_rows(table: Table, m: str) -> list[int]:
    return [i for i, c in enumerate(table.cells[m]) if c is not None]


def _read(table: Table, m: str, row: int, read, bad: BadInputs):
    """``read(cell)``; an unreadable cell is an error naming the sample, or (policy
    ``missing``) becomes missing and is recorded: then None."""
    try:
        return read(table.cells[m][row])
    except (ExtractorError, DataError) as err:
        if bad.policy == "error":
            raise DataError(f"{table.where(row)}, {m}: {err} (or use --on-bad-input missing to treat such cells as "
                            f"missing)") from None
        bad.marked_missing.append({"split": table.split[row], **table.place(row), "id": table.ids[row], "modality": m,
                                   "reason": str(err)})
        table.cells[m][row] = None
        return None


def _npy_column(table: Table, m: str, bad: BadInputs) -> np.ndarray:
    """``.npy`` feature vectors (one per cell, finite) -> ``[N, D]`` float32. The length ``D`` is
    the one most cells' headers give (read before any array), so a wrong first file is the bad one."""
    shapes = {row: _read(table, m, row, lambda cell: npy_shape(resolve_path(cell, table.base)), bad)
              for row in _present_rows(table, m)}
    lengths = Counter(shape[0] for shape in shapes.values() if shape is not None and len(shape) == 1)
    if not lengths:
        raise DataError(f"{table.source}: modality {m!r}: no readable 1-D .npy vector in any row")
    length = lengths.most_common(1)[0][0]
    vectors = {}
    for row in _present_rows(table, m):
        vector = _read(table, m, row, lambda cell: _load_vector(resolve_path(cell, table.base), shapes[row], length), bad)
        if vector is not None:
            vectors[row] = vector
    if not vectors:
        raise DataError(f"{table.source}: modality {m!r} is missing from every row")
    out = np.zeros((len(table.ids), length), dtype=np.float32)
    for row, vector in vectors.items():
        out[row] = vector
    return out


def npy_shape(path: Path) -> tuple[int, ...]:
    """The shape a ``.npy`` file's header declares, read without reading the array (an ``.npz``
    or any other format under that name is a :class:`DataError`)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a .npy array ({err})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (pickled), which are never loaded")
    return tuple(shape)


def _load_vector(path: Path, shape: tuple[int, ...], length: int) -> np.ndarray:
    """The vector of a .npy file whose header gave ``shape``, checked against the column's ``length``."""
    if shape != (length,):
        raise DataError(f"{path}: shape {list(shape)}, but this column's vectors have length {length}")
    try:
        vector = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    if vector.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected a numeric vector, got {vector.dtype}")
    if not np.all(np.isfinite(vector)):
        raise DataError(f"{path}: holds NaN or infinite values")
    return vector.astype(np.float32)


def _feature_column(table: Table, m: str, extractor, cache: FeatureCache, bad: BadInputs,
                    device: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Frozen features of every present cell: from the cache, or computed (in chunks) and cached;
    and what the input gate reads of each (``extractor.views``: a picture's thumbnail, a text's
    code points; cached beside; ``None`` for an extractor without views)."""
    keys = {row: _read(table, m, row, lambda c: cache.key(c, extractor.kind, table.base), bad) for row in _present_rows(table, m)}
    rows = [row for row, key in keys.items() if key is not None]
    features = {row: cache.get(keys[row]) for row in rows}
    viewed = hasattr(extractor, "views")
    views = _known_views(table, m, extractor, cache, keys, rows) if viewed else {}
    todo = [row for row in rows if features[row] is None or (viewed and views[row] is None)]
    if todo:
        module = None
        bar = tqdm(total=len(todo), desc=f"{m}: {extractor.name} features", unit="item", disable=None)
        for chunk, loaded in _loaded_chunks(table, m, _remembering_load(table, m, extractor, cache, keys), todo, bad):
            readable = [row for row in chunk if loaded[row] is not None]
            unviewed = [row for row in readable if viewed and views[row] is None]
            for row, view in zip(unviewed, extractor.views([loaded[row] for row in unviewed]) if unviewed else []):
                views[row] = view
                cache.put(keys[row] + VIEW_KEY, view)
            unextracted = [row for row in readable if features[row] is None]
            if unextracted:
                if module is None:
                    device = resolve_device(device)
                    module = extractor.module().eval().to(device)
                _extract(table, m, extractor, module, device, {row: loaded[row] for row in unextracted}, features, keys,
                         cache, bad)
            bar.update(len(chunk))
        bar.close()
    rows = [row for row in rows if table.cells[m][row] is not None]
    if not rows:
        raise DataError(f"{table.source}: modality {m!r} is missing from every row")
    return _column(features, rows, len(table.ids)), _column(views, rows, len(table.ids)) if viewed else None


def _remembering_load(table: Table, m: str, extractor, cache: FeatureCache, keys: Mapping[int, str]) -> Callable[[int], Any]:
    """``load(row)``: the extractor's decoding of a row's cell, where a file that did not decode
    before (the same bytes) fails again without decoding, and a new failure is remembered."""
    def load(row: int):
        path = resolve_path(table.cells[m][row], table.base) if extractor.kind != "text" else None
        known = cache.failure(keys[row])
        if known is not None:
            raise ExtractorError(f"{path}: {known}")
        try:
            return extractor.load(table.cells[m][row], table.base)
        except (ExtractorError, DataError) as err:
            if path is not None:
                cache.put_failure(keys[row], str(err).removeprefix(f"{path}: "))
            raise

    return load


def decode_workers() -> int:
    """Threads that decode files (PIL, libsndfile and FFmpeg decode outside the GIL):
    ``MMROBUST_DECODE_WORKERS``, else one per core up to 4."""
    text = os.environ.get("MMROBUST_DECODE_WORKERS", "")
    return max(1, int(text)) if text.isdigit() else max(1, min(4, os.cpu_count() or 1))


def _loaded_chunks(table: Table, m: str, load: Callable[[int], Any], rows: list[int],
                   bad: BadInputs) -> Iterator[tuple[list[int], dict]]:
    """Each chunk of ``rows`` with its cells decoded by ``load(row)`` (``None`` where unreadable:
    see :func:`_read`), by :func:`decode_workers` threads; the next chunk decodes while the caller
    extracts this one."""
    chunks = _chunks(rows, CHUNK)
    with ThreadPoolExecutor(decode_workers()) as pool:
        def submit(chunk: list[int]):
            return chunk, {row: pool.submit(load, row) for row in chunk}

        ahead = deque(submit(chunk) for chunk in itertools.islice(chunks, 2))
        while ahead:
            chunk, futures = ahead.popleft()
            following = next(chunks, None)
            if following is not None:
                ahead.append(submit(following))
            yield chunk, {row: _read(table, m, row, lambda _: futures[row].result(), bad) for row in chunk}


VIEW_KEY = ".view"  # what the input gate reads of a cell, in the feature cache: its features' key and this


def _known_views(table: Table, m: str, extractor, cache: FeatureCache, keys: Mapping[int, str],
                 rows: list[int]) -> dict[int, np.ndarray | None]:
    """The views known without loading a file: a text's from its cell (never cached), a picture's
    from the cache (``None`` where not cached yet)."""
    if extractor.kind == "text":
        return dict(zip(rows, extractor.views([table.cells[m][row] for row in rows])))
    return {row: cache.get(keys[row] + VIEW_KEY) for row in rows}


def _extract(table: Table, m: str, extractor, module, device, loaded: Mapping[int, Any], features: dict, keys: dict,
             cache: FeatureCache, bad: BadInputs) -> None:
    """The features of the ``loaded`` rows by the extractor's ``module`` on ``device``, into
    ``features`` and the cache (a non-finite one is a bad cell)."""
    with torch.inference_mode():
        batch = extractor.preprocess(list(loaded.values()))
        out = module(batch if isinstance(batch, list) else move_to(batch, device)).float().cpu().numpy()
    for row, vector in zip(loaded, out):
        features[row] = _read(table, m, row, lambda _: _finite_features(vector, extractor.name), bad)
        if features[row] is not None:
            cache.put(keys[row], vector)


def _column(values: Mapping[int, np.ndarray], rows: list[int], n: int) -> np.ndarray:
    """One value per row (zeros where a row has none), of the first value's dtype."""
    first = np.asarray(values[rows[0]])
    out = np.zeros((n, *first.shape), dtype=first.dtype)
    for row in rows:
        out[row] = values[row]
    return out


def _finite_features(vector: np.ndarray, extractor: str) -> np.ndarray:
    if not np.all(np.isfinite(vector)):
        raise DataError(f"{extractor} gave non-finite features (an input of extreme values?)")
    return vector


def _preprocessed_column(table: Table, m: str, extractor, bad: BadInputs):
    """The extractor's preprocessed inputs of every row (zeros where missing), for fine-tuning."""
    def load(row: int):
        return extractor.load(table.cells[m][row], table.base)

    loaded = {row: item for _, chunk in _loaded_chunks(table, m, load, _present_rows(table, m), bad)
              for row, item in chunk.items()}
    rows = [row for row, item in loaded.items() if item is not None]
    if not rows:
        raise DataError(f"{table.source}: modality {m!r} is missing from every row")
    parts = [extractor.preprocess([loaded[row] for row in chunk]) for chunk in _chunks(rows, CHUNK)]
    if not isinstance(parts[0], (torch.Tensor, dict)):
        raise DataError(f"extractor {extractor.name!r} cannot be fine-tuned (it is not a torch model)")
    return scatter_rows(_concat(parts), rows, len(table.ids))


def _concat(parts: list):
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


FEW_GROUPS = 30  # fewer test groups than this: the bootstrap intervals rest on very few draws


def _warn_few_groups(table: Table, test_rows: np.ndarray) -> None:
    """A group column that holds few distinct values in the test split (a category, not a source?) is said."""
    if not table.groups:
        return
    n_groups = len({table.groups[i] for i in test_rows})
    if n_groups < FEW_GROUPS:
        warnings.warn(f"{table.source}: the {len(test_rows)} test rows come from only {n_groups} groups of the group "
                      f"column; the bootstrap intervals resample those groups and will be wide. If that column is a "
                      f"category rather than the source rows share, name another with group_column", stacklevel=2)
