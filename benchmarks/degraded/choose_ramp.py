"""Choose the soft gate's ramp (``mmrobust.gate.SOFT_RAMP``) on validation rows, never test ones.

A trained run folder's models (its first seed) are evaluated on the *validation* split degraded by
the kinds named in ``--kinds`` (by default noise, contrast and shift: one per family of picture
corruption) at severities 1-5, with the soft gate at each ramp of ``--ramps``. Printed per ramp: the
worst margin to the issue's targets over those conditions, min(soft - (ungated - 0.5),
soft - (declared - 1)), and the mean soft accuracy; the chosen ramp has the largest worst margin
(then the largest mean). The other kinds stay held out for the test-split benchmark (RESULTS.md).

    OMP_NUM_THREADS=1 python benchmarks/degraded/choose_ramp.py RUN_DIR --method ume-mma
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmrobust.evaluation import Conditions, evaluate_method
from mmrobust.pipeline import RunFolderStore, _load_fitted, experiment_for, load_data, read_config
from mmrobust.protocols import sample_all_masks

CHOSEN_KINDS = ("gaussian-noise", "contrast", "shift")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--method", default="ume-mma")
    parser.add_argument("--modality", default="image")
    parser.add_argument("--kinds", nargs="+", default=list(CHOSEN_KINDS))
    parser.add_argument("--ramps", nargs="+", type=float, default=[0, 0.5, 1, 2, 4, 8, 16])
    args = parser.parse_args()
    config = read_config(args.run_dir)
    experiment = experiment_for(config, load_data(config))
    seed = experiment.seeds[0]
    fitted = _load_fitted(experiment, RunFolderStore(args.run_dir, {}, print))[seed]
    train, val = experiment.seed_data(seed)
    gate = experiment.fit_gate(fitted, train, val)
    conditions = Conditions(val, experiment.ranges, gate, seed, experiment.input_specs)
    protocols = [f"corrupt:{args.modality}@{kind}:{s}" for kind in args.kinds for s in range(1, 6)]
    masks = sample_all_masks(protocols, {m: val.present[m] for m in experiment.modalities}, seed)
    print(f"{args.run_dir}, seed {seed}, {args.method}, validation rows: {len(val)}; kinds: {', '.join(args.kinds)}")
    print("| ramp | worst margin | at | mean soft | mean gated | mean ungated | mean declared |\n|---:|---:|---|---:|---:|---:|---:|")
    results = []
    for ramp in args.ramps:
        gate.soft_ramp = ramp
        records = evaluate_method(fitted[args.method], val, masks, metrics=["accuracy"], conditions=conditions).records
        value = {(r["protocol"], r["metric"]): r["value"] for r in records}
        u, g, s, d = (np.array([value[(p, "accuracy" + x)] for p in protocols]) for x in ("", ":gated", ":soft", ":declared"))
        margin = np.minimum(s - (u - 0.005), s - (d - 0.01))
        worst = int(np.argmin(margin))
        results.append((margin[worst], s.mean(), ramp))
        print(f"| {ramp:g} | {100 * margin[worst]:+.1f} | `{protocols[worst]}` | {100 * s.mean():.1f} | {100 * g.mean():.1f} | "
              f"{100 * u.mean():.1f} | {100 * d.mean():.1f} |", flush=True)
    print(f"\nchosen ramp: {max(results)[2]:g}")


if __name__ == "__main__":
    main()
