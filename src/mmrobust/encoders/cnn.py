"""MultiBench-style LeNet CNNs for 28x28 images and for spectrograms (AV-MNIST, MFAS).

A 5x5 convolution, then ``layers`` blocks of (2x2 max-pool, 3x3 convolution doubling the
channels), each convolution followed by BatchNorm and ReLU, then global average pooling:
``out_dim = channels * 2**layers``. MultiBench uses ``LeNet(1, 6, 3)`` for the image and
``LeNet(1, 6, 5)`` for the 112x112 spectrogram.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import ENCODERS


class LeNet(nn.Module):
    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), channels: int = 6, layers: int = 3) -> None:
        super().__init__()
        in_channels, height, width = _check_shape(in_shape)
        if min(height, width) // 2**layers < 1:
            raise ConfigError(f"LeNet with {layers} pooling layers needs inputs of at least {2**layers} pixels a side, got {height}x{width}")
        self.in_shape = (in_channels, height, width)
        blocks: list[nn.Module] = [_conv_block(in_channels, channels, 5)]
        for i in range(layers):
            blocks += [MaxPool2x2(), _conv_block(channels * 2**i, channels * 2 ** (i + 1), 3)]
        self.features = nn.Sequential(*blocks)
        self.out_dim = channels * 2**layers

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:  # a single-channel batch B x H x W
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ConfigError(f"LeNet expects inputs of shape B x {self.in_shape}, got {tuple(x.shape)}")
        return self.features(x.float()).mean(dim=(2, 3))


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``; without gradients, the same numbers as the maximum of the four strided
    quarters, which torch 2.13 computes 2.2x faster on one CPU thread (benchmarks/speed, §7).
    With gradients torch's own kernel runs (its backward picks one element of a tied window)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor mode: an odd last row or column is dropped
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _check_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in in_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"in_shape must be (channels, height, width), got {tuple(in_shape)}")
    return shape  # type: ignore[return-value]


@ENCODERS.register("lenet")
def lenet(in_shape: Sequence[int] = (1, 28, 28), channels: int = 6, layers: int = 3) -> LeNet:
    """LeNet CNN for 28x28 images (MultiBench image encoder: 6 channels, 3 layers, 48-d)."""
    return LeNet(in_shape, channels, layers)


@ENCODERS.register("lenet-spectrogram")
def lenet_spectrogram(in_shape: Sequence[int] = (1, 112, 112), channels: int = 6, layers: int = 5) -> LeNet:
    """LeNet CNN for spectrograms (MultiBench audio encoder: 112x112, 5 layers, 192-d)."""
    return LeNet(in_shape, channels, layers)


@ENCODERS.register("lenet-tiny")
def lenet_tiny(in_shape: Sequence[int] = (1, 28, 28)) -> LeNet:
    """Tiny LeNet for tests (2 channels, 1 layer, 4-d)."""
    return LeNet(in_shape, channels=2, layers=1)
