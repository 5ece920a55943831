"""Are the proxies of ``proxy`` (CMPT/U2A) trained? Their normalised validation error (mean squared
error over the variance of the true feature; 1 = predicting the mean feature) and the accuracy,
without the warm-up (the joint fine-tuning alone: lr × 0.1, half the epochs) and with it.

Per seed: one Stage 1, then ``proxy`` with ``proxy_warmup_epochs=0`` and with the default, both
from that Stage 1 (paired), evaluated on the same masks.

    OMP_NUM_THREADS=1 python benchmarks/proxy/run.py            # the embedded digits, the default settings
    python benchmarks/proxy/run.py --render-only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
PROTOCOLS = ["full", "miss:audio", "miss:image"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args(argv)
    if not args.render_only:
        measure()
    render()
    return 0


def measure() -> None:
    import torch

    import mmrobust as mm
    from mmrobust import pipeline
    from mmrobust.config import load_config
    from mmrobust.files import write_text
    from mmrobust.protocols import sample_masks
    from mmrobust.provenance import cpu_model, git_commit

    config = load_config("digits")
    splits = pipeline.load_data(config)
    encoders = pipeline.resolve_encoders(config, splits)
    train, val, test = splits.train, splits.val, splits.test
    rows, started = [], time.perf_counter()
    for seed in SEEDS:
        stage1 = mm.train_stage1(encoders, train, val, num_classes=train.num_classes, seed=seed, train_config=config.train)
        masks = [mask for p in PROTOCOLS for mask in sample_masks(p, test.present, seed)]
        for warmup in (0, 50):
            method = mm.create_method("proxy", encoders=encoders, num_classes=train.num_classes, seed=seed,
                                      train_config=config.train, proxy_warmup_epochs=warmup).fit(train, val, stage1=stage1)
            scores = {r["protocol"]: r["value"] for r in mm.evaluate(method, test, masks) if r["metric"] == "accuracy"}
            rows.append({"seed": seed, "warmup_epochs_max": warmup, "proxy_error": method.proxy_fit_, "accuracy": scores})
            print(seed, warmup, method.proxy_fit_, scores, file=sys.stderr, flush=True)
    write_text(HERE / "results" / "digits.json", json.dumps({
        "rows": rows, "commit": git_commit(), "seconds": round(time.perf_counter() - started, 1),
        "command": "OMP_NUM_THREADS=1 python benchmarks/proxy/run.py",
        "machine": f"{cpu_model()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, CPU",
        "setting": f"the embedded digits, the default run's settings ({config.train.epochs} epochs, batch "
                   f"{config.train.batch_size}, lr {config.train.lr}); seeds {list(SEEDS)}"}, indent=1) + "\n")


def render() -> None:
    import numpy as np

    run = json.loads((HERE / "results" / "digits.json").read_text())
    lines = ["# Proxy (CMPT/U2A): are the proxies trained?", "",
             "Written by `python benchmarks/proxy/run.py` (its docstring says how). The proxies' normalised validation "
             "error (mean squared error over the variance of the true feature, on validation rows with both "
             "modalities; 1 = no better than the mean feature) and test accuracy in %, mean over seeds, without the "
             "warm-up (the joint fine-tuning alone: lr × 0.1, half the epochs) and with it (frozen Stage-1 features, "
             "Adam at the Stage-1 rate, stopped after 3 epochs without a better validation error).", "",
             f"{run['setting']}; commit `{(run['commit'] or 'uncommitted')[:10]}`; {run['machine']}; {run['seconds']:.0f} s. "
             f"`{run['command']}`", "",
             "| proxies | warm-up epochs run | error: audio from image | error: image from audio | full | miss:audio | miss:image |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for warmup, label in ((0, "fine-tuning only (before)"), (50, "warm-up, then fine-tuning (after)")):
        rows = [r for r in run["rows"] if r["warmup_epochs_max"] == warmup]
        final = {m: np.mean([r["proxy_error"]["final"][m] for r in rows]) for m in ("audio", "image")}
        epochs = np.mean([r["proxy_error"].get("warmup_epochs", 0) for r in rows])
        acc = {p: 100 * np.mean([r["accuracy"][p] for r in rows]) for p in PROTOCOLS}
        lines.append(f"| {label} | {epochs:.1f} | {final['audio']:.3f} | {final['image']:.3f} | "
                     + " | ".join(f"{acc[p]:.1f}" for p in PROTOCOLS) + " |")
    lines += ["", "Without the warm-up the proxies end *worse* than predicting the mean feature (errors 1.2-1.6): they "
              "were under-trained, as the audit suspected. Warmed up (10 epochs on average before the validation error "
              "stops improving) they reach 0.85-0.93: the digits' audio and image features share the digit but little "
              "else, so even trained proxies predict them only a little better than the mean. Accuracy moves within the "
              "seed spread (full +0.8, audio missing +0.3, image missing -2.1 with a seed std near 6): better proxies do "
              "not make the method better here. The warm-up is the default, so `proxy` is CMPT/U2A with trained proxies "
              "as its authors intend; `proxy_warmup_epochs: 0` gives the earlier schedule."]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
