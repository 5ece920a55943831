"""Contract tests over every registry: a new method, fusion, protocol or dataset is checked here
with no new test code (a dataset brings its fixture, in dataset_fixtures.py)."""
import itertools

import numpy as np
import pytest
import torch

import mmrobust as mm
from dataset_fixtures import FIXTURES
from mmrobust.batch import MultiModalDataset
from mmrobust.checkpoint import load_method, save_method
from mmrobust.experiment import Experiment
from mmrobust.fusion import create_fusion
from mmrobust.inputs import default_spec
from mmrobust.predictor import Predictor
from mmrobust.models import LateFusionClassifier, UnimodalClassifier
from mmrobust.protocols import get_protocol, masks_hash, n_of, parse_protocol, sample_masks
from mmrobust.registry import DATASETS, FUSIONS, METHODS, PROTOCOLS
from mmrobust.validate import BadInputs

CONFIG = mm.TrainConfig(epochs=1, batch_size=32, lr=3e-3, device="cpu")
MODALITY_SETS = {2: ("a", "b"), 3: ("a", "b", "c")}


def encoders_for(modalities):
    """A CNN with BatchNorm for ``a``, MLPs for the others."""
    return {m: mm.EncoderSpec("lenet-tiny", in_shape=(1, 6, 6)) if m == "a" else mm.EncoderSpec("mlp-tiny", in_dim=5)
            for m in modalities}


def every_pattern(n, modalities):
    """Every presence pattern over ``modalities`` (none included), cycled over ``n`` rows."""
    patterns = list(itertools.product([True, False], repeat=len(modalities)))
    return {m: torch.tensor([patterns[i % len(patterns)][j] for i in range(n)]) for j, m in enumerate(modalities)}


def filled(inputs, present, fill):
    """Inputs whose absent rows hold ``fill`` (NaN, or garbage)."""
    out = {}
    for m, x in inputs.items():
        x = torch.as_tensor(np.asarray(x)).clone()
        absent = ~present[m]
        x[absent] = fill(x[absent])
        out[m] = x
    return out


@pytest.fixture(scope="module", params=sorted(MODALITY_SETS))
def fitted(request):
    """Every registered method fitted by the runner on 2 and on 3 modalities (one seed)."""
    modalities = MODALITY_SETS[request.param]
    shapes = {m: (1, 6, 6) if m == "a" else 5 for m in modalities}
    data = mm.make_synthetic({"train": 96, "val": 48, "test": 40}, shapes, seed=request.param)
    experiment = Experiment(methods=METHODS.names(), encoders=encoders_for(modalities), train=data["train"],
                            val=data["val"], test=data["test"], train_config=CONFIG)
    return experiment, experiment.fit()[0], data["test"]


def test_every_method_under_every_presence_pattern_ignores_absent_values(fitted):
    experiment, methods, test = fitted
    assert {name.partition(":")[0] for name in methods} == set(METHODS.names())
    present = every_pattern(len(test), experiment.modalities)
    clean = {m: torch.as_tensor(np.asarray(test.inputs[m])) for m in experiment.modalities}
    variants = [filled(clean, present, lambda x: torch.full_like(x, float("nan"))),
                filled(clean, present, lambda x: torch.randn_like(x) * 1e3)]
    for name, method in methods.items():
        rows = method.scorable(present)
        expected_rows = torch.stack([present[m] for m in method.modalities]).any(0)
        assert torch.equal(rows, expected_rows), name
        reference = method.proba_from_encoded(method.encode(clean, present), present)[rows]
        assert torch.isfinite(reference).all(), name
        assert torch.allclose(reference.sum(1), torch.ones(len(reference)), atol=1e-5), name
        for inputs in variants:
            proba = method.proba_from_encoded(method.encode(inputs, present), present)[rows]
            assert torch.allclose(proba, reference, atol=1e-6), f"{name}: absent values changed the output"


def test_every_method_round_trips_through_its_file_and_model_folder(fitted, tmp_path):
    experiment, methods, test = fitted
    present = every_pattern(len(test), experiment.modalities)
    fresh = experiment.create_methods(0)
    for name, method in methods.items():
        save_method(method, tmp_path / f"{name.replace(':', '-')}.safetensors")
        loaded = load_method(fresh[name], tmp_path / f"{name.replace(':', '-')}.safetensors")
        rows = method.scorable(present)
        before = method.proba_from_encoded(method.encode(test.inputs, present), present)[rows]
        after = loaded.proba_from_encoded(loaded.encode(test.inputs, present), present)[rows]
        assert torch.equal(before, after), name
        assert loaded.fit_summary() == method.fit_summary() and loaded.get_params() == method.get_params(), name
        folder = Predictor(method, {m: default_spec(np.asarray(test.inputs[m]).shape[1:]) for m in experiment.modalities},
                           [str(c) for c in range(test.num_classes)]).save_pretrained(tmp_path / name.replace(":", "-"))
        reloaded = Predictor.load(folder).method
        after = reloaded.proba_from_encoded(reloaded.encode(test.inputs, present), present)[rows]
        assert torch.equal(before, after), f"{name} through model/"


def test_every_method_refuses_a_nonfinite_output(fitted):
    experiment, methods, test = fitted
    for name, method in methods.items():
        broken = load_poisoned(method)
        with pytest.raises(mm.errors.NonFiniteOutputError, match=rf"{name.split(':')[0]}.*seed 0.*full"):
            mm.evaluate(broken, test, sample_masks("full", {m: test.present[m] for m in experiment.modalities}, 0))


def load_poisoned(method):
    """A copy of a fitted method whose every weight is NaN (a diverged model)."""
    import copy

    broken = copy.deepcopy(method)
    for module in [getattr(broken, "model_", None), getattr(getattr(broken, "ume_", None), "model_", None),
                   getattr(getattr(broken, "mma_", None), "model_", None)]:
        if module is not None:
            with torch.no_grad():
                for p in module.parameters():
                    p.fill_(float("nan"))
    return broken


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_ignores_absent_values_and_starts_from_stage1(name):
    torch.manual_seed(0)
    in_dims, classes = {"a": 4, "b": 5, "c": 3}, 3
    fusion = create_fusion(name, in_dims, classes, "multiclass")
    dims = {m: classes if fusion.heads else d for m, d in in_dims.items()}
    present = every_pattern(16, sorted(in_dims))
    branches = {m: torch.randn(16, d) for m, d in dims.items()}
    reference = fusion(branches, present)
    for fill in (lambda x: torch.full_like(x, float("nan")), lambda x: torch.randn_like(x) * 1e3):
        poisoned = {m: torch.where(present[m][:, None], x, fill(x)) for m, x in branches.items()}
        assert torch.equal(fusion(poisoned, present), reference)
    unis = {m: UnimodalClassifier(mm.EncoderSpec("mlp-tiny", in_dim=3).build(), classes) for m in "abc"}
    x = {m: torch.randn(16, 3) for m in "abc"}
    fused = LateFusionClassifier.from_unimodal(unis, classes, fusion=name)
    with torch.no_grad():
        logits = {m: unis[m](x[m]) for m in "abc"}
        if fusion.heads:  # the Stage-1 heads are copied: the fusion of the Stage-1 logits, every pattern
            assert torch.allclose(fused(x, present), fused.fusion(logits, present), atol=1e-5)
        else:  # it starts from the heads as it defines: the ensemble on full inputs
            full = {m: torch.ones(16, dtype=torch.bool) for m in "abc"}
            assert torch.allclose(fused(x, full), sum(logits.values()) / 3, atol=1e-5)


def _protocol_cases():
    for kind in PROTOCOLS.names():
        for modalities in (("a", "b"), ("a", "b", "c")):
            for spec in PROTOCOLS.create(kind).examples(modalities):
                yield pytest.param(spec, modalities, id=f"{spec}-{len(modalities)}")


@pytest.mark.parametrize("spec, modalities", list(_protocol_cases()))
def test_every_protocol_is_seeded_nested_and_keeps_its_rate(spec, modalities):
    n = 50
    full = {m: np.ones(n, dtype=bool) for m in modalities}
    gaps = {m: np.random.default_rng(i).random(n) < 0.8 for i, m in enumerate(modalities)}
    parse_protocol(spec, modalities)
    protocol = get_protocol(spec)
    assert protocol.describe(spec) and (protocol.column(spec, 0.3) is None or protocol.column(spec, 0.3).header)
    for observed in (full, gaps):
        masks = sample_masks(spec, observed, 7)
        assert masks and masks_hash(masks) == masks_hash(sample_masks(spec, observed, 7)), "a pure function of the seed"
        for mask in masks:
            assert mask.protocol == spec
            for m in modalities:
                assert not (mask.present[m] & ~observed[m]).any(), "a protocol only removes modalities"
            anything = np.logical_or.reduce([mask.present[m] for m in modalities])
            assert not (mask.scored & ~anything).any(), "a row with nothing present is never scored"
    lost = [(mask.rate, np.logical_or.reduce([~mask.present[m] for m in modalities]))
            for mask in sample_masks(spec, full, 7) if mask.rate is not None]
    for rate, rows in lost:
        assert rows.sum() == n_of(rate, n), f"{spec}: rate {rate}"
    for (_, smaller), (_, larger) in zip(sorted(lost, key=lambda r: r[0]), sorted(lost, key=lambda r: r[0])[1:]):
        assert not (smaller & ~larger).any(), f"{spec}: masks at growing rates must be nested"


def test_every_dataset_has_a_fixture():
    assert set(FIXTURES) == set(DATASETS.names()), "add a fixture for each registered dataset to dataset_fixtures.py"


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_its_fixture(name, tmp_path):
    bad = BadInputs()
    splits = DATASETS.create(name, **FIXTURES[name](tmp_path), bad_inputs=bad, device="cpu")
    modalities = splits.train.modalities
    assert set(splits.encoders) == set(modalities) and len(modalities) >= 2
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        assert isinstance(data, MultiModalDataset) and len(data) > 0 and data.modalities == modalities
        assert (data.task, data.num_classes) == (splits.train.task, splits.train.num_classes)
        for m in modalities:
            x = data.inputs[m]
            assert len(data.present[m]) == len(data) and data.present[m].dtype == torch.bool
            if not isinstance(x, dict):
                assert x.shape[0] == len(data) and np.dtype(str(x.dtype).replace("torch.", "")).kind in "fiu"
        assert torch.stack([data.present[m] for m in modalities]).any(0).all(), "every row has a modality"
        target = torch.as_tensor(np.asarray(data.target))
        if data.task == "multiclass":
            assert target.min() >= 0 and target.max() < data.num_classes
        else:
            assert target.shape == (len(data), data.num_classes) and set(target.unique().tolist()) <= {0.0, 1.0}
    if splits.train.label_names is not None:
        assert len(splits.train.label_names) == splits.train.num_classes
    assert bad.marked_missing == [] and bad.dropped == []
