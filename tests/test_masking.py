import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import mmrobust as mm
from mmrobust.errors import ProtocolError
from mmrobust.protocols import masks_hash, nonempty_subsets, parse_protocol, sample_masks


def full(n, mods=("audio", "image")):
    return {m: np.ones(n, dtype=bool) for m in mods}


def test_full_and_observed():
    observed = {"a": np.array([True, True, False, True]), "b": np.array([True, False, False, True])}
    (obs,) = sample_masks("observed", observed, 0)
    (fl,) = sample_masks("full", observed, 0)
    assert obs.scored.tolist() == [True, True, False, True]  # a row with nothing left is not scored
    assert fl.scored.tolist() == [True, False, False, True]  # full scores rows with every modality observed
    assert fl.present["a"].tolist() == observed["a"].tolist()


def test_miss_removes_the_modality_everywhere():
    (mask,) = sample_masks("miss:image", full(10), 3)
    assert not mask.present["image"].any() and mask.present["audio"].all() and mask.n_scored == 10


def test_sweep_rates_counts_and_nesting():
    n = 10
    masks = sample_masks("sweep:audio", full(n), 5)
    assert [m.rate for m in masks] == pytest.approx([i / 10 for i in range(11)])
    lost = [~m.present["audio"] for m in masks]
    assert [int(x.sum()) for x in lost] == list(range(11))  # ceil(r N), with 0.3 * 10 giving 3
    for small, big in zip(lost[:-1], lost[1:]):
        assert not (small & ~big).any(), "sweep masks must be nested"
    assert all(m.present["image"].all() for m in masks)


def test_sweep_ceil_and_seeds():
    masks = sample_masks("sweep:audio", full(7), 0)
    assert int((~masks[1].present["audio"]).sum()) == 1  # ceil(0.7)
    a = sample_masks("sweep:audio", full(50), 1)[5].present["audio"]
    b = sample_masks("sweep:audio", full(50), 1)[5].present["audio"]
    c = sample_masks("sweep:audio", full(50), 2)[5].present["audio"]
    assert (a == b).all() and not (a == c).all()


def test_map_single_and_both():
    (text,) = sample_masks("map:text@0.7", full(100, ("image", "text")), 0)
    assert int((~text.present["text"]).sum()) == 70 and text.present["image"].all() and text.rate == 0.7
    (both,) = sample_masks("map:both@0.7", full(100, ("image", "text")), 0)
    lose_image, lose_text = ~both.present["image"], ~both.present["text"]
    assert int(lose_image.sum()) == 35 and int(lose_text.sum()) == 35
    assert not (lose_image & lose_text).any(), "MAP both: no sample loses both"
    (default,) = sample_masks("map:both", full(10, ("image", "text")), 0)
    assert default.rate == 0.7


def test_rows_left_with_nothing_are_not_scored():
    observed = {"a": np.array([True, False, True]), "b": np.array([True, True, False])}
    (mask,) = sample_masks("miss:a", observed, 0)
    assert mask.scored.tolist() == [True, True, False]


def test_subsets_cover_every_nonempty_subset():
    masks = sample_masks("subsets", full(4, ("a", "b", "c")), 0)
    assert [m.pattern for m in masks] == ["a+b+c", "a+b", "a+c", "b+c", "a", "b", "c"]
    only_c = masks[-1]
    assert only_c.present["c"].all() and not only_c.present["a"].any() and not only_c.present["b"].any()


@pytest.mark.parametrize("spec", ["nope", "miss:video", "sweep:", "map:text@1.5", "map:text@x", "full:a", "map:both@0.5"])
def test_bad_protocols_raise_protocol_error(spec):
    mods = ("a", "b", "text") if spec == "map:both@0.5" else ("audio", "text")
    with pytest.raises(ProtocolError):
        parse_protocol(spec, mods)


def test_training_missing():
    present = mm.sample_training_missing(full(20), "audio", 0.25, seed=0)
    assert int((~present["audio"]).sum()) == 5 and present["image"].all()


def test_masks_round_trip_with_hash(tmp_path):
    observed = {"a": np.random.default_rng(0).random(30) < 0.8, "b": np.ones(30, dtype=bool)}
    masks = [m for p in ["full", "sweep:a", "subsets", "map:both@0.4"] for m in sample_masks(p, observed, 3)]
    digest = mm.save_masks(tmp_path / "m.npz", masks, meta={"seed": 3})
    loaded = mm.load_masks(tmp_path / "m.npz")
    assert masks_hash(loaded) == digest and len(loaded) == len(masks)
    for a, b in zip(masks, loaded):
        assert (a.protocol, a.rate, a.pattern) == (b.protocol, b.rate, b.pattern)
        assert all((a.present[m] == b.present[m]).all() for m in a.present) and (a.scored == b.scored).all()


def test_altered_masks_are_refused(tmp_path):
    masks = sample_masks("sweep:a", full(20, ("a", "b")), 0)
    mm.save_masks(tmp_path / "m.npz", masks)
    with np.load(tmp_path / "m.npz") as data:
        arrays = dict(data)
    arrays["3/present/a"] = ~arrays["3/present/a"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="sha256"):
        mm.load_masks(tmp_path / "bad.npz")


# --- the MMA augmentation ---

def dropout(present, index, seed=0, epoch=0, p=0.5):
    present_t = {m: torch.as_tensor(v) for m, v in present.items()}
    return mm.sample_modality_dropout(present_t, torch.as_tensor(index), seed=seed, epoch=epoch, p_drop=p)


def test_dropout_is_pure_in_seed_epoch_and_index():
    n = 200
    present = {m: np.ones(n, dtype=bool) for m in "abc"}
    a = dropout(present, np.arange(n))
    b = dropout({m: v[::-1].copy() for m, v in present.items()}, np.arange(n)[::-1].copy())
    assert all((a[m].numpy()[::-1] == b[m].numpy()).all() for m in "abc"), "depends on sample index, not position"
    c = dropout(present, np.arange(n), epoch=1)
    assert any((a[m] != c[m]).any() for m in "abc")


def test_dropout_rate_and_uniform_over_proper_subsets():
    n = 30000
    present = {m: np.ones(n, dtype=bool) for m in "abc"}
    out = dropout(present, np.arange(n), p=0.5)
    kept = np.stack([out[m].numpy() for m in "abc"], 1)
    assert kept.any(axis=1).all(), "never drops every modality"
    dropped = ~kept.all(axis=1)
    assert abs(dropped.mean() - 0.5) < 0.02
    codes = kept[dropped] @ np.array([1, 2, 4])
    counts = np.bincount(codes, minlength=8)[1:7]  # the 6 non-empty proper subsets kept
    assert (np.abs(counts / counts.sum() - 1 / 6) < 0.02).all()


def test_dropout_leaves_single_modality_rows_and_never_adds():
    present = {"a": np.array([True, False, True, True]), "b": np.array([False, True, True, False])}
    for seed in range(20):
        out = dropout(present, np.arange(4), seed=seed, p=1.0)
        assert out["a"][[0, 3]].all() and out["b"][1]
        assert not (out["a"].numpy() & ~present["a"]).any() and not (out["b"].numpy() & ~present["b"]).any()
        assert out["a"][2] != out["b"][2], "with p_drop=1 a two-modality row keeps exactly one"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=40),
       st.integers(0, 2**31 - 1), st.integers(0, 1000), st.floats(0, 1))
def test_dropout_properties(rows, seed, epoch, p):
    pres = np.array(rows, dtype=bool)
    present = {m: pres[:, j] for j, m in enumerate("abc")}
    out = dropout(present, np.arange(len(rows)) * 7 + 3, seed=seed, epoch=epoch, p=p)
    kept = np.stack([out[m].numpy() for m in "abc"], 1)
    assert not (kept & ~pres).any()
    assert (kept.any(1) == pres.any(1)).all(), "a row keeps at least one of its modalities"


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.sampled_from(["full", "miss:a", "sweep:b", "subsets", "map:a@0.3", "map:both@0.9"]),
       st.integers(0, 10**6), st.lists(st.booleans(), min_size=120, max_size=120))
def test_protocol_masks_never_add_presence(n, protocol, seed, bits):
    observed = {"a": np.array(bits[:n]), "b": np.array(bits[60:60 + n])}
    for mask in sample_masks(protocol, observed, seed):
        for m in observed:
            assert not (mask.present[m] & ~observed[m]).any()
        anything = mask.present["a"] | mask.present["b"]
        assert not (mask.scored & ~anything).any()


def test_nonempty_subsets_count():
    assert len(nonempty_subsets(["a", "b", "c", "d"])) == 15


def test_training_missing_both_is_maps_pattern():
    from mmrobust.masking import sample_training_missing

    observed = {"image": np.ones(100, dtype=bool), "text": np.ones(100, dtype=bool)}
    present = sample_training_missing(observed, "both", 0.7, seed=3)
    lose_image, lose_text = ~present["image"], ~present["text"]
    assert lose_image.sum() == 35 and lose_text.sum() == 35 and not (lose_image & lose_text).any()
    assert not np.array_equal(present["image"], sample_training_missing(observed, "both", 0.7, seed=3, split="val")["image"])
