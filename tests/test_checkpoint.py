import itertools

import numpy as np
import pytest
import torch

import mmrobust as mm
from mmrobust.checkpoint import load_method, save_method

NAMES = ["unimodal:a", "ume", "mma", "late-fusion-concat", "late-fusion-dropout", "ume-mma", "ume-mma-routed"]


def make(name, encoders, seed=0, config=None):
    base, _, modality = name.partition(":")
    options = {"modality": modality} if modality else {}
    return mm.create_method(base, encoders=encoders, num_classes=4, seed=seed, train_config=config, **options)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_gives_identical_predictions_for_every_pattern(name, tmp_path, synthetic, tiny_config):
    encoders = {"a": mm.EncoderSpec("lenet-tiny", in_shape=(1, 2, 3)), "b": mm.EncoderSpec("mlp-tiny", in_dim=6)}
    data = {k: mm.MultiModalDataset({"a": d.inputs["a"].reshape(-1, 1, 2, 3), "b": d.inputs["b"]}, d.target)
            for k, d in synthetic.items()}
    method = make(name, encoders, config=tiny_config).fit(data["train"], data["val"])
    save_method(method, tmp_path / "m.safetensors")
    loaded = load_method(make(name, encoders, config=tiny_config), tmp_path / "m.safetensors")
    test = data["test"]
    for pattern in itertools.product([True, False], repeat=2):
        present = {m: np.full(len(test), p) for m, p in zip("ab", pattern)}
        if not any(present[m][0] for m in method.modalities):
            continue
        inputs = {m: test.inputs[m] if present[m][0] else None for m in "ab"}
        assert np.array_equal(method.predict_proba(inputs), loaded.predict_proba(inputs))
    assert loaded.fit_summary() == method.fit_summary()


def test_wrong_or_damaged_files_are_refused(tmp_path, tiny_encoders, synthetic, tiny_config):
    method = make("ume", tiny_encoders, config=tiny_config).fit(synthetic["train"], synthetic["val"])
    save_method(method, tmp_path / "ume.safetensors")
    with pytest.raises(ValueError, match="holds 'ume' of seed 0"):
        load_method(make("mma", tiny_encoders), tmp_path / "ume.safetensors")
    with pytest.raises(ValueError, match="holds 'ume' of seed 0"):
        load_method(make("ume", tiny_encoders, seed=1), tmp_path / "ume.safetensors")
    bigger = {m: mm.EncoderSpec("mlp", in_dim=6, hidden=(5,), out_dim=3) for m in "ab"}
    with pytest.raises(ValueError, match="do not fit ume as configured"):
        load_method(make("ume", bigger), tmp_path / "ume.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_method(make("ume", tiny_encoders), tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_method(make("ume", tiny_encoders), tmp_path / "none.safetensors")


def test_a_pickle_is_refused_and_never_run(tmp_path, tiny_encoders):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, tmp_path / "evil.safetensors")
    with pytest.raises(ValueError):
        load_method(make("ume", tiny_encoders), tmp_path / "evil.safetensors")
    assert not marker.exists()
