"""ResNet-18 encoders: torchvision's keys and shapes (from a committed fixture), frames pooled,
torchvision weights loading (fc dropped, 1-channel conv1 from the RGB filters)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmrobust.encoders import EncoderSpec
from mmrobust.encoders.resnet import ResNet18

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_resnet18_keys.json").read_text())
TORCHVISION = FIXTURE["keys"]  # name -> shape, from torchvision.models.resnet18().state_dict()


def test_keys_and_shapes_are_torchvisions():
    ours = {k: list(v.shape) for k, v in ResNet18(3).state_dict().items()}
    assert ours == {k: v for k, v in TORCHVISION.items() if not k.startswith("fc.")}
    spectrogram = {k: list(v.shape) for k, v in ResNet18(1).state_dict().items()}
    assert spectrogram["conv1.weight"] == [64, 1, 7, 7] and set(spectrogram) == set(ours)


def _torchvision_like_state(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=generator) if "num_batches" not in k else torch.tensor(1)
            for k, shape in TORCHVISION.items()}


def test_torchvision_weights_load(tmp_path):
    state = _torchvision_like_state()
    torch.save(state, tmp_path / "resnet18.pth")
    rgb = EncoderSpec("resnet18", weights=str(tmp_path / "resnet18.pth")).build()
    assert torch.equal(rgb.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    mono = EncoderSpec("resnet18-spectrogram", weights=str(tmp_path / "resnet18.pth")).build()
    assert torch.allclose(mono.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="not the weights of torchvision's resnet18"):
        EncoderSpec("resnet18", weights=str(tmp_path / "broken.pth")).build()


def test_frames_are_pooled():
    model = ResNet18(3).eval()
    frames = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        pooled = model(frames)
        one_by_one = torch.stack([model(frames[:, t]) for t in range(3)], 1).mean(1)
    assert pooled.shape == (2, 512) and torch.allclose(pooled, one_by_one, atol=1e-5)
    with pytest.raises(ValueError, match=r"expects \[B, 1, H, W\]"):
        ResNet18(1)(torch.randn(2, 3, 64, 64))


def test_frame_sampling_random_in_training_fixed_in_evaluation():
    model = ResNet18(3, frames=2)
    clips = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    model.eval()
    fixed = model._sample_frames(clips)
    assert torch.equal(fixed, clips[:, [0, 4]]) and torch.equal(model._sample_frames(clips), fixed)
    model.train()
    torch.manual_seed(0)
    draws = {tuple(int(f[:, 0, 0, 0].sum()) for f in model._sample_frames(clips)) for _ in range(10)}
    assert len(draws) > 1  # random frames per clip in training
    scaled = model._scaled(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(scaled[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_random_resized_crop_flip():
    from mmrobust.encoders.resnet import random_resized_crop_flip

    image = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    out = random_resized_crop_flip(image, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # full crop: identity or mirror
    same, mirrored = [torch.allclose(o, i, atol=1e-3) for o, i in zip(out, image)], \
        [torch.allclose(o, i.flip(-1), atol=1e-3) for o, i in zip(out, image)]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)
    crops = random_resized_crop_flip(image, scale=(0.1, 0.2))
    assert crops.shape == image.shape and not torch.allclose(crops, image)
    model = ResNet18(3, frames=2, augment=True).eval()  # no augmentation in evaluation
    clip = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(clip), model(clip))
