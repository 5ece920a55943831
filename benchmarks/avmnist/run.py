"""AV-MNIST benchmark: every method of method.md over seeds, the sweeps, and the paper's
training-time missing experiment; writes ``<out>/summary.md`` and rebuilds ``RESULTS.md``.

    mmrobust prepare avmnist --mnist ../shared/data/mnist --fsdd ../shared/data/fsdd/recordings --out data/avmnist
    python benchmarks/avmnist/run.py --root data/avmnist --tag cpu-10k                      # CPU: 10k training pairs
    python benchmarks/avmnist/run.py --root data/avmnist --tag gpu-full --train-rows 55000 --val-rows 5000 --device cuda
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import mmrobust as mm
from mmrobust.files import write_text
from mmrobust.provenance import git_commit
from mmrobust.records import against_unimodal, cell_text as fmt, choice_text, read_jsonl, robustness_ranking, summarize
from mmrobust.report import plot_robustness

HERE = Path(__file__).resolve().parent
METHODS = ["unimodal", "late-fusion", "late-fusion-concat", "late-fusion-dropout", "late-fusion-unimodal-init",
           "ume", "ume-weighted", "mma", "ume-mma-paper", "ume-mma"]
COLUMNS = [("full", "full"), ("image missing", "miss:image"), ("audio missing", "miss:audio")]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = HERE / "results" / args.tag
    data = mm.DATASETS.create("avmnist", root=args.root)
    if args.render_only:
        return render_saved(args, data, out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "command.txt", command_line(argv) + "\n")
    write_text(out / "commit.txt", (git_commit() or "not a git checkout") + "\n")
    train = data.train.subset(np.arange(min(args.train_rows, len(data.train))))
    val = data.val.subset(np.arange(min(args.val_rows, len(data.val))))
    config = mm.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, progress=sys.stderr.isatty())
    started = time.perf_counter()
    log(f"main: {len(train)} training pairs, {len(val)} validation pairs, seeds {args.seeds}")
    main_run = run(out / "main", args.methods, data, train, val, config, args.seeds,
                   ["full", "miss:image", "miss:audio", "sweep:image", "sweep:audio"])
    parts = {"main": main_run, "seconds": {"main": time.perf_counter() - started}}
    if args.double_rows:
        t = time.perf_counter()
        double = data.train.subset(np.arange(min(2 * args.train_rows, len(data.train))))
        log(f"uni-modal at 2N = {len(double)} pairs, seed {args.seeds[0]}")
        parts["double"] = run(out / "unimodal-2n", ["unimodal"], data, double, val, config, args.seeds[:1], ["full"])
        parts["double_rows"] = len(double)
        parts["seconds"]["double"] = time.perf_counter() - t
    parts["missing"] = {}
    for rate in args.train_missing:
        t = time.perf_counter()
        log(f"training-time missing: audio absent from {rate:.0%} of training rows, seed {args.seeds[0]}")
        parts["missing"][rate] = run(out / f"train-missing-{int(100 * rate)}", ["unimodal", "late-fusion", "ume-mma-paper", "ume-mma"],
                                     data, train, val, config, args.seeds[:1], ["full", "miss:image", "miss:audio"],
                                     train_missing={"audio": rate})
        parts["seconds"][f"missing {rate}"] = time.perf_counter() - t
    write_text(out / "summary.md", render(args, data, len(train), len(val), parts, out))
    rebuild_results()
    log(f"wrote {out / 'summary.md'} and {HERE / 'RESULTS.md'}")
    return 0


def render_saved(args, data, out: Path) -> int:
    """Rewrite ``summary.md`` from the parts a run saved (e.g. one cut short by a time limit)."""
    parts = {"main": load_part(out / "main"), "seconds": {}, "missing": {}}
    parts["seconds"]["main"] = sum(s["seconds"] for s in parts["main"].stages)
    if (out / "unimodal-2n" / "results.jsonl").is_file():
        parts["double"] = load_part(out / "unimodal-2n")
        parts["double_rows"] = min(2 * args.train_rows, len(data.train))
    for rate in args.train_missing:
        folder = out / f"train-missing-{int(100 * rate)}"
        if (folder / "results.jsonl").is_file():
            parts["missing"][rate] = load_part(folder)
    n_train, n_val = min(args.train_rows, len(data.train)), min(args.val_rows, len(data.val))
    write_text(out / "summary.md", render(args, data, n_train, n_val, parts, out))
    rebuild_results()
    return 0


def load_part(folder: Path) -> mm.ExperimentResults:
    stages = json.loads((folder / "stages.json").read_text()) if (folder / "stages.json").is_file() else []
    return mm.ExperimentResults(read_jsonl(folder / "results.jsonl"), json.loads((folder / "fits.json").read_text()), stages)


def command_line(argv) -> str:
    return "python benchmarks/avmnist/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="a folder prepared by `mmrobust prepare avmnist`")
    p.add_argument("--tag", required=True, help="names the results folder, e.g. cpu-10k")
    p.add_argument("--train-rows", type=int, default=10000)
    p.add_argument("--val-rows", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--double-rows", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the uni-modal models on 2N pairs (one seed)")
    p.add_argument("--train-missing", type=float, nargs="*", default=[0.5, 0.8, 0.95])
    p.add_argument("--render-only", action="store_true", help="rewrite summary.md from the saved results of --tag")
    p.add_argument("--machine", default=None, help="describe the machine (with --render-only, when it ran elsewhere)")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(out, methods, data, train, val, config, seeds, protocols, train_missing=None):
    if (out / "results.jsonl").exists():
        (out / "results.jsonl").unlink()
    results = mm.run_experiment(methods=methods, encoders=data.encoders, train=train, val=val, test=data.test,
                                protocols=protocols, seeds=seeds, train_config=config, dataset="avmnist",
                                out_dir=out, train_missing=train_missing)
    for stage in results.stages:
        log(f"  {stage['stage']}: {stage['seconds']:.1f} s")
    write_text(out / "stages.json", json.dumps(results.stages, indent=1))
    return results


def cells(results) -> dict:
    return {(s["method"], s["protocol"], s["metric"]): s for s in summarize(results.records)
            if s["rate"] is None and s["pattern"] is None}


def paper_table(results, with_mean=True) -> list[str]:
    c = cells(results)
    methods = list(dict.fromkeys(r["method"] for r in results.records))
    head = "| method | " + " | ".join(h for h, _ in COLUMNS) + (" | mean of the three |" if with_mean else " |")
    lines = [head, "|---|" + "---:|" * (len(COLUMNS) + with_mean)]
    for m in methods:
        row = [c.get((m, p, "accuracy")) for _, p in COLUMNS]
        means = [x["mean"] for x in row if x is not None and x["mean"] is not None]
        mean = f"{100 * np.mean(means):.1f}" if with_mean and len(means) == len(COLUMNS) else ("n/a" if with_mean else None)
        lines.append(f"| {m} | " + " | ".join(fmt(x) for x in row) + (f" | {mean} |" if with_mean else " |"))
    return lines


def area_table(results) -> list[str]:
    c = cells(results)
    methods = list(dict.fromkeys(r["method"] for r in results.records))
    lines = ["| method | sweep:image (area) | sweep:audio (area) |", "|---|---:|---:|"]
    for m in methods:
        lines.append(f"| {m} | {fmt(c.get((m, 'sweep:image', 'area:accuracy')))} | {fmt(c.get((m, 'sweep:audio', 'area:accuracy')))} |")
    return lines


def choices(results) -> list[str]:
    return [f"{f['method']}, seed {f['seed']}: {choice_text(f)} (validation selection score: {f['parts']['ume']} "
            f"{100 * f['val_scores']['ume']:.2f}, {f['parts']['mma']} {100 * f['val_scores']['mma']:.2f})"
            for f in results.fits if "pattern_choice" in f and "parts" in f]


def render(args, data, n_train, n_val, parts, out) -> str:
    main = parts["main"]
    plot_robustness(summarize(main.records), "accuracy", list(dict.fromkeys(r["method"] for r in main.records)),
                    out / "robustness.png")
    machine = args.machine or describe_machine(torch.device(args.device))
    command = (out / "command.txt").read_text().strip()
    commit = (out / "commit.txt").read_text().strip() if (out / "commit.txt").is_file() else "not recorded"
    info = data.info
    lines = [f"### {args.tag}", "",
             f"Command: `{command}`  ", f"Code: commit {commit}.  ", f"Machine: {machine}.  ",
             "Time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in parts["seconds"].items()) + ".  ",
             f"Data: {n_train} training pairs (the first rows of the 55,000), {n_val} validation pairs, all 10,000 test pairs; "
             f"image PCA keeps {info['pca']['components']} components ({100 * info['pca']['energy_kept']:.1f}% of the "
             f"energy); audio: a competing recording of another digit at {info['audio']['competing_digit_db']} dB below "
             f"the target, then white noise at {info['audio']['white_noise_snr_db']} dB SNR.  ",
             f"Training: Adam, lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs (fine-tuning from Stage 1: lr × 0.1, "
             f"{max(1, -(-args.epochs // 2))} epochs), seeds {args.seeds}.", "",
             "Test accuracy in %, mean ± std over seeds:", ""]
    lines += paper_table(main) + ["", "Area under accuracy vs. share of test rows missing the modality:", ""]
    lines += area_table(main) + ["", "Ranked by the mean of full and each modality missing:", ""]
    lines += robustness_ranking(main.records) + ["", f"![robustness](results/{args.tag}/robustness.png)", ""]
    if {"ume-mma-paper", "ume-mma"} <= {r["method"] for r in main.records}:
        lines += ["UME-MMA with the paper's rule and with per-pattern routing beside the best uni-modal model of the "
                  "modalities present (same masks and seeds; the paper's seed std is the spread to compare with):", "",
                  *against_unimodal(main.records), ""]
    lines += ["What UME-MMA uses, chosen on validation: " + "; ".join(choices(main)) + ".", ""]
    if "double" in parts:
        c_n, c_2n = cells(main), cells(parts["double"])
        lines += [f"Uni-modal accuracy at N = {n_train} (mean over seeds) and 2N = {parts['double_rows']} "
                  f"(seed {args.seeds[0]}): image {fmt(c_n.get(('unimodal:image', 'full', 'accuracy')))} → "
                  f"{fmt(c_2n.get(('unimodal:image', 'full', 'accuracy')))}, audio "
                  f"{fmt(c_n.get(('unimodal:audio', 'full', 'accuracy')))} → {fmt(c_2n.get(('unimodal:audio', 'full', 'accuracy')))}.", ""]
    if parts["missing"]:
        lines += [f"Training-time missing (the paper's experiment): audio absent from a share of the training and "
                  f"validation rows, test as above; seed {args.seeds[0]}.", ""]
        for rate, results in parts["missing"].items():
            lines += [f"Audio missing from {rate:.0%} of training rows:", ""] + paper_table(results) + [""]
    return "\n".join(lines) + "\n"


def describe_machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    return f"{name} (device `{device}`), torch {torch.__version__}"


def rebuild_results() -> None:
    parts = sorted((HERE / "results").glob("*/summary.md"))
    header = ["# AV-MNIST benchmark", "",
              "Every method of method.md on AV-MNIST built from real MNIST and FSDD recordings "
              "(`mmrobust prepare avmnist`); each section is one run of `benchmarks/avmnist/run.py`, "
              "with its command, machine and time. How the corruption was chosen, with the calibration runs: "
              "[CALIBRATION.md](CALIBRATION.md).", "",
              "Targets (issue 4), 3-seed means: UME-MMA at or above the image-only model with audio missing, the "
              "audio-only model with the image missing, late fusion on full inputs, and the best mean over the three "
              "columns; MMA at or above `late-fusion-dropout` and `late-fusion-unimodal-init` under each modality "
              "missing. The runs with today's code (`cpu-10k-comparison`, `cpu-10k-routing`) meet every target.", "",
              "**Unpaired.** These runs predate paired comparisons (issue 26): each method's initial weights and "
              "batch order came from its own name, so a per-seed difference between two methods here includes "
              "run-to-run noise (OGM-GE's committed -4.7 against late fusion was -0.5 to -1.7 in an audit's paired rerun). The digits "
              "comparison was rerun paired (benchmarks/digits/RESULTS.md); this one was not (148 min at one thread).", "",
              "Issue 19's target: UME-MMA never more than 1 point below the best uni-modal model of the modalities "
              "present, and never below the paper's rule (`ume-mma-paper`) by more than the seed spread: see the table "
              "in `cpu-10k-routing`. With the audio missing from 95% of the training rows, `ume-mma` is 1.1 points "
              "above `ume-mma-paper` with both present and 1.2 with the audio missing: not a per-pattern override but "
              "the starting choice flipping, because routing's ensemble is the weighted UME (validation selection "
              "score 47.37 against MMA's 47.55, so MMA) where the paper's rule compares plain UME (49.03, so UME).", "",
              "**Error bars.** The 10,000 test rows use only 300 distinct recordings (FSDD takes 0-4 of each of the 6 speakers and 10 digits, "
              "each about 33 times with another interferer and noise): rows are far from independent for anything "
              "that depends on the audio, so the seed spread (± below) is the honest error bar here. The runner's "
              "bootstrap intervals (in each run's report) resample recordings where the audio is present "
              "(`recording.npy` gives each row's); the tables below show the seed spread.", ""]
    text = "\n".join(header) + "\n" + "\n".join(p.read_text() for p in parts)
    write_text(HERE / "RESULTS.md", text)


if __name__ == "__main__":
    sys.exit(main())
