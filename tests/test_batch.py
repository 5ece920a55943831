import numpy as np
import pytest
import torch
from torch import nn

import mmrobust as mm
from mmrobust.batch import take_rows


class RecordingEncoder(nn.Module):
    """Sums each row's values; records every batch size it sees."""

    out_dim = 1

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        x = x["ids"] if isinstance(x, dict) else x
        self.sizes.append(x.shape[0])
        return x.float().sum(dim=1, keepdim=True)


def test_encode_present_runs_on_present_rows_only_and_scatters_back():
    enc = RecordingEncoder()
    x = torch.arange(12.0).reshape(4, 3)
    present = torch.tensor([True, False, True, False])
    out = mm.encode_present(enc, x, present, 1)
    assert enc.sizes == [2]
    assert out.flatten().tolist() == [3.0, 0.0, 21.0, 0.0]


def test_encode_present_with_one_row_and_with_none():
    enc = RecordingEncoder()
    x = torch.ones(5, 2)
    out = mm.encode_present(enc, x, torch.tensor([False, False, True, False, False]), 1)
    assert enc.sizes == [1] and out[2, 0] == 2.0
    out = mm.encode_present(enc, None, torch.zeros(5, dtype=torch.bool), 1)
    assert enc.sizes == [1], "an encoder must not be called when no row is present"
    assert out.shape == (5, 1) and out.abs().sum() == 0


def test_encode_present_gathers_dict_inputs():
    enc = RecordingEncoder()
    x = {"ids": torch.tensor([[1, 1], [2, 2], [3, 3]]), "mask": torch.ones(3, 2)}
    out = mm.encode_present(enc, x, torch.tensor([False, True, True]), 1)
    assert enc.sizes == [2] and out.flatten().tolist() == [0.0, 4.0, 6.0]


def test_dataset_batch_omits_modality_absent_from_every_row():
    data = mm.MultiModalDataset({"a": np.ones((4, 2), np.float32), "b": np.ones((4, 3), np.float32)},
                                np.array([0, 1, 0, 1]), {"b": np.array([True, False, False, True])})
    batch = data.batch(np.array([1, 2]))
    assert set(batch.inputs) == {"a"}
    assert batch.present["b"].tolist() == [False, False]
    assert batch.index.tolist() == [1, 2] and batch.target.tolist() == [1, 0]


def test_take_rows_recurses_into_dicts_and_numpy():
    x = {"ids": np.arange(6).reshape(3, 2), "mask": torch.ones(3, 2)}
    rows = take_rows(x, np.array([2, 0]))
    assert rows["ids"].tolist() == [[4, 5], [0, 1]] and rows["mask"].shape == (2, 2)


def test_collate_marks_none_as_missing():
    samples = [
        {"inputs": {"a": torch.ones(2), "b": None}, "target": 1, "index": 7},
        {"inputs": {"a": None, "b": torch.ones(3)}, "target": 0, "index": 9},
    ]
    batch = mm.collate(samples)
    assert batch.present["a"].tolist() == [True, False] and batch.present["b"].tolist() == [False, True]
    assert batch.inputs["a"].shape == (2, 2) and batch.inputs["a"][1].abs().sum() == 0
    assert batch.index.tolist() == [7, 9] and batch.target.tolist() == [1, 0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(inputs={"a": np.ones((3, 2))}, target=np.array([0, 1])), "has 3 rows but the target has 2"),
    (dict(inputs={"a": np.ones((2, 2))}, target=np.array([0, 5]), num_classes=3), "target row 1 has label 5"),
    (dict(inputs={"a": np.ones((2, 2))}, target=np.array([0, 1]), present={"a": np.array([1, 0])}), "must be a bool vector"),
    (dict(inputs={"a": np.ones((2, 2))}, target=np.array([0, 1]), present={"z": np.array([True, True])}), "unknown modalities"),
    (dict(inputs={"a": np.ones((2, 2))}, target=np.array([[0, 2], [1, 0]])), "only 0 and 1"),
    (dict(inputs={"a": np.ones((2, 2))}, target=np.array([0.5, 1.0])), "integer vector"),
])
def test_dataset_rejects_bad_input_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mm.MultiModalDataset(**kwargs)


def test_atomic_files_get_normal_permissions_and_vanish_on_error(tmp_path):
    import os

    from mmrobust.files import atomic_path, write_text

    write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["a.txt"], "no half-written file, no temporary left behind"


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
