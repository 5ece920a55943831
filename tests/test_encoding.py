"""Issue 29: methods that hold the same weights encode each input once per seed's evaluation."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

import mmrobust as mm
from mmrobust import encoding
from mmrobust.encoding import encode_rows, shared_encodings
from mmrobust.experiment import Experiment


class Counted(nn.Module):
    """A linear layer that counts the rows it is run on (and has an ``out_dim``, like encoders)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.out_dim, self.rows = nn.Linear(3, 2), 2, 0

    def forward(self, x):
        self.rows += len(x)
        return self.layer(x)


def by_hand(module: Counted, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The module on each present row alone, zeros elsewhere."""
    with torch.no_grad():
        return torch.stack([module.layer(row) if p else torch.zeros(2) for row, p in zip(x, present)])


def test_a_copy_with_the_same_weights_reuses_the_outputs_and_nothing_else_does():
    torch.manual_seed(0)
    x, present = torch.randn(7, 3), torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    first = Counted().eval()
    copied, changed = copy.deepcopy(first), copy.deepcopy(first)
    with torch.no_grad():
        changed.layer.bias[0] += 1e-3
    run = lambda module, x=x, present=present: encode_rows(module, x, present, 2, 3, torch.device("cpu"))  # noqa: E731
    with shared_encodings():
        out = run(first)
        assert torch.allclose(out, by_hand(first, x, present), atol=1e-6) and first.rows == 5
        assert run(copied).equal(out) and copied.rows == 0, "same weights, same input and presence: shared"
        run(changed)
        assert changed.rows == 5, "another weight: its own outputs"
        assert run(copied, x.clone()).equal(out) and copied.rows == 0, "equal rows of another input: shared by content"
        stale = x[[1, 0, 2, 6, 4, 5, 2]]  # other rows' inputs, row 1's (absent above) on a present row
        assert torch.allclose(run(copied, stale), by_hand(first, stale, present), atol=1e-6)
        assert copied.rows == 1, "only the input no call encoded yet (row 1's)"
        run(copied, x, ~present)
        assert copied.rows == 2, "another presence: of its inputs (rows 1 and 4), the one never seen encoded"
    fresh = copy.deepcopy(first)
    fresh.rows = 0
    run(fresh)
    assert fresh.rows == 5, "outside the block nothing is shared between calls"


class CountedTokens(Counted):
    """The same layer on a dict input (as token ids and masks are): not hashed by rows."""

    def forward(self, x):
        return super().forward(x["ids"])


def test_an_input_not_hashed_by_rows_is_shared_by_its_outputs():
    torch.manual_seed(2)
    x, present = {"ids": torch.randn(6, 3)}, torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    first = CountedTokens().eval()
    copied = copy.deepcopy(first)
    run = lambda module: encode_rows(module, x, present, 2, 4, torch.device("cpu"))  # noqa: E731
    with shared_encodings():
        out = run(first)
        assert torch.allclose(out, by_hand(first, x["ids"], present), atol=1e-6) and first.rows == 5
        assert run(copied).equal(out) and copied.rows == 0, "same weights, same input and presence: shared"


def test_repeated_rows_are_encoded_once_even_outside_a_seeds_block():
    """A blank failure (one input on every row) and recordings reused across rows."""
    torch.manual_seed(1)
    module = Counted().eval()
    distinct = torch.randn(3, 3)
    x = distinct[[0, 1, 0, 2, 1, 0, 0, 2]]
    present = torch.ones(8, dtype=torch.bool)
    out = encode_rows(module, x.numpy(), present, 2, 2, torch.device("cpu"))
    assert module.rows == 3 and torch.allclose(out, by_hand(module, x, present), atol=1e-6)
    blank = np.zeros((8, 3), np.float32)
    assert torch.allclose(encode_rows(module, blank, present, 2, 2, torch.device("cpu")), module.layer.bias.detach().expand(8, 2))
    assert module.rows == 4


def test_sharing_changes_no_record_and_spares_the_stage1_encoders(synthetic, tiny_encoders, tiny_config, monkeypatch):
    """The same evaluation with sharing off (no room to keep anything) gives identical records,
    and with it the UME family's copies of the Stage-1 encoders run less."""
    experiment = Experiment(methods=["unimodal", "ume", "ume-mma"], encoders=tiny_encoders, train=synthetic["train"],
                               val=synthetic["val"], test=synthetic["test"], seeds=[0], train_config=tiny_config)
    fitted = experiment.fit()
    calls = {"n": 0}
    original = encoding.to_device

    def counting(x, *args, **kwargs):  # each chunk of rows an encoder runs on
        calls["n"] += len(x)
        return original(x, *args, **kwargs)

    monkeypatch.setattr(encoding, "to_device", counting)
    shared = experiment.evaluate(fitted).records
    shared_calls, calls["n"] = calls["n"], 0
    monkeypatch.setattr(encoding, "SHARED_BYTES", 0)
    alone = experiment.evaluate(fitted).records
    assert shared == alone
    assert shared_calls < 0.5 * calls["n"], (shared_calls, calls["n"])
    assert np.isfinite([r["value"] for r in shared if r["value"] is not None]).all()
