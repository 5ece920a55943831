"""How a raw input becomes a model input, as data (saved with a model, used by ``predict``).

An *input spec* per modality, recorded by the dataset that trained the model:

    {"kind": "array", "shape": [1, 28, 28]}                     an array (or a .npy file) of that shape
    {"kind": "image", "shape": [1, 28, 28]}                     an image file -> grey (1 channel) or RGB, resized, / 255
        optional "pca": {"mean": [...], "components": [[...], ...]}
                                                                then projected on those components (the
                                                                degradation the training images had); an
                                                                input gate that reads raw inputs reads the
                                                                picture before the projection
    {"kind": "wav", "shape": [1, 32, 32], "frontend": "digits", "range": [lo, hi]}
                                                                a WAV -> the audio front-end's log spectrogram
                                                                (scaled to [0, 1] by ``range`` when given)
    {"kind": "extractor", "extractor": "minilm", "finetune": false, "identity": {...}}
                                                                a file or text -> a pre-trained extractor's
                                                                features (or, fine-tuned, its preprocessed input)

Every kind also takes an array of the model's input shape directly (taken as the model's input;
a gate that reads raw inputs reads that same array).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import InputError
from .pretrained import resolve_path


def default_spec(shape: Sequence[int]) -> dict:
    return {"kind": "array", "shape": [int(s) for s in shape]}


def describe_input(spec: Mapping[str, Any]) -> str:
    """What ``predict`` does to a file of this modality, in words (for the model card)."""
    shape = "x".join(str(s) for s in spec.get("shape", []))
    if spec["kind"] == "image":
        pca = (f", then projected on the training images' {len(spec['pca']['components'])} PCA components "
               "(the degradation the model was trained with)") if spec.get("pca") else ""
        return f"an image file, converted to {'grey' if spec['shape'][0] == 1 else 'RGB'}, resized to {shape}, / 255{pca}"
    if spec["kind"] == "wav":
        return f"a WAV file, through the `{spec['frontend']}` audio front-end (a log spectrogram, {shape})"
    if spec["kind"] == "extractor":
        return f"a file or text, through the pre-trained extractor `{spec['extractor']}`"
    return f"an array (or .npy file) of shape {shape}"


def prepare(modality: str, spec: Mapping[str, Any], values: Sequence[Any], base: Path = Path(".")) -> Any:
    """A batch input for ``values`` (all present: arrays, paths or texts) of one modality."""
    if spec["kind"] == "extractor":
        return _extracted(modality, spec, values, base)
    return torch.from_numpy(np.stack([_one(modality, spec, v, base) for v in values]))


def _one(modality: str, spec: Mapping[str, Any], value: Any, base: Path) -> np.ndarray:
    shape = tuple(spec["shape"])
    if isinstance(value, (str, Path)):
        path = resolve_path(value, base)
        if not path.is_file():
            raise InputError(f"{modality}: {path}: file not found")
        value = _read_file(modality, spec, path)
    array = np.asarray(value, dtype=np.float32)
    if array.shape != shape:
        raise InputError(f"{modality}: expected an input of shape {list(shape)}, got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{modality}: the input holds NaN or infinite values")
    return array


def _read_file(modality: str, spec: Mapping[str, Any], path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        from .data.table import npy_shape
        from .errors import DataError

        try:
            shape = npy_shape(path)
            if shape != tuple(spec["shape"]):
                raise DataError(f"{path}: shape {list(shape)}, expected {list(spec['shape'])}")
            return np.load(path, allow_pickle=False)
        except DataError as err:
            raise InputError(f"{modality}: {err}") from None
        except (ValueError, OSError) as err:
            raise InputError(f"{modality}: {path}: not a readable .npy array ({err})") from None
    if spec["kind"] == "image":
        return _image(modality, spec, path)
    if spec["kind"] == "wav":
        return _wav(modality, spec, path)
    raise InputError(f"{modality}: {path}: this model takes {modality} as an array of shape {spec['shape']} (.npy)")


def _image(modality: str, spec: Mapping[str, Any], path: Path) -> np.ndarray:
    from PIL import Image

    from .pretrained import ExtractorError, image_pixels, open_image

    channels, height, width = spec["shape"]
    try:
        with open_image(path) as img:
            pixels = image_pixels(img, channels, width, height, Image.BILINEAR)
    except ExtractorError as err:
        raise InputError(f"{modality}: {err}") from None
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return image_input(pixels, spec)


def image_input(pixels: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Pixels ``C x H x W`` in [0, 1] as the model's input (projected on the training images' PCA
    when the spec carries one)."""
    return image_inputs(pixels[None], spec)[0]


def image_inputs(pictures: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """:func:`image_input` of each of ``N x C x H x W`` pictures, at once."""
    return pca_project(pictures, spec["pca"]) if spec.get("pca") else pictures.astype(np.float32)


def pca_project(pictures: np.ndarray, pca: Mapping[str, Any]) -> np.ndarray:
    """Pictures (``N x C x H x W``) as the training images were: their projection on the PCA components (centred)."""
    mean, components = np.asarray(pca["mean"], np.float32), np.asarray(pca["components"], np.float32)
    flat = pictures.reshape(len(pictures), -1)
    return (mean + ((flat - mean) @ components.T) @ components).reshape(pictures.shape).astype(np.float32)


def _wav(modality: str, spec: Mapping[str, Any], path: Path) -> np.ndarray:
    from .media import read_audio

    try:
        wave, rate = read_audio(path)
    except ValueError as err:
        raise InputError(f"{modality}: {err}") from None
    return wav_input(wave, rate, spec)


def wav_input(wave: np.ndarray, rate: int, spec: Mapping[str, Any]) -> np.ndarray:
    """A waveform as the model's input: the spec's audio front-end, scaled to its range."""
    from .audio import spectrogram

    spec_ = spectrogram(wave, rate, spec["frontend"])
    if spec.get("range"):
        lo, hi = spec["range"]
        spec_ = (np.clip(spec_, lo, hi) - lo) / (hi - lo)
    return spec_[None].astype(np.float32)


def _extracted(modality: str, spec: Mapping[str, Any], values: Sequence[Any], base: Path):
    from .pretrained import get_extractor

    extractor = get_extractor(spec["extractor"])
    if "weights_sha256" in spec.get("identity", {}) and extractor.identity().get("weights_sha256") != spec["identity"]["weights_sha256"]:
        raise InputError(f"{modality}: the installed {spec['extractor']!r} weights differ from the ones this model was "
                         f"trained with ({spec['identity'].get('package')} {spec['identity'].get('version')})")
    values = [_feature_file(modality, v, base) if _is_npy(v) else v for v in values]
    if extractor.kind == "text":
        _check_texts(modality, values, base)
    given = [isinstance(v, np.ndarray) for v in values]
    if any(given) and spec.get("finetune"):
        raise InputError(f"{modality}: this model fine-tunes its extractor, so it takes files or texts, not features (.npy)")
    out = [np.asarray(v, dtype=np.float32) if g else None for v, g in zip(values, given)]
    files = [v for v, g in zip(values, given) if not g]
    if files:
        items = []
        for value in files:
            try:
                items.append(extractor.load(str(value), base))
            except ValueError as err:
                raise InputError(f"{modality}: {err}") from None
        batch = extractor.preprocess(items)
        if spec.get("finetune"):
            return batch
        extracted = iter(frozen_features(spec["extractor"], batch).numpy())
        out = [o if o is not None else next(extracted) for o in out]
    width = getattr(_frozen(spec["extractor"]), "out_dim", None) if any(given) else None
    wrong = next((o.shape for o in out if o.shape != out[0].shape or (width and o.shape != (width,))), None)
    if wrong is not None:
        raise InputError(f"{modality}: features of shape {list(wrong)}; the extractor {spec['extractor']!r} gives "
                         f"{[width] if width else list(out[0].shape)}")
    return torch.from_numpy(np.stack(out))


def _check_texts(modality: str, values: Sequence[Any], base: Path) -> None:
    """A text modality's values are texts: valid Unicode (a command line's undecodable bytes
    arrive as lone surrogates, which no tokenizer takes), and never a file path (the path, not the
    file, would be encoded): a value naming a file, or one word ending in a media suffix, is refused."""
    from .media import media_kind
    from .pretrained import names_file

    for value in values:
        if isinstance(value, np.ndarray):
            continue
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputError(f"{modality}: the text is not valid UTF-8 (an undecodable byte at character "
                             f"{err.start + 1}); give it in UTF-8") from None
        one_word = text and not any(c.isspace() for c in text)
        if names_file(text, base) or (one_word and media_kind(text)):
            raise InputError(f"{modality}: {text!r} is a file path, but this model reads {modality} as text; give the "
                             f"text itself")


def gate_inputs(modality: str, spec: Mapping[str, Any], values: Sequence[Any], base: Path = Path(".")) -> torch.Tensor:
    """What an input gate that reads raw inputs reads of ``values`` (all present): a picture before
    its PCA projection, or the view of a cell a pre-trained extractor reads (a picture's thumbnail,
    a text's code points: ``extractor.views``; a row given as features has none, ``no_views``,
    and the gate scores it as plausible)."""
    if spec["kind"] != "extractor":
        return prepare(modality, {k: v for k, v in spec.items() if k != "pca"}, values, base)
    from .pretrained import get_extractor

    extractor = get_extractor(spec["extractor"])
    if extractor.kind == "text":
        _check_texts(modality, values, base)
    out = extractor.no_views(len(values))
    cells = [i for i, v in enumerate(values) if not isinstance(v, np.ndarray) and not _is_npy(v)]
    if cells:
        try:
            out[cells] = extractor.views([extractor.load(str(values[i]), base) for i in cells])
        except ValueError as err:
            raise InputError(f"{modality}: {err}") from None
    return torch.from_numpy(out)


def _is_npy(value: Any) -> bool:
    return isinstance(value, (str, Path)) and str(value).lower().endswith(".npy")


def _feature_file(modality: str, value: Any, base: Path) -> np.ndarray:
    """A ``.npy`` of the extractor's features for one row (read without pickle)."""
    path = resolve_path(value, base)
    if not path.is_file():
        raise InputError(f"{modality}: {path}: file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{modality}: {path}: not a readable .npy array ({err})") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise InputError(f"{modality}: {path}: expected one finite feature vector, got shape {list(array.shape)}")
    return array


def frozen_features(name: str, batch: Any) -> torch.Tensor:
    """The frozen pre-trained extractor ``name`` on a preprocessed batch."""
    with torch.inference_mode():
        return _frozen(name)(batch).float()


@functools.lru_cache(maxsize=4)
def _frozen(name: str) -> torch.nn.Module:
    from .pretrained import get_extractor

    return get_extractor(name).module().eval()
