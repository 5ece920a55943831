"""Silent failures: a modality present but broken (``fail:<m>@<kind>``), with and without the input
gate, for each detector; beside the same model with that modality declared missing and the
uni-modal model of what still works.

Per dataset: the uni-modal models, UME, MMA and UME-MMA trained once per seed (3 seeds), then
evaluated once per detector (the gate is fitted on the training rows, thresholded on clean
validation rows; nothing else changes). Records per detector under ``results/<dataset>/``;
``RESULTS.md`` is rendered from them.

    OMP_NUM_THREADS=2 python benchmarks/failures/run.py --data digits
    OMP_NUM_THREADS=2 python benchmarks/failures/run.py --data avmnist --root data/avmnist   # cpu-10k
    HF_HUB_OFFLINE=1 python benchmarks/failures/run.py --data emoji --root data/emoji        # benchmarks/emoji/build.py
    python benchmarks/failures/run.py --render-only
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SEEDS = (0, 1, 2)
METHODS = ["unimodal", "ume", "mma", "ume-mma"]


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.render_only:
        measure(args)
    from render import render_results

    render_results(HERE)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["digits", "avmnist", "emoji"], default="digits")
    p.add_argument("--root", default=None, help="avmnist: a folder prepared by `mmrobust prepare avmnist`; "
                                                "emoji: the folder benchmarks/emoji/build.py wrote")
    p.add_argument("--detectors", nargs="+", default=None, help="the gate's feature detectors to evaluate (default: all)")
    p.add_argument("--false-alarms", type=float, nargs="+", default=[0.01],
                   help="shares of clean validation inputs the gate may ignore (one evaluation each)")
    p.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from the saved records")
    return p.parse_args(argv)


def measure(args) -> None:
    import torch

    import importlib.util

    spec = importlib.util.spec_from_file_location("evidence_run", HERE.parent / "evidence" / "run.py")
    evidence_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence_run)  # the evidence benchmark's data and settings

    from mmrobust.experiment import Experiment
    from mmrobust.files import write_jsonl, write_text
    from mmrobust.gate import DETECTORS
    from mmrobust.provenance import cpu_model, git_commit

    commit = git_commit()
    specs = {}
    if args.data == "emoji":
        train, val, test, encoders, config, setting, specs = load_emoji(args.root)
    else:
        train, val, test, encoders, config, setting = evidence_run.load(args)
        if args.data == "digits":  # the pictures and recordings the digits are read from
            from mmrobust import pipeline
            from mmrobust.config import load_config

            specs = pipeline.load_data(load_config("digits")).inputs
    modalities = sorted(encoders)
    protocols = ["full", *[f"miss:{m}" for m in modalities], "subsets",
                 *[f"fail:{m}@{k}" for m in modalities for k in ("blank", "constant", "noise", "stale")]]
    experiment = Experiment(methods=METHODS, encoders=encoders, train=train, val=val, test=test, protocols=protocols,
                            seeds=list(SEEDS), train_config=config, dataset=args.data, input_specs=specs)
    started = time.perf_counter()
    fitted = experiment.fit()
    trained = time.perf_counter() - started
    out = HERE / "results" / args.data
    for detector in args.detectors or DETECTORS:
        for share in args.false_alarms:
            experiment.gate_detector, experiment.gate_false_alarms = detector, share
            began = time.perf_counter()
            records = experiment.evaluate(fitted).records
            write_jsonl(out / f"{detector}@{share:g}.jsonl", records)
            print(f"{args.data} {detector} at {share:g}: evaluated in {time.perf_counter() - began:.0f} s",
                  file=sys.stderr, flush=True)
    write_text(out / "run.json", json.dumps({
        "setting": setting, "methods": METHODS, "seeds": list(SEEDS), "train_seconds": round(trained, 1),
        "commit": commit, "command": "python benchmarks/failures/run.py " + " ".join(map(shlex.quote, sys.argv[1:])),
        "machine": f"{cpu_model()}, {torch.get_num_threads()} torch thread(s), "
                   f"torch {torch.__version__}, CPU",
    }, indent=1) + "\n")


def load_emoji(root):
    """The emoji manifest as benchmarks/emoji/run.py runs it (frozen MobileNetV2 and MiniLM features)."""
    from mmrobust import pipeline
    from mmrobust.config import load_config

    if not root:
        raise SystemExit("--root: the folder benchmarks/emoji/build.py wrote is needed for --data emoji")
    config = load_config("manifest", [f"data.options.path={Path(root) / 'emoji.csv'}", "data.options.label=subgroup",
                                      "data.options.columns=[image, text]", "data.options.group_column=family",
                                      f"data.options.cache_dir={Path(root) / 'cache'}"])
    splits = pipeline.load_data(config)
    return (splits.train, splits.val, splits.test, pipeline.resolve_encoders(config, splits), config.train,
            "the emoji set (image + CLDR name, 99 subgroups; frozen MobileNetV2 and MiniLM features), the manifest "
            "preset's settings", splits.inputs)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
