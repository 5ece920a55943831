import torch

import mmrobust as mm
from mmrobust.models import LateFusionClassifier


def test_mean_fusion_by_hand():
    branches = {"a": torch.tensor([[1.0, 3.0], [2.0, 2.0], [5.0, 5.0]]), "b": torch.tensor([[3.0, 1.0], [0.0, 4.0], [9.0, 9.0]])}
    present = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, False, False])}
    z = mm.MeanFusion()(branches, present)
    assert z.tolist() == [[2.0, 2.0], [2.0, 2.0], [0.0, 0.0]]


def test_mean_fusion_of_probabilities():
    branches = {"a": torch.log(torch.tensor([[0.2, 0.8]])), "b": torch.log(torch.tensor([[0.6, 0.4]]))}
    present = {m: torch.tensor([True]) for m in branches}
    z = mm.MeanFusion(average="probs")(branches, present)
    assert torch.allclose(z.softmax(-1), torch.tensor([[0.4, 0.6]]))


def test_concat_learned_fill_gets_gradients_zero_fill_does_not():
    learned = mm.ConcatFusion({"a": 2, "b": 2}, 3, "learned")
    zeros = mm.ConcatFusion({"a": 2, "b": 2}, 3, "zeros")
    present = {"a": torch.tensor([True, False]), "b": torch.tensor([True, True])}
    for fusion in (learned, zeros):
        fusion({"a": torch.randn(2, 2), "b": torch.randn(2, 2)}, present).sum().backward()
    assert learned.fill["a"].grad is not None and learned.fill["a"].grad.abs().sum() > 0
    assert not zeros.fill["a"].requires_grad


def test_from_unimodal_concat_equals_ensemble_on_full_inputs():
    torch.manual_seed(0)
    unis = {m: mm.UnimodalClassifier(mm.EncoderSpec("mlp-tiny", in_dim=3).build(), 4) for m in "ab"}
    x = {m: torch.randn(5, 3) for m in "ab"}
    present = {m: torch.ones(5, dtype=torch.bool) for m in "ab"}
    ensemble = (unis["a"](x["a"]) + unis["b"](x["b"])) / 2
    for fusion in ("mean", "concat"):
        fused = LateFusionClassifier.from_unimodal(unis, 4, fusion=fusion)
        assert torch.allclose(fused(x, present), ensemble, atol=1e-6)
        assert not set(map(id, fused.parameters())) & {id(p) for u in unis.values() for p in u.parameters()}
