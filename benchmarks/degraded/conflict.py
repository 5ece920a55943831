"""The cross-modal conflict signal on a stale feed: can the disagreement of the uni-modal models
see an input that is another row's (in distribution by construction, so no plausibility gate can)?

The modality prediction discrepancy of MultiOOD (Dong et al., NeurIPS 2024): the L1 distance
between the uni-modal models' class probabilities. Thresholded at the 99th percentile of the clean
*validation* rows (at most 1% false alarms there); reported: the false alarms on clean test rows
and the detection of `fail:<m>@stale` test rows (each gets another test row's input), per seed;
and, to see the signal apart from how its threshold transfers, the detection at the threshold that
gives exactly 1% false alarms on the clean test rows themselves (an oracle no deployment has).

    OMP_NUM_THREADS=1 python benchmarks/degraded/conflict.py benchmarks/degraded/results/digits
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmrobust.failures import broken_inputs
from mmrobust.pipeline import RunFolderStore, _load_fitted, experiment_for, load_data, read_config
from mmrobust.protocols import sample_masks
from mmrobust.records import reference_name


def discrepancy(models: dict, inputs: dict, rows: np.ndarray) -> np.ndarray:
    probabilities = [model.predict_proba({m: _take(inputs[m], rows)}) for m, model in models.items()]
    return np.abs(probabilities[0] - probabilities[1]).sum(1)


def _take(x, rows):
    return x[rows] if not hasattr(x, "index_select") else x[np.asarray(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    config = read_config(args.run_dir)
    experiment = experiment_for(config, load_data(config, log=lambda message: None))
    if len(experiment.modalities) != 2:
        raise SystemExit("the discrepancy compares two uni-modal models: a run of two modalities")
    fitted_by_seed = _load_fitted(experiment, RunFolderStore(args.run_dir, {}, lambda message: None))
    print("| seed | threshold (val 99th percentile) | false alarms on clean test rows % | "
          + " | ".join(f"`fail:{m}@stale` detected % (at 1% test false alarms)" for m in experiment.modalities) + " |")
    print("|---:|---:|---:|" + "---:|" * len(experiment.modalities))
    test = experiment.test
    for seed, fitted in fitted_by_seed.items():
        models = {m: fitted[reference_name(m)] for m in experiment.modalities}
        _, val = experiment.seed_data(seed)
        both = np.flatnonzero(np.logical_and.reduce([val.present[m].numpy() for m in experiment.modalities]))
        threshold = float(np.quantile(discrepancy(models, val.inputs, both), 0.99))
        clean_rows = np.flatnonzero(np.logical_and.reduce([test.present[m].numpy() for m in experiment.modalities]))
        clean = discrepancy(models, test.inputs, clean_rows)
        alarms, oracle = float(np.mean(clean > threshold)), float(np.quantile(clean, 0.99))
        detected = []
        for m in experiment.modalities:
            (mask,) = sample_masks(f"fail:{m}@stale", {k: test.present[k].numpy() for k in experiment.modalities}, seed)
            broken = broken_inputs(test.inputs, mask, experiment.ranges, seed, experiment.input_specs, test.raw)
            rows = np.flatnonzero(mask.scored)
            stale = discrepancy(models, broken.inputs, rows)
            detected.append(f"{100 * np.mean(stale > threshold):.1f} ({100 * np.mean(stale > oracle):.1f})")
        print(f"| {seed} | {threshold:.3f} | {100 * alarms:.2f} | " + " | ".join(detected) + " |", flush=True)


if __name__ == "__main__":
    main()
