"""Your own data with no code: a CSV or JSONL manifest, one row per sample.

One column per modality (the path of an image, an audio file, a video file or a ``.npy`` feature
vector, relative to the manifest, or a text; :func:`infer_kind` tells which, and never reads a
column of paths as text), a label column (multi-label as ``a|b|c``),
optional ``id`` (default ``line<N>``: a row is named by its line everywhere) and ``split``
(train / val / test) columns. An empty cell means that modality is missing for that row (the
``observed`` protocol). Without a ``split`` column the rows get a
seeded, stratified 70 / 15 / 15 split, saved in the run folder as ``splits.csv``.
"""
from __future__ import annotations

import csv
import difflib
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import DataError
from ..registry import DATASETS
from ..validate import BadInputs
from ..media import IMAGE_SUFFIXES, SUFFIXES, is_media_suffix, media_kind  # noqa: F401 (IMAGE_SUFFIXES: food101's)
from ..pretrained import names_file
from .splits import Splits
from .table import SPLIT_ALIASES, Table, build_splits

MAX_CELL = 64 << 20  # characters in one CSV cell at most
FILE_CHECKS = 200  # the first cells checked for a file next to the manifest (the others by their suffix only)


def read_rows(path: Path, protected: Sequence[str] = ()) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """The header, the rows of a CSV (or TSV) or JSONL file (every value as a stripped string),
    and the line each row starts on, as an editor numbers it (the one way rows are named in
    messages, reports and default ids: a quoted cell over several lines and blank lines count).
    A JSONL key given twice in a row: its last value is used, said in one warning per key; for a
    ``protected`` key (the label, the id, the split) it is an error (which value is meant?)."""
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, protected)
    raise DataError(f"{path}: a manifest must be .csv, .tsv or .jsonl, got {suffix or 'no suffix'!r}")


def _read_csv(path: Path, delimiter: str):
    _check_utf8(path)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL))  # a long text is a cell (the default is 131,072)
    try:
        return _csv_rows(path, delimiter)
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None


def _csv_rows(path: Path, delimiter: str):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        if not header or not any(header):
            raise DataError(f"{path}: empty manifest (no header row)")
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise DataError(f"{path}: column {duplicated[0]!r} appears more than once in the header")
        rows, lines = [], []
        end = reader.line_num  # the header's last line
        for values in reader:
            line, end = end + 1, reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"{path}, line {line}: {len(values)} fields, but the header has {len(header)}")
            rows.append({h: v.strip() for h, v in zip(header, values)})
            lines.append(line)
    return header, rows, lines


def _check_utf8(path: Path) -> None:
    """A manifest is UTF-8: otherwise an error naming the file, the line and the byte."""
    for line, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}, line {line}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                            f"save the manifest as UTF-8") from None


def _read_jsonl(path: Path, protected: Sequence[str] = ()):
    header: dict[str, None] = {}
    rows, lines = [], []
    repeated: dict[str, list[int]] = {}  # a key given twice in a row -> the lines
    _check_utf8(path)
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text, object_pairs_hook=lambda pairs: _last_values(pairs, line, repeated))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {line}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {line}: expected a JSON object, got {type(record).__name__}")
        header.update(dict.fromkeys(record))
        rows.append({k: _cell_text(v) for k, v in record.items()})
        lines.append(line)
    for key, where in repeated.items():
        if key in protected:
            raise DataError(f"{path}, line {where[0]}: the key {key!r} appears twice in one record ({len(where)} "
                            f"line(s) like it); which value is meant? Give it once")
        warnings.warn(f"{path}: key {key!r} appears twice in one record on {len(where)} line(s) (first: line "
                      f"{where[0]}); the last value is used", UserWarning, stacklevel=2)
    return list(header), [{h: row.get(h, "") for h in header} for row in rows], lines


def _last_values(pairs: list[tuple[str, Any]], line: int, repeated: dict[str, list[int]]) -> dict:
    keys = [k for k, _ in pairs]
    for key in dict.fromkeys(k for k in keys if keys.count(k) > 1):
        repeated.setdefault(key, []).append(line)
    return dict(pairs)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(v).strip() for v in value)
    return str(value).strip()


def _require_column(path: Path, header: Sequence[str], column: str, role: str) -> None:
    if column not in header:
        close = difflib.get_close_matches(column, header, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"{path}: no {role} column {column!r}{hint}; the columns are: {', '.join(header)}")


def infer_kind(path: Path, column: str, values: Sequence[str]) -> str:
    """The kind of a column: ``image``, ``audio``, ``video`` or ``features`` when its cells are
    files of that kind, else ``text``. A column is one of files when at least half its cells
    look like paths (a media or array suffix, supported or not, or the name of a file next to
    the manifest); its cells must then all be files of one supported kind, or it is refused
    naming a cell: a typo in a path must not turn an image column into text, and an unsupported
    format (``.svg``, ``.3gp``) is never read as text. A text column in which a cell names a file
    of a supported kind is refused too (texts and files mixed)."""
    filled = [v for v in values if v]
    if not filled:
        return "text"
    pathlike = [is_media_suffix(v) or (i < FILE_CHECKS and names_file(v, path.parent)) for i, v in enumerate(filled)]
    if sum(pathlike) * 2 < len(filled):
        leak = next((v for v, p in zip(filled, pathlike) if p and media_kind(v) and names_file(v, path.parent)), None)
        if leak is not None:
            raise DataError(f"{path}: column {column!r} mixes texts and file paths (the cell {leak!r} is a "
                            f"file next to the manifest, of kind {media_kind(leak)}); a column holds one kind: set "
                            f"data.options.kinds.{column}")
        return "text"
    kinds = [media_kind(v) for v in filled]
    counts = Counter(k for k in kinds if k)
    if not counts:
        raise DataError(f"{path}: column {column!r} holds files of a format mmrobust does not read (the cell "
                        f"{filled[0]!r}); {_supported()}; convert them, or set data.options.kinds.{column}")
    kind = counts.most_common(1)[0][0]
    odd = next((v for v, k in zip(filled, kinds) if k != kind), None)
    if odd is not None:
        what = f"{media_kind(odd)}, not {kind}" if media_kind(odd) else "not one"
        raise DataError(f"{path}: column {column!r} looks like {kind} paths, but the cell {odd!r} is {what} "
                        f"({'/'.join(SUFFIXES[kind])}); fix it, or set data.options.kinds.{column}")
    return kind


def _supported() -> str:
    return "supported: " + "; ".join(f"{kind} {' '.join(suffixes)}" for kind, suffixes in SUFFIXES.items())


def read_manifest(path: str | Path, label: str, columns: Sequence[str] | None = None,
                  kinds: Mapping[str, str] | None = None, id_column: str = "id", split_column: str = "split",
                  multilabel: bool | None = None, separator: str = "|", group_column: str = "group",
                  audio_track: Mapping[str, str] | None = None) -> Table:
    """A manifest as a :class:`Table` (every column and cell checked, no file decoded yet).
    ``audio_track``: video column -> the name of a second modality, the audio track of the same
    files (``{clip: clip_audio}``)."""
    path = Path(path)
    header, rows, lines = read_rows(path, protected=(label, id_column, split_column))
    _require_column(path, header, label, "label")
    reserved = {label, id_column, split_column, group_column}
    columns = list(columns) if columns else [h for h in header if h not in reserved]
    for column in columns:
        _require_column(path, header, column, "modality")
    if not columns:
        raise DataError(f"{path}: no modality columns (the columns are: {', '.join(header)})")
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    kinds = {c: (kinds or {}).get(c) or infer_kind(path, c, [r[c] for r in rows]) for c in columns}
    for video, audio in (audio_track or {}).items():
        _add_audio_track(path, header, rows, columns, kinds, video, audio)
    if multilabel is None:
        multilabel = any(separator in r[label] for r in rows)
    ids = [_row_id(path, r, line, id_column in header and id_column) for r, line in zip(rows, lines)]
    labels = [_labels(path, ids[i], r[label], label, separator if multilabel else None) for i, r in enumerate(rows)]
    split = [_split(path, ids[i], r[split_column], split_column) for i, r in enumerate(rows)] if split_column in header else None
    cells = {c: [r[c] or None for r in rows] for c in columns}
    groups = [r[group_column] or ids[i] for i, r in enumerate(rows)] if group_column in header else None
    return Table(str(path), path.parent, ids, cells, kinds, labels, split, multilabel, groups=groups, lines=lines)


def _add_audio_track(path: Path, header: Sequence[str], rows: list[dict[str, str]], columns: list[str],
                     kinds: dict[str, str], video: str, audio: str) -> None:
    """A modality ``audio`` whose cells are the video column's files, read for their sound."""
    if video not in kinds:
        _require_column(path, header, video, "video")
        raise DataError(f"{path}: audio_track: {video!r} is not a modality column")
    if kinds[video] != "video":
        raise DataError(f"{path}: audio_track: column {video!r} holds {kinds[video]}, not video files")
    if audio in header or audio in kinds:
        raise DataError(f"{path}: audio_track: {audio!r} is already a column; name the audio track otherwise")
    for row in rows:
        row[audio] = row[video]
    columns.append(audio)
    kinds[audio] = "audio"


def default_id(line: int) -> str:
    """A row's id when the manifest has no id column: its line (``line7``)."""
    return f"line{line}"


def _row_id(path: Path, row: dict, line: int, id_column: str | bool) -> str:
    if not id_column:
        return default_id(line)
    if not row[id_column]:
        raise DataError(f"{path}, line {line}: empty {id_column!r}")
    return row[id_column]


def _labels(path: Path, sample_id: str, text: str, column: str, separator: str | None) -> list[str]:
    labels = [t.strip() for t in text.split(separator)] if separator else [text]
    labels = [t for t in labels if t]
    if not labels:
        raise DataError(f"{path}: sample {sample_id!r} has an empty {column!r}")
    return labels


def _split(path: Path, sample_id: str, text: str, column: str) -> str:
    name = SPLIT_ALIASES.get(text.lower())
    if name is None:
        raise DataError(f"{path}: sample {sample_id!r} has {column} {text!r}; expected train, val or test")
    return name


@DATASETS.register("manifest")
def manifest(path: str, label: str, columns: Sequence[str] | None = None, kinds: Mapping[str, str] | None = None,
             id_column: str = "id", split_column: str = "split", multilabel: bool | None = None, separator: str = "|",
             extractors: Mapping[str, str] | None = None, finetune: Sequence[str] = (), cache_dir: str | None = None,
             split_seed: int = 0, bad_inputs: BadInputs | None = None, device: str = "auto",
             group_column: str = "group", audio_track: Mapping[str, str] | None = None) -> Splits:
    """Your own data: a CSV / JSONL manifest, one row per sample, one column per modality; an
    optional ``group`` column names the source rows share (their bootstrap intervals resample it);
    ``audio_track`` makes a video column's sound a modality of its own (``{clip: clip_audio}``)."""
    table = read_manifest(path, label, columns, kinds, id_column, split_column, multilabel, separator, group_column,
                          audio_track)
    split = "the manifest's split column" if table.split is not None else f"stratified 70/15/15, seed {split_seed}"
    return build_splits(table, extractors, finetune, cache_dir, split_seed, info={"label": label, "split": split},
                        bad_inputs=bad_inputs, device=device)
