import json
from collections import defaultdict

import numpy as np
import pytest

import mmrobust as mm
from mmrobust.evaluation import evaluate_method
from mmrobust.experiment import expand_methods
from mmrobust.protocols import masks_hash, sample_all_masks

ALL = ["unimodal", "ume", "ume-weighted", "mma", "ume-mma", "late-fusion", "late-fusion-concat", "late-fusion-dropout",
       "late-fusion-unimodal-init"]


class CountingFactory:
    def __init__(self, in_dim):
        self.in_dim, self.calls = in_dim, 0

    def __call__(self):
        self.calls += 1
        return mm.EncoderSpec("mlp-tiny", in_dim=self.in_dim).build()


def gate_metric(metric: str) -> bool:
    """The input gate's records (mmrobust.gate), beside every condition's own."""
    return metric.endswith((":gated", ":soft", ":declared")) or "ignored:" in metric


def test_stage1_runs_once_per_seed_and_is_shared(synthetic, tiny_config):
    factories = {"a": CountingFactory(6), "b": CountingFactory(6)}
    mm.run_experiment(methods=["unimodal", "ume", "mma", "ume-mma", "late-fusion-unimodal-init"], encoders=factories,
                      train=synthetic["train"], val=synthetic["val"], test=synthetic["test"], seeds=[0, 1],
                      train_config=tiny_config)
    assert [f.calls for f in factories.values()] == [2, 2], "one Stage-1 encoder per modality and seed, nothing more"


def test_records_cover_methods_protocols_and_na_cells(synthetic, tiny_encoders, tiny_config, tmp_path):
    protocols = ["full", "miss:a", "miss:b", "sweep:b", "subsets", "map:both@0.5", "observed"]
    results = mm.run_experiment(methods=ALL, encoders=tiny_encoders, train=synthetic["train"], val=synthetic["val"],
                                test=synthetic["test"], protocols=protocols, seeds=[0, 1], train_config=tiny_config,
                                dataset="toy", out_dir=tmp_path)
    methods = {r["method"] for r in results.records}
    assert methods == set(expand_methods(ALL, ["a", "b"])) and "unimodal:a" in methods
    keys = {"dataset", "method", "seed", "protocol", "rate", "pattern", "metric", "value", "n_scored", "n_rows"}
    assert all(set(r) == keys for r in results.records)
    # 1 (full) + 2 (miss) + 11 rates + area + 3 subsets + 1 (map) + 1 (observed) = 20 per method and seed
    accuracy = [r for r in results.records if r["metric"] in ("accuracy", "area:accuracy")]
    assert len(accuracy) == 20 * len(methods) * 2
    # calibration and conformal records: per pattern the method can score (a uni-modal model: 2 of 3)
    calibration = [r for r in results.records if r["metric"] not in ("accuracy", "area:accuracy") and not gate_metric(r["metric"])]
    assert {r["protocol"] for r in calibration} == {"subsets"}
    scored = sum(2 if m.startswith("unimodal:") else 3 for m in methods) * 2
    per_cell = defaultdict(set)
    for r in calibration:
        per_cell[(r["method"], r["seed"], r["pattern"])].add(r["metric"])
    assert len(per_cell) == scored and len({frozenset(v) for v in per_cell.values()}) == 1
    assert {"ece", "ece:calibrated", "nll", "brier", "temperature", "coverage@0.9", "coverage@0.9:blind"} <= per_cell[("ume", 0, "a")]

    def value(method, protocol, seed=0, **where):
        where = {"metric": "accuracy", **where}
        (r,) = [r for r in results.records if r["method"] == method and r["protocol"] == protocol and r["seed"] == seed
                and all(r[k] == v for k, v in where.items())]
        return r

    assert value("unimodal:a", "miss:a")["value"] is None and value("unimodal:a", "miss:a")["n_scored"] == 0
    assert value("unimodal:b", "sweep:b", metric="area:accuracy")["value"] is None
    assert value("unimodal:a", "sweep:b", metric="area:accuracy")["value"] == pytest.approx(value("unimodal:a", "full")["value"])
    # UME with one modality present is that modality's uni-modal model
    assert value("ume", "miss:b")["value"] == value("unimodal:a", "full")["value"]
    assert value("ume", "subsets", pattern="a")["value"] == value("unimodal:a", "full")["value"]
    # the sweep's end points are the full and the missing conditions
    assert value("mma", "sweep:b", rate=0.0)["value"] == value("mma", "full")["value"]
    assert value("mma", "sweep:b", rate=1.0)["value"] == value("mma", "miss:b")["value"]
    # the run folder
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(results.records) and json.loads(lines[0])["dataset"] == "toy"
    masks = mm.load_masks(tmp_path / "masks" / "seed1.npz")
    assert [m.protocol for m in masks][:3] == ["full", "miss:a", "miss:b"]
    assert (tmp_path / "metrics" / "seed0" / "mma.jsonl").exists()
    fits = json.loads((tmp_path / "fits.json").read_text())
    (choice,) = [f for f in fits if f["method"] == "ume-mma" and f["seed"] == 0]
    assert choice["selected"] in ("ume", "mma") and set(choice["val_scores"]) == {"ume", "mma"}
    summary = {(s["method"], s["protocol"], s["metric"]): s for s in results.summary() if s["rate"] is None and s["pattern"] is None}
    cell = summary[("mma", "full", "accuracy")]
    per_seed = [value("mma", "full", seed=s)["value"] for s in (0, 1)]
    assert cell["mean"] == pytest.approx(np.mean(per_seed)) and cell["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert summary[("unimodal:a", "miss:a", "accuracy")]["mean"] is None


def test_same_masks_for_every_method(synthetic, tiny_encoders, tiny_config, monkeypatch):
    seen = []

    def spying_evaluate(method, data, masks, **kwargs):
        seen.append((method.name, method.seed, masks_hash(masks)))
        return evaluate_method(method, data, masks, **kwargs)

    monkeypatch.setattr(mm.experiment, "evaluate_method", spying_evaluate)
    mm.run_experiment(methods=["unimodal", "ume", "late-fusion"], encoders=tiny_encoders, train=synthetic["train"],
                      val=synthetic["val"], test=synthetic["test"], protocols=["map:a@0.3", "sweep:b"], seeds=[5, 6],
                      train_config=tiny_config)
    for seed in (5, 6):
        hashes = {h for _, s, h in seen if s == seed}
        assert len([n for n, s, _ in seen if s == seed]) == 4 and len(hashes) == 1, "every method of a seed, one set of masks"
        expected = sample_all_masks(["map:a@0.3", "sweep:b"], {m: synthetic["test"].present[m] for m in "ab"}, seed)
        assert hashes == {masks_hash(expected)}
    assert len({h for _, _, h in seen}) == 2, "each seed draws its own masks"


def test_three_modalities_with_observed_gaps_end_to_end(tiny_config):
    data = mm.make_synthetic({"train": 150, "val": 60, "test": 90}, {"a": 4, "b": 5, "c": (1, 4, 4)}, num_classes=3, seed=3)
    rng = np.random.default_rng(0)
    data = {k: d.with_present({m: rng.random(len(d)) < 0.8 for m in d.modalities}) for k, d in data.items()}
    encoders = {"a": mm.EncoderSpec("mlp-tiny", in_dim=4), "b": mm.EncoderSpec("identity", in_dim=5),
                "c": mm.EncoderSpec("lenet-tiny", in_shape=(1, 4, 4))}
    results = mm.run_experiment(methods=ALL, encoders=encoders, train=data["train"], val=data["val"], test=data["test"],
                                protocols=["observed", "full", "miss:c", "subsets"], seeds=[0], train_config=tiny_config)
    observed = [r for r in results.records if r["protocol"] == "observed" and r["method"] == "mma"]
    anything = np.logical_or.reduce([data["test"].present[m].numpy() for m in "abc"])
    assert observed[0]["n_scored"] == int(anything.sum())
    full = [r for r in results.records if r["protocol"] == "full" and r["method"] == "mma"][0]
    assert full["n_scored"] == int(np.logical_and.reduce([data["test"].present[m].numpy() for m in "abc"]).sum())
    assert len({r["pattern"] for r in results.records if r["protocol"] == "subsets"}) == 7
    assert all(r["value"] is None or 0 <= r["value"] <= 1 for r in results.records if r["metric"] == "accuracy")


def test_training_missing_and_multilabel(tiny_encoders, tiny_config, monkeypatch):
    data = mm.make_synthetic({"train": 120, "val": 60, "test": 60}, {"a": 6, "b": 6}, task="multilabel", seed=4)
    trained_on = []
    original = mm.experiment.fit_methods

    def spying_fit(methods, train, val, *args):
        trained_on.append({split: {m: int(d.present[m].sum()) for m in "ab"} for split, d in (("train", train), ("val", val))})
        return original(methods, train, val, *args)

    monkeypatch.setattr(mm.experiment, "fit_methods", spying_fit)
    results = mm.run_experiment(methods=["unimodal", "mma"], encoders=tiny_encoders, train=data["train"], val=data["val"],
                                test=data["test"], protocols=["full"], seeds=[0], train_config=tiny_config,
                                train_missing={"b": 0.5})
    assert {r["metric"] for r in results.records if not gate_metric(r["metric"])} == {"f1_macro", "f1_micro"}
    assert trained_on == [{"train": {"a": 120, "b": 60}, "val": {"a": 60, "b": 30}}], "b removed from half the rows"
    fits = {f["method"]: f for f in results.fits}
    assert fits["unimodal:b"]["val_score"] is not None
    full = {r["method"]: r["n_scored"] for r in results.records if r["metric"] == "f1_macro"}
    assert full == {"unimodal:a": 60, "unimodal:b": 60, "mma": 60}, "the test split is not touched"


def test_runner_errors(synthetic, tiny_encoders):
    with pytest.raises(KeyError, match="unknown method 'mmx'"):
        mm.run_experiment(methods=["mmx"], encoders=tiny_encoders, train=synthetic["train"], val=synthetic["val"],
                          test=synthetic["test"])
    with pytest.raises(ValueError, match="lacks modalities"):
        mm.run_experiment(methods=["ume"], encoders={**tiny_encoders, "z": "identity"}, train=synthetic["train"],
                          val=synthetic["val"], test=synthetic["test"])
