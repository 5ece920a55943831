"""How much modality dropout to train MMA with, and the per-pattern evidence (intervals against the
uni-modal reference, calibration, conformal coverage) on real data.

For each dataset: MMA trained with dropout p in {0.1, 0.3, 0.5, 0.7, 0.9}, 3 seeds, evaluated
under ``full``, each modality's test sweep and every presence pattern (``subsets``). The p = 0.5
run (the paper's) also trains the uni-modal models, UME and UME-MMA; the other runs reuse its
Stage-1 models (copied, not retrained: MMA starts from the same uni-modal encoders at every p).
Each run folder is kept under ``results/<dataset>/p<p>`` (records, evidence, fits; not weights);
``RESULTS.md`` and ``dropout-<dataset>.png`` are rendered from those records.

    OMP_NUM_THREADS=1 python benchmarks/evidence/run.py --data digits
    OMP_NUM_THREADS=1 python benchmarks/evidence/run.py --data avmnist --root data/avmnist   # cpu-10k setting
    python benchmarks/evidence/run.py --render-only
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATES = (0.1, 0.3, 0.5, 0.7, 0.9)
PAPER_RATE = 0.5
PROTOCOLS = ["full", "sweep:audio", "sweep:image", "subsets"]
SEEDS = (0, 1, 2)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.render_only:
        train_grid(args)
    from render import render_results  # the records -> RESULTS.md, without torch

    render_results(HERE)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["digits", "avmnist"], default="digits")
    p.add_argument("--root", default=None, help="avmnist: a folder prepared by `mmrobust prepare avmnist`")
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    p.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from the saved records")
    return p.parse_args(argv)


def load(args):
    """(train, val, test, encoders, train config, setting) as the project's benchmarks use them."""
    import mmrobust as mm
    from mmrobust import pipeline
    from mmrobust.config import load_config

    if args.data == "digits":  # the default run's data, encoders and training settings
        config = load_config("digits")
        splits = pipeline.load_data(config)
        return (splits.train, splits.val, splits.test, pipeline.resolve_encoders(config, splits), config.train,
                "the embedded digits, the default run's settings (6 epochs, batch 64, lr 0.001)")
    if not args.root:
        raise SystemExit("--root: the prepared AV-MNIST folder is needed for --data avmnist")
    data = mm.DATASETS.create("avmnist", root=args.root)
    config = mm.TrainConfig(epochs=3, batch_size=64, lr=1e-3, device="cpu", progress=False)
    return (data.train.subset(np.arange(10000)), data.val.subset(np.arange(2000)), data.test, data.encoders, config,
            "AV-MNIST cpu-10k: the first 10,000 training pairs, 2,000 validation pairs, all 10,000 test pairs, 3 epochs")


def train_grid(args) -> None:
    import torch

    import mmrobust as mm
    from mmrobust.files import write_text
    from mmrobust.provenance import git_commit

    commit = git_commit()  # the code this process runs (HEAD may move while it trains)
    train, val, test, encoders, config, setting = load(args)
    out = HERE / "results" / args.data
    rates = sorted(args.rates, key=lambda p: p != PAPER_RATE)  # the paper's rate first: its Stage 1 is shared
    for p in rates:
        folder = out / f"p{p:g}"
        shutil.rmtree(folder, ignore_errors=True)
        if p != PAPER_RATE:
            for seed in SEEDS:
                for model in (out / f"p{PAPER_RATE:g}" / "models" / f"seed{seed}").glob("stage1-*.safetensors"):
                    (folder / "models" / f"seed{seed}").mkdir(parents=True, exist_ok=True)
                    shutil.copy(model, folder / "models" / f"seed{seed}" / model.name)
        methods = ["unimodal", "ume", "mma", "ume-mma"] if p == PAPER_RATE else ["mma"]
        started = time.perf_counter()
        print(f"{args.data}: MMA with p_drop {p} ({', '.join(methods)}), seeds {list(SEEDS)}", file=sys.stderr, flush=True)
        mm.run_experiment(methods=methods, encoders=encoders, train=train, val=val, test=test, protocols=PROTOCOLS,
                          seeds=list(SEEDS), train_config=config, dataset=args.data, out_dir=folder,
                          method_options={"mma": {"p_drop": p}})
        write_text(folder / "run.json", json.dumps({
            "p_drop": p, "methods": methods, "setting": setting, "seconds": round(time.perf_counter() - started, 1),
            "commit": commit, "command": "python benchmarks/evidence/run.py " + " ".join(map(shlex.quote, sys.argv[1:])),
            "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        }, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
