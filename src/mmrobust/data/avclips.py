"""Kinetics-Sound (31 classes) and AVE (28 classes): video + audio clips, modalities ``video``
and ``audio``, read from the trees the field's readers use.

Kinetics-Sound lists: ``train.csv``/``test.csv`` (optionally ``val.csv``; rows ``clip,label``, a
header skipped), or the published ``my_train.txt``/``my_test.txt`` as OGM-GE ships them
(GeWu-Lab/OGM-GE_CVPR2022 ``data/KineticSound/``: CRLF, rows ``clip,frames,label_index``; class
names from ``classes.txt`` or ``class.txt`` when present). Media, whichever the root holds:

    <root>/visual/<clip>/*.jpg  and  <root>/audio_spec/<clip>.npy | .pkl  or  <root>/audio/<clip>.wav
        (OGM-GE's reader, ``dataset/dataset.py``: frames at 1 fps, precomputed spectrograms;
        ``.npy`` as BalanceBenchmark and InfoReg keep them)
    <root>/{train,test}/<clip>/*.jpg  with  <root>/{train,test}/<clip>/<clip>.wav
        (frames and the WAV per clip, split by folder)

AVE: ``<root>/visual/<clip>/*.jpg``, ``<root>/audio/<clip>.wav`` and AVE's own
``{trainSet,valSet,testSet}.txt`` (rows ``Category&VideoID&Quality&StartTime&EndTime``), read as
released: a video listed twice keeps its last listing, a video in two splits stays only in the
later of test, validation, training (:func:`repair_ave_lists`; the counts are warned, and kept
in the run's provenance).

The downloaded videos themselves serve too, where a clip has no extracted frames or audio: a
video file named ``<clip>`` with a video suffix (``.mp4``, ``.mkv``, ``.webm``, ...) anywhere under
the root (AVE's release: ``AVE/<VideoID>.mp4``) gives ``max_frames`` frames evenly spaced over
it and its sound track.

Frames: up to ``max_frames`` per clip in file-name order, resized to ``size`` x ``size``, uint8
(the ``resnet18`` encoder ImageNet-normalises them, draws ``frames`` of them: at random in
training, evenly spaced in evaluation, and in training crops and flips each at random as
OGM-GE does); a clip with fewer frames repeats its last one. Audio:
:func:`mmrobust.audio.ogm_ge_spectrogram` (1 x 257 x 188) from a WAV, or the precomputed one.
Without a validation list, a seeded stratified 10% of the training clips is held out. Decoded
once into memory-mapped ``.npy`` arrays under ``<root>/.mmrobust/`` (or ``cache_dir``), reused
while the lists are unchanged.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..audio import ogm_ge_spectrogram
from ..media import VIDEO_SUFFIXES, read_audio, read_video_frames
from ..batch import MultiModalDataset
from ..encoders import EncoderSpec
from ..errors import DataError
from ..files import atomic_path
from ..validate import BadInputs
from ..registry import DATASETS
from .splits import Splits
from .table import decode_workers, stratified_split

AUDIO_SHAPE = (1, 257, 188)
KS_CLASSES = 31


def _ks_lists(root: Path) -> tuple[dict[str, list[tuple[str, str]]], dict]:
    """``train.csv``/``test.csv`` (``clip,label``), else the published ``my_train.txt``/``my_test.txt``."""
    if not (root / "train.csv").is_file() and (root / "my_train.txt").is_file():
        return _ks_published_lists(root)
    lists = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}.csv"
        if not path.is_file():
            if split == "val":
                continue
            raise DataError(f"{path}: missing (Kinetics-Sound lists: train.csv and test.csv, rows clip,label; or the "
                            f"published my_train.txt and my_test.txt)")
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]  # (the row's last line: one line per row here)
        if rows and rows[0][1][:2] in (["clip", "label"], ["id", "label"], ["name", "label"]):
            rows = rows[1:]
        bad = next((line for line, r in rows if len(r) != 2 or not r[0].strip() or not r[1].strip()), None)
        if bad is not None:
            raise DataError(f"{path}, line {bad}: expected 'clip,label'")
        lists[split] = [(r[0].strip(), r[1].strip()) for _, r in rows]
    return lists, {"lists": "train.csv, test.csv"}


def _ks_published_lists(root: Path) -> tuple[dict[str, list[tuple[str, str]]], dict]:
    """The lists OGM-GE publishes (GeWu-Lab/OGM-GE_CVPR2022 ``data/KineticSound/my_train.txt``,
    ``my_test.txt``; MIT): CRLF, no header, rows ``clip,frames,label_index`` with integer labels
    0-30. Class names, where a file gives them: ``classes.txt`` (one per line, in label order) or
    ``class.txt`` (one comma-separated line, as OGM-GE's descendants read it); else the index."""
    names = _ks_class_names(root)
    lists = {}
    for split, name in (("train", "my_train.txt"), ("test", "my_test.txt")):
        path = root / name
        if not path.is_file():
            raise DataError(f"{path}: missing (the published Kinetics-Sound lists: my_train.txt and my_test.txt)")
        rows = []
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line, values in enumerate(csv.reader(f), start=1):
                if not values:
                    continue
                if len(values) != 3 or not values[0].strip() or not values[2].strip().isdigit():
                    raise DataError(f"{path}, line {line}: expected 'clip,frames,label_index' (an integer label), got {values}")
                index = int(values[2])
                if names is not None and index >= len(names):
                    raise DataError(f"{path}, line {line}: label {index}, but the class names list {len(names)} classes")
                if names is None and index >= KS_CLASSES:
                    raise DataError(f"{path}, line {line}: label {index}, but Kinetics-Sound's published labels run from "
                                    f"0 to {KS_CLASSES - 1}; give the class names (classes.txt) if yours are others")
                rows.append((values[0].strip(), names[index] if names is not None else str(index)))
        lists[split] = rows
    order = names if names is not None else [str(i) for i in range(max(int(r[1]) for rows in lists.values() for r in rows) + 1)]
    return lists, {"lists": "my_train.txt, my_test.txt (OGM-GE's)", "class_names": "from file" if names else "label indices",
                   "label_order": order}


def _ks_class_names(root: Path) -> list[str] | None:
    if (root / "classes.txt").is_file():
        return [line.strip() for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    if (root / "class.txt").is_file():
        return [name.strip() for name in (root / "class.txt").read_text(encoding="utf-8").strip().split(",") if name.strip()]
    return None


def _ks_files(root: Path, split: str, clip: str) -> tuple[Path, Path]:
    """Where a clip's frames and audio are: ``visual/<clip>/`` with ``audio_spec/<clip>.npy`` or
    ``.pkl`` (precomputed spectrograms) or ``audio/<clip>.wav`` when the root has ``visual/``;
    else ``<split>/<clip>/`` frames with ``<clip>.wav`` inside (validation clips under train/);
    else the downloaded video ``<clip>.mp4`` (or another video suffix) anywhere under the root,
    for its frames and its sound track (:func:`_with_video`)."""
    if (root / "visual").is_dir():
        candidates = [root / "audio_spec" / f"{clip}.npy", root / "audio_spec" / f"{clip}.pkl", root / "audio" / f"{clip}.wav"]
        return _with_video(root, clip, root / "visual" / clip, candidates)
    folder = root / ("train" if split == "val" else split) / clip
    return _with_video(root, clip, folder, [folder / f"{clip}.wav"])


def _with_video(root: Path, clip: str, frames: Path, audio: list[Path]) -> tuple[Path, Path]:
    """The clip's extracted frames and audio where they exist; else its video file, for whichever
    is missing (frames sampled from it, its sound track decoded); else the expected places (the
    error then names them)."""
    video = _video_files(str(root)).get(clip) if not frames.is_dir() or not any(p.is_file() for p in audio) else None
    frames = frames if frames.is_dir() or video is None else video
    sound = next((p for p in audio if p.is_file()), video or audio[0])
    return frames, sound


@functools.lru_cache(maxsize=4)
def _video_files(root: str) -> dict[str, Path]:
    """Every video file under ``root`` (the field's downloads: ``<root>/<any folders>/<clip>.mp4``)
    by its name without the suffix; a name found twice is an error naming both files."""
    found: dict[str, Path] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() not in VIDEO_SUFFIXES or ".mmrobust" in path.parts or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"{root}: two videos named {path.stem!r} ({found[path.stem]} and {path}); which is the clip?")
        found[path.stem] = path
    return found


def _ave_lists(root: Path) -> tuple[dict[str, list[tuple[str, str]]], dict]:
    lists, counts = repair_ave_lists(_ave_listed(root))
    return lists, {"lists": "trainSet.txt, valSet.txt, testSet.txt", "list_repairs": counts}


def _ave_listed(root: Path) -> dict[str, list[tuple[str, str]]]:
    """AVE's lists as released, repeats included."""
    lists = {}
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        path = root / name
        if not path.is_file():
            if split == "val":
                continue
            raise DataError(f"{path}: missing (AVE lists: trainSet.txt, valSet.txt, testSet.txt)")
        rows = []
        for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):  # a BOM is no category
            parts = text.strip().split("&")
            if not text.strip() or parts[0] == "Category":
                continue
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise DataError(f"{path}, line {line}: expected 'Category&VideoID&Quality&StartTime&EndTime'")
            rows.append((parts[1], parts[0]))
        lists[split] = rows
    return lists


def _ave_files(root: Path, split: str, clip: str) -> tuple[Path, Path]:
    """``visual/<clip>/`` frames and ``audio/<clip>.wav``, or the released video (``AVE/<clip>.mp4``)."""
    return _with_video(root, clip, root / "visual" / clip, [root / "audio" / f"{clip}.wav"])


def repair_ave_lists(lists: dict[str, list[tuple[str, str]]]) -> tuple[dict[str, list[tuple[str, str]]], dict]:
    """AVE's released lists as they are: one video may hold several events, so a video can be
    listed twice in a split (with two categories) and in two splits. One row per video:

    - listed twice in a split: the **last** listing is kept (as OGM-GE's ``AVDataset`` does,
      GeWu-Lab/OGM-GE_CVPR2022 ``dataset/dataset.py``), so no two rows share inputs with
      different labels;
    - in two splits: kept in the later of test, validation, training (test first) and left out
      of the others — never in training when it is in test or validation.

    Returns the lists and the counts (``repeated``: listings dropped per split; ``cross_split``:
    videos dropped from a split because a later one has them)."""
    kept, repeated = {}, {}
    for split, rows in lists.items():
        last = {clip: label for clip, label in rows}  # the last listing wins
        order = list(dict.fromkeys(clip for clip, _ in reversed(rows)))[::-1]  # where each last listing stands
        kept[split] = [(clip, last[clip]) for clip in order]
        repeated[split] = len(rows) - len(kept[split])
    cross, taken = {}, set()
    for split in ("test", "val", "train"):
        if split not in kept:
            continue
        before = len(kept[split])
        kept[split] = [(clip, label) for clip, label in kept[split] if clip not in taken]
        cross[split] = before - len(kept[split])
        taken |= {clip for clip, _ in kept[split]}
    counts = {"repeated": {k: v for k, v in repeated.items() if v}, "cross_split": {k: v for k, v in cross.items() if v}}
    if counts["repeated"] or counts["cross_split"]:
        warnings.warn("AVE lists: " + "; ".join(
            [f"{n} repeated listing(s) in {split} dropped (the last kept)" for split, n in counts["repeated"].items()]
            + [f"{n} video(s) left out of {split} (also in a later split)" for split, n in counts["cross_split"].items()]),
            UserWarning, stacklevel=2)
    return kept, counts


def _with_val(lists: dict, seed: int) -> dict:
    if "val" in lists:
        return lists
    train = lists["train"]
    split = stratified_split([label for _, label in train], seed, (0.9, 0.1, 0.0), at_least_one=True)
    return {"train": [r for r, s in zip(train, split) if s == "train"],
            "val": [r for r, s in zip(train, split) if s == "val"], "test": lists["test"]}


def _frames(folder: Path, max_frames: int, size: int) -> np.ndarray:
    """Up to ``max_frames`` JPEG frames of a clip's folder (its last repeated), or ``max_frames``
    frames evenly spaced over a video file."""
    from PIL import Image, UnidentifiedImageError

    if folder.suffix.lower() in VIDEO_SUFFIXES and not folder.is_dir():
        try:
            return read_video_frames(folder, max_frames, size)
        except FileNotFoundError:
            raise DataError(f"{folder}: video file not found") from None

    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:max_frames]
    if not files:
        raise DataError(f"{folder}: no frames (expected JPEG frames of the clip)")
    out = []
    for path in files:
        try:
            with Image.open(path) as img:
                out.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{path}: not a readable image ({err})") from None
    out += [out[-1]] * (max_frames - len(out))
    return np.stack(out).transpose(0, 3, 1, 2)


def _spectrogram(path: Path) -> np.ndarray:
    """A clip's spectrogram: computed from a WAV, or read precomputed (``.npy``; OGM-GE's pickled
    ``.pkl``, unpickled with nothing but NumPy arrays allowed), ``257 x 188`` or ``1 x 257 x 188``."""
    if path.suffix in (".npy", ".pkl"):
        if not path.is_file():
            raise DataError(f"{path}: spectrogram file not found")
        try:
            array = np.load(path, allow_pickle=False) if path.suffix == ".npy" else _ArrayUnpickler.read(path)
            if array.dtype.kind not in "fiu":
                raise ValueError(f"an array of {array.dtype}, not numbers")
            array = np.asarray(array, dtype=np.float32)
        except (ValueError, TypeError, OSError, pickle.UnpicklingError, EOFError, MemoryError) as err:
            raise DataError(f"{path}: not a readable spectrogram ({err})") from None
        if array.shape == AUDIO_SHAPE[1:]:
            array = array[None]
        if array.shape != AUDIO_SHAPE or not np.isfinite(array).all():
            raise DataError(f"{path}: a spectrogram of shape {list(array.shape)}; expected {list(AUDIO_SHAPE[1:])} "
                            f"finite values (OGM-GE's log-STFT)")
        return array
    try:
        wave, rate = read_audio(path)
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    except ValueError as err:
        raise DataError(str(err)) from None
    return ogm_ge_spectrogram(wave, rate)


MAX_PICKLE_BYTES = 64 << 20
MAX_PICKLED_VALUES = 16 * 257 * 188  # values a pickled spectrogram may ask for (a few spectrograms' worth)


def _values_asked(shape) -> int:
    dims = np.atleast_1d(np.asarray(shape, dtype=object))
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"an array of shape {shape!r}")
    return int(np.prod([int(d) for d in dims], dtype=object))


def _check_asked(shape) -> None:
    """A pickle may name a shape of any size in a few bytes: refused before anything is allocated."""
    if _values_asked(shape) > MAX_PICKLED_VALUES:
        raise pickle.UnpicklingError(f"it asks for an array of {_values_asked(shape):,} values; a spectrogram has "
                                     f"{257 * 188:,}")


class _BoundedArray(np.ndarray):
    """``numpy.ndarray`` as a pickle may call it: its shape checked before the array is allocated."""

    def __new__(cls, shape, *args, **kwargs):
        _check_asked(shape)
        return super().__new__(cls, shape, *args, **kwargs)


def _bounded_reconstruct(reconstruct):
    def call(subtype, shape, dtype):
        _check_asked(shape)
        return reconstruct(subtype, shape, dtype)

    return call


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles a NumPy array and nothing else (a pickle can name any callable; this one may
    only name the few NumPy needs to rebuild an array)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused: the pickle names {module}.{name}, not a NumPy array")
        if name == "ndarray":
            return _BoundedArray
        if name == "_reconstruct":
            return _bounded_reconstruct(super().find_class(module, name))
        return super().find_class(module, name)

    @classmethod
    def read(cls, path: Path) -> np.ndarray:
        if path.stat().st_size > MAX_PICKLE_BYTES:
            raise pickle.UnpicklingError(f"{path.stat().st_size:,} bytes; a pickled spectrogram is about 200 KB")
        with open(path, "rb") as f:
            value = cls(f).load()
        if not isinstance(value, np.ndarray):
            raise pickle.UnpicklingError(f"holds a {type(value).__name__}, not an array")
        return np.asarray(value)


def load_clips(name: str, root: Path, lists: dict, files, max_frames: int, size: int, cache: Path,
               bad: BadInputs, order: list[str] | None = None) -> tuple[dict[str, MultiModalDataset], dict[str, list[str]]]:
    """The decoded splits and their clip ids; ``order``: the labels' order (else sorted as text)."""
    seen = {label for rows in lists.values() for _, label in rows}
    labels = [label for label in order if label in seen] if order else sorted(seen)
    key = hashlib.sha256(json.dumps([name, lists, max_frames, size], sort_keys=True).encode()).hexdigest()[:16]
    out, ids = {}, {}
    for split, rows in lists.items():
        if not rows:
            raise DataError(f"{root}: the {split} split has no clips")
        video, audio, present = _decoded(split, rows, root, files, max_frames, size, cache / f"{split}-{key}", bad)
        keep = present["video"] | present["audio"]
        for row in np.flatnonzero(~keep):
            bad.dropped.append({"split": split, "row": int(row), "id": rows[row][0], "reason": "nothing readable left"})
        target = np.array([labels.index(label) for _, label in rows], dtype=np.int64)
        data = MultiModalDataset({"video": video, "audio": audio}, target, present, num_classes=len(labels),
                                 label_names=labels)
        out[split] = data.subset(np.flatnonzero(keep)) if not keep.all() else data
        ids[split] = [rows[i][0] for i in np.flatnonzero(keep)]
    return out, ids


def _decoded(split, rows, root, files, max_frames, size, folder: Path, bad: BadInputs):
    """Memory-mapped frames and spectrograms of one split (decoded once; complete or absent)."""
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["bad"] and bad.policy == "error":  # decoded earlier under --on-bad-input missing
            first = meta["bad"][0]
            raise DataError(f"{split} clip {first['id']!r}, {first['modality']}: {first['reason']} "
                            f"(or use --on-bad-input missing)")
        present = {m: np.array(meta["present"][m], dtype=bool) for m in ("video", "audio")}
        bad.marked_missing += meta["bad"]
        return (np.load(folder / "video.npy", mmap_mode="r"), np.load(folder / "audio.npy", mmap_mode="r"), present)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    video = np.lib.format.open_memmap(folder / ".video.npy.tmp", "w+", np.uint8, (n, max_frames, 3, size, size))
    audio = np.lib.format.open_memmap(folder / ".audio.npy.tmp", "w+", np.float32, (n, *AUDIO_SHAPE))
    present = {"video": np.ones(n, dtype=bool), "audio": np.ones(n, dtype=bool)}
    found = []
    def decode(clip: str) -> dict[str, np.ndarray | DataError]:
        frames, sound = files(root, split, clip)
        return {"video": _attempt(lambda: _frames(frames, max_frames, size)), "audio": _attempt(lambda: _spectrogram(sound))}

    targets = {"video": video, "audio": audio}
    with ThreadPoolExecutor(decode_workers()) as pool, tqdm(total=n, desc=f"decode {split}", unit="clip", disable=None) as bar:
        for start in range(0, n, DECODE_CHUNK):  # clips decoded by worker threads, a chunk at a time
            for i, decoded in enumerate(pool.map(decode, [clip for clip, _ in rows[start:start + DECODE_CHUNK]]), start):
                for modality, value in decoded.items():
                    if not isinstance(value, DataError):
                        targets[modality][i] = value
                        continue
                    clip = rows[i][0]
                    if bad.policy == "error":
                        raise DataError(f"{split} clip {clip!r}, {modality}: {value} (or use --on-bad-input missing)")
                    present[modality][i] = False
                    found.append({"split": split, "row": i, "id": clip, "modality": modality, "reason": str(value)})
                bar.update()
    video.flush()
    audio.flush()
    del video, audio
    for name in ("video", "audio"):
        (folder / f".{name}.npy.tmp").replace(folder / f"{name}.npy")
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps({"present": {m: p.tolist() for m, p in present.items()}, "bad": found}))
    bad.marked_missing += found
    return np.load(folder / "video.npy", mmap_mode="r"), np.load(folder / "audio.npy", mmap_mode="r"), present


DECODE_CHUNK = 64  # clips decoded at once (their arrays wait in memory until written)


def _attempt(read) -> np.ndarray | DataError:
    """``read()``, or the :class:`DataError` it raised (returned from a worker, raised in order)."""
    try:
        return read()
    except DataError as err:
        return err


def _splits(name: str, root: str, lists_of, files, classes: int, frames: int, max_frames: int, size: int,
            cache_dir: str | None, val_seed: int, bad: BadInputs | None) -> Splits:
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(f"{root}: no such folder (the {name} data; see the README for the layout)")
    bad = bad if bad is not None else BadInputs()
    _video_files.cache_clear()  # the videos under the root as they are now (the cache serves one load)
    listed, list_info = lists_of(root_path)
    lists = _with_val(listed, val_seed)
    cache = Path(cache_dir) if cache_dir else root_path / ".mmrobust"
    data, ids = load_clips(name, root_path, lists, files, max_frames, size, cache, bad, list_info.pop("label_order", None))
    labels = data["train"].label_names
    encoders = {"video": EncoderSpec("resnet18", frames=frames, augment=True), "audio": EncoderSpec("resnet18-spectrogram")}
    info = {"dataset": name, "root": str(root_path), "classes": len(labels), "expected_classes": classes,
            "clips": {s: len(d) for s, d in data.items()}, "frames": {"stored": max_frames, "used": frames, "size": size},
            "audio": "OGM-GE log-STFT 257 x 188", "bad_inputs": bad.summary(), **list_info}
    inputs = {"video": {"kind": "array", "shape": [max_frames, 3, size, size]},
              "audio": {"kind": "array", "shape": list(AUDIO_SHAPE)}}
    return Splits(data["train"], data["val"], data["test"], encoders, info, ids=ids, inputs=inputs)


@DATASETS.register("kinetics-sound")
def kinetics_sound(root: str, frames: int = 3, max_frames: int = 10, size: int = 224, cache_dir: str | None = None,
                   val_seed: int = 0, bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """Kinetics-Sound (31 classes), OGM-GE layout: frames at 1 fps + WAV per clip, train/test CSV lists."""
    return _splits("Kinetics-Sound", root, _ks_lists, _ks_files, KS_CLASSES, frames, max_frames, size, cache_dir, val_seed,
                   bad_inputs)


@DATASETS.register("ave")
def ave(root: str, frames: int = 3, max_frames: int = 10, size: int = 224, cache_dir: str | None = None,
        val_seed: int = 0, bad_inputs: BadInputs | None = None, device: str = "auto") -> Splits:
    """AVE (28 classes), OGM-GE layout: visual/<clip>/ frames, audio/<clip>.wav, AVE's *Set.txt lists."""
    return _splits("AVE", root, _ave_lists, _ave_files, 28, frames, max_frames, size, cache_dir, val_seed, bad_inputs)
