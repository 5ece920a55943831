
import pytest
import torch

import mmrobust as mm
from mmrobust.checkpoint import load_method, save_method

def make(name, encoders, seed=0, config=None):
    base, _, modality = name.partition(":")
    options = {"modality": modality} if modality else {}
    return mm.create_method(base, encoders=encoders, num_classes=4, seed=seed, train_config=config, **options)


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


def test_ume_mma_file_without_its_parts_is_refused(tmp_path, tiny_encoders, synthetic, tiny_config):
    """A file from before composite methods recorded their parts' parameters is refused in one line."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    method = make("ume-mma", tiny_encoders, config=tiny_config).fit(synthetic["train"], synthetic["val"])
    save_method(method, tmp_path / "new.safetensors")
    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["mmrobust"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["state"]["components"] = {c: part["state"] for c, part in meta["state"].pop("parts").items()}  # the old layout
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"mmrobust": json.dumps(meta)})
    with pytest.raises(mm.errors.ModelFileError, match=r"old.safetensors: ume-mma: saved by an earlier mmrobust"):
        load_method(make("ume-mma", tiny_encoders, config=tiny_config), tmp_path / "old.safetensors")
