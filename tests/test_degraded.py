"""The ``corrupt:`` protocol (issue 39): parsed and refused by name, rows drawn by the seed and
saved with the masks, pictures degraded before the modality's own preprocessing, and the report's
Degraded inputs section computed by hand from records."""
from __future__ import annotations

import numpy as np
import pytest

import mmrobust as mm
from mmrobust.corruptions import corrupt_picture
from mmrobust.failures import InputRange, broken_inputs
from mmrobust.protocols import PROTOCOLS, load_masks, masks_hash, sample_masks, save_masks
from mmrobust.runtime import derive_seed


def present(n: int, image_missing=()) -> dict[str, np.ndarray]:
    image = np.ones(n, bool)
    image[list(image_missing)] = False
    return {"audio": np.ones(n, bool), "image": image}


def test_the_protocol_is_listed_parsed_and_refused_by_name():
    assert "corrupt" in PROTOCOLS.names()
    assert PROTOCOLS.create("corrupt").examples(["audio", "image"]) == ["corrupt:audio@gaussian-noise:3",
                                                                      "corrupt:image@gaussian-noise:3"]
    for bad, message in (("corrupt:image", "say how 'image' degrades: corrupt:image@<kind>:<severity>"),
                         ("corrupt:image@fog:2", "unknown corruption 'fog'; expected one of blank-words, blur"),
                         ("corrupt:image@blur:6", "the severity after 'blur:' must be 1-5, got '6'"),
                         ("corrupt:image@blur", "the severity after 'blur:' must be 1-5, got ''"),
                         ("corrupt:image@blur:2@1.5", "the rate must lie in \\[0, 1\\]"),
                         ("corrupt:video@blur:2", "unknown modality 'video'")):
        with pytest.raises(mm.errors.ProtocolError, match=message):
            sample_masks(bad, present(4), 0)


def test_a_share_of_rows_is_drawn_by_the_seed_the_same_at_every_kind_and_saved(tmp_path):
    (every,) = sample_masks("corrupt:image@shift:4", present(10, image_missing=[3]), 5)
    assert every.failure == ("image", "shift:4") and every.altered is None
    assert every.scored.tolist() == [i != 3 for i in range(10)], "scored where the image is observed"
    (half,) = sample_masks("corrupt:image@shift:4@0.5", present(10, image_missing=[3]), 5)
    rows = np.flatnonzero(every.scored)  # by hand: the first ceil(0.5 x 9) = 5 of a seeded order of them
    order = rows[np.random.default_rng(derive_seed(5, "corrupt", "image")).permutation(len(rows))]
    assert np.flatnonzero(half.altered).tolist() == sorted(order[:5].tolist())
    assert half.scored.tolist() == every.scored.tolist(), "scored on every row, altered on the share"
    (blurred,) = sample_masks("corrupt:image@blur:1@0.5", present(10, image_missing=[3]), 5)
    assert blurred.altered.tolist() == half.altered.tolist(), "kinds and severities compare on the same rows"
    assert masks_hash([half]) != masks_hash([every]) != masks_hash([blurred])
    save_masks(tmp_path / "m.npz", [half])
    (loaded,) = load_masks(tmp_path / "m.npz")
    assert loaded.failure == ("image", "shift:4") and loaded.altered.tolist() == half.altered.tolist()


def test_pictures_degrade_before_their_projection_and_only_on_the_altered_rows():
    from mmrobust import pipeline
    from mmrobust.config import load_config
    from mmrobust.data.digits import load_digits_arrays

    spec = pipeline.load_data(load_config("tiny")).inputs["image"]
    mean, components = np.asarray(spec["pca"]["mean"]), np.asarray(spec["pca"]["components"])
    arrays, _ = load_digits_arrays()
    inputs = {"image": arrays["test"]["image"][:8], "audio": arrays["test"]["audio"][:8]}
    raw = {"image": arrays["test"]["image_raw"][:8]}
    ranges = {"image": InputRange(0.0, 1.0), "audio": InputRange(0.0, 1.0)}
    (mask,) = sample_masks("corrupt:image@rotation:5@0.5", present(8, image_missing=[7]), 3)
    out = broken_inputs(inputs, mask, ranges, 3, {"image": spec}, raw)
    altered = np.flatnonzero(mask.altered)
    rng = np.random.default_rng(derive_seed(3, "corrupt", "image", "rotation", 5))  # row after row, one generator
    expected = np.stack([corrupt_picture(raw["image"][i], "rotation", 5, rng) for i in altered])
    assert np.allclose(out.raw["image"][altered], expected, atol=1e-6)
    projected = mean + ((expected.reshape(len(altered), -1) - mean) @ components.T) @ components
    assert np.allclose(out.inputs["image"][altered].reshape(len(altered), -1), projected, atol=1e-5)
    kept = np.setdiff1d(np.arange(8), altered)
    assert np.array_equal(out.inputs["image"][kept], inputs["image"][kept]) and out.inputs["audio"] is inputs["audio"]
    assert np.array_equal(out.raw["image"][kept], raw["image"][kept])
    with pytest.raises(mm.errors.ConfigError, match="a spectrogram \\(the clips' waveforms are not kept\\); `corrupt:` degrades pictures"):
        broken_inputs(inputs, sample_masks("corrupt:audio@blur:2", present(8), 0)[0], ranges, 0,
                      {"audio": {"kind": "wav", "shape": [1, 32, 32], "frontend": "digits"}}, raw)


def test_an_array_of_pictures_degrades_as_pictures_and_other_arrays_are_refused():
    rng = np.random.default_rng(0)
    pictures = rng.random((4, 1, 12, 12)).astype(np.float32)
    inputs = {"image": pictures, "audio": rng.normal(size=(4, 6)).astype(np.float32)}
    (mask,) = sample_masks("corrupt:image@contrast:5", present(4), 1)
    out = broken_inputs(inputs, mask, {}, 1).inputs["image"]
    means = pictures.mean(axis=(2, 3), keepdims=True)
    assert np.allclose(out, np.clip((pictures - means) * 0.05 + means, 0, 1), atol=1e-6)  # ImageNet-C's contrast at 5
    with pytest.raises(mm.errors.ConfigError, match="an array of shape \\[6\\]; `corrupt:` degrades pictures"):
        broken_inputs(inputs, sample_masks("corrupt:audio@blur:2", present(4), 0)[0], {}, 0)


def test_the_degraded_section_by_hand_from_records():
    from mmrobust.records import degraded_summary, degraded_table

    def cell(method, protocol, metric, mean):
        return {"method": method, "protocol": protocol, "metric": metric, "mean": mean, "pattern": None, "rate": None}

    summary = [cell("mma", "full", "accuracy", 0.80)]
    values = {1: (0.78, 0.78, 0.40), 2: (0.60, 0.65, 0.40)}  # ungated, gated, declared
    for severity, (u, g, d) in values.items():
        protocol = f"corrupt:image@shift:{severity}"
        summary += [cell("mma", protocol, "accuracy", u), cell("mma", protocol, "accuracy:gated", g),
                    cell("mma", protocol, "accuracy:declared", d), cell("mma", protocol, "ignored:image", 0.1 * severity),
                    cell("unimodal:audio", protocol, "accuracy", 0.4)]
    (row,) = degraded_summary(summary, ["mma", "unimodal:audio"], "accuracy")[2:]
    # means: ungated 69.0, gated 71.5, declared 40.0; retained 0.715 / 0.80; effective +31.5;
    # worst gated - declared: +25.0 at severity 2; worst gated - ungated: 0.0 at severity 1
    assert row == ("| image | mma | 2 | 69.0 | 71.5 | 40.0 | 0.894 | +31.5 | +25.0 (`corrupt:image@shift:2`) | "
                   "+0.0 (`corrupt:image@shift:1`) |")
    (line,) = degraded_table(summary, ["mma", "unimodal:audio"], "accuracy")[2:]
    assert line == "| image | shift | mma | 80.0 | 78.0 / 78.0 / 40.0 | 60.0 / 65.0 / 40.0 | n/a | n/a | n/a | 10/20/n/a/n/a/n/a |"
