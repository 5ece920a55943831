"""ResNet-18 encoders (He et al. 2016), the backbone of the audio-visual papers (OGM-GE,
UME-MMA on Kinetics-Sound and AVE): ``resnet18`` for frames, ``resnet18-spectrogram`` for a
1-channel spectrogram. Module names and parameter shapes are torchvision's ``resnet18`` (its
``fc`` excepted: an encoder ends at the 512-d pooled features), so ImageNet weights a user has
load with ``weights=PATH``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import ENCODERS


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet18(nn.Module):
    """Input ``[B, C, H, W]``, or ``[B, T, C, H, W]`` frames (features averaged over frames);
    output ``[B, 512]``. With ``frames=k`` and more than k frames per clip, k are used: drawn
    at random per clip in training, evenly spaced in evaluation (OGM-GE's frame sampling).
    uint8 RGB input is scaled to [0, 1] and ImageNet-normalised; float input is used as is.
    ``augment=True``: in training each image (each frame) gets a random resized crop (area 8-100%,
    aspect 3/4-4/3, back to its size) and a horizontal flip with probability 1/2, as torchvision's
    RandomResizedCrop + RandomHorizontalFlip that OGM-GE trains with; batched on the device."""

    out_dim = 512

    def __init__(self, in_channels: int = 3, frames: int | None = None, augment: bool = False) -> None:
        super().__init__()
        self.in_channels, self.frames, self.augment = in_channels, frames, augment
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(64, 64, 1)
        self.layer2 = self._layer(64, 128, 2)
        self.layer3 = self._layer(128, 256, 2)
        self.layer4 = self._layer(256, 512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _sample_frames(self, x: Tensor) -> Tensor:
        total = x.shape[1]
        if self.frames is None or total <= self.frames:
            return x
        if self.training:
            index = torch.rand(x.shape[0], total, device=x.device).argsort(1)[:, : self.frames].sort(1).values
        else:
            index = torch.linspace(0, total - 1, self.frames, device=x.device).round().long().expand(x.shape[0], -1)
        return x[torch.arange(x.shape[0], device=x.device)[:, None], index]

    def _scaled(self, x: Tensor) -> Tensor:
        if x.is_floating_point():
            return x
        x = x.float() / 255.0
        if self.in_channels == 3:
            mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            x = (x - mean) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return x

    @staticmethod
    def _layer(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes))

    def forward(self, x: Tensor) -> Tensor:
        frames = x.dim() == 5
        if frames:
            x = self._sample_frames(x)
            b, t = x.shape[:2]
            x = x.flatten(0, 1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(f"resnet18 expects [B, {self.in_channels}, H, W] or [B, T, {self.in_channels}, H, W], "
                             f"got {tuple(x.shape)}")
        x = self._scaled(x)
        if self.augment and self.training:
            x = random_resized_crop_flip(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return x.view(b, t, -1).mean(1) if frames else x


def random_resized_crop_flip(x: Tensor, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Tensor:
    """A random resized crop and a random horizontal flip per image of ``[N, C, H, W]`` (one
    affine resampling; crops that would not fit are clamped to the image)."""
    n = x.shape[0]
    rand = torch.rand(n, 5, device=x.device)
    area = scale[0] + (scale[1] - scale[0]) * rand[:, 0]
    aspect = torch.exp(math.log(ratio[0]) + math.log(ratio[1] / ratio[0]) * rand[:, 1])
    width, height = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
    cx, cy = (1 - width) * (2 * rand[:, 2] - 1), (1 - height) * (2 * rand[:, 3] - 1)
    flip = torch.where(rand[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width * flip, cx, height, cy
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def load_torchvision_weights(model: ResNet18, path: str | Path) -> ResNet18:
    """Weights saved from torchvision's ``resnet18`` (a state dict, ``.pth`` or ``.safetensors``);
    ``fc`` is dropped, and a 1-channel model takes the RGB filters summed over channels."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.shape[1] != model.in_channels and model.in_channels == 1:
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{path}: not the weights of torchvision's resnet18 ({err})") from None
    return model


@ENCODERS.register("resnet18")
def resnet18(weights: str | None = None, frames: int | None = None, augment: bool = False) -> ResNet18:
    """ResNet-18 for RGB images or frames [B, T, 3, H, W] (pooled over frames), 512-d; torchvision keys."""
    model = ResNet18(3, frames, augment)
    return load_torchvision_weights(model, weights) if weights else model


@ENCODERS.register("resnet18-spectrogram")
def resnet18_spectrogram(weights: str | None = None) -> ResNet18:
    """ResNet-18 for a 1-channel spectrogram [B, 1, F, T], 512-d (as OGM-GE's audio network)."""
    model = ResNet18(1)
    return load_torchvision_weights(model, weights) if weights else model
