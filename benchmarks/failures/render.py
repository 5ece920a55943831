"""results/<dataset>/<detector>.jsonl -> RESULTS.md (no torch needed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DETECTORS = ("auto", "mahalanobis", "energy", "knn", "none")
KINDS = ("blank", "constant", "noise", "stale")
METRIC = "accuracy"
METHOD = "ume-mma"


def render_results(here: Path) -> None:
    lines = ["# Silent failures: a modality present but broken, with and without the input gate", "",
             "Written by `python benchmarks/failures/run.py` (see its docstring for the commands). `fail:<m>@<kind>` "
             "replaces modality m's raw input on every test row (`blank`: a black picture, a silent clip; `constant`: a "
             "white picture, a DC clip; `noise`: pixel noise, a white-noise clip; `stale`: another test row's input), "
             "read through the modality's own preprocessing (the digits' PCA projection, the audio front-end). "
             f"{METHOD}, accuracy in %, mean over the seeds. *declared*: the same model told the modality is missing; "
             "*uni-modal*: the uni-modal model of the other modality; *detected*: share of the broken inputs the gate "
             "ignored; *false alarms*: share of clean test inputs of that modality it ignored (`full`).", "",
             "The gate of the default (`auto`): per modality the input part (the Mahalanobis distance of the "
             "input's mean, spread and principal coordinates) and the levels part (spread and roughness against a "
             "fixed 4x tolerance), read on the raw input where the preprocessing discards what shows a broken sensor "
             "(the digits' pictures before their PCA projection; a 32x32 grey thumbnail of a picture read through a "
             "pre-trained extractor); the text parts on a text read through one; a feature part only for inputs that are no arrays (tokens). The earlier "
             "variants are kept below, each saying what it was, as the measurements behind the choices.", "",
             "What the digits show (`digits`): every blank, constant and noise input of either modality is caught "
             "and the model then answers exactly as if the modality were declared missing (gap 0.0), for 0.0% "
             "(audio) and 0.4% (image) false alarms on clean test inputs and 0.1 points on clean inputs (0.2 on the "
             "worst pattern). Reading the "
             "picture before the projection is what catches the black and the pixel-noise picture (33% and 0% with "
             "the gate on the projected picture: `digits-model-input`); the levels part is what catches the hiss "
             "(`digits-without-levels`). The Mahalanobis feature part (`mahalanobis@0.005`, same models) catches "
             "nothing more and ignores 5.0% of the held-out speakers' clean recordings (2.9% on the AMD EPYC run "
             "before); energy and kNN missed most "
             "failures (`digits-feature-only`). A stale input is in-distribution by construction: no part sees it.",
             "",
             "What the emoji set shows (`emoji`): through the thumbnails, every black, white and pixel-noise picture "
             "is caught (the model then equals the model told the picture is missing), for 1.3% false alarms on "
             "clean test pictures; before them the gate read only MobileNetV2's features, among which a broken "
             "picture's lie (0% caught: `emoji-features`). A text is read as its characters, scored by a character "
             "model of the training names (mmrobust.textgate: surprisal per character, how little the characters' "
             "order explains the text, repeated words): 99.7% of the \"N/A\" texts, 99.8% of the repeated words and "
             "98.8% of the random letters are caught, and the gated model is 0.1, 0.0 and 0.5 points below the "
             "model told the text is missing, for 0.2% false alarms on clean test names. Before the gate read "
             "texts, none was caught and the model fell 21.5-41.5 points below (`emoji-no-text-view`).", "",
             "AV-MNIST cpu-10k (its arrays have no file format, so a failure is written into the model's inputs "
             "in their training range): see `avmnist` (the default gate) and `avmnist-mahalanobis`.", ""]
    for folder in sorted(p for p in (here / "results").iterdir() if p.is_dir()):
        run = json.loads((folder / "run.json").read_text())
        lines += [f"## {folder.name}", "", f"{run['setting']}; seeds {run['seeds']}; commit `{run['commit'][:10]}`; "
                  f"{run['machine']}; training {run['train_seconds']:.0f} s. `{run['command']}`", ""]
        if run.get("variant"):
            lines += [f"Gate: {run['variant']}.", ""]
        lines += comparison(folder)
        for path in evaluations(folder):
            lines += detector_table(path.stem, [json.loads(x) for x in path.read_text().splitlines() if x.strip()])
    (here / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def evaluations(folder: Path) -> list[Path]:
    """One records file per gate setting: ``<detector>.jsonl`` or ``<detector>@<false alarms>.jsonl``."""
    return sorted(folder.glob("*.jsonl"), key=lambda p: (DETECTORS.index(p.stem.split("@")[0]), p.stem))


def mean(records, method, protocol, metric, pattern=None):
    values = [r["value"] for r in records if r["method"] == method and r["protocol"] == protocol
              and r["metric"] == metric and r.get("pattern") == pattern and r["value"] is not None]
    return float(np.mean(values)) if values else None


def pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def modalities(records):
    return sorted({r["protocol"].split(":")[1].split("@")[0] for r in records if r["protocol"].startswith("fail:")})


def comparison(folder: Path) -> list[str]:
    """Per detector: the gate's distance to `declared` over blank / constant / noise, and its false alarms."""
    rows = ["| gate (detector @ false alarms on validation) | mean gap to declared (blank, constant, noise) | worst gap | stale: gated − ungated | "
            "clean: gated − ungated, worst pattern | false alarms (max over modalities) |", "|---|---:|---:|---:|---:|---:|"]
    for path in evaluations(folder):
        detector = path.stem
        records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        gaps, stale = [], []
        for m in modalities(records):
            for kind in ("blank", "constant", "noise"):
                p = f"fail:{m}@{kind}"
                gaps.append(mean(records, METHOD, p, f"{METRIC}:declared") - mean(records, METHOD, p, f"{METRIC}:gated"))
            p = f"fail:{m}@stale"
            stale.append(mean(records, METHOD, p, f"{METRIC}:gated") - mean(records, METHOD, p, METRIC))
        clean = [mean(records, METHOD, "full", f"{METRIC}:gated") - mean(records, METHOD, "full", METRIC)]
        patterns = sorted({r["pattern"] for r in records if r["protocol"] == "subsets" and r["pattern"]})
        clean += [mean(records, METHOD, "subsets", f"{METRIC}:gated", p) - mean(records, METHOD, "subsets", METRIC, p)
                  for p in patterns]
        alarms = max(mean(records, METHOD, "full", f"ignored:{m}") for m in modalities(records))
        rows.append(f"| {detector} | {100 * np.mean(gaps):.1f} | {100 * max(gaps):.1f} | "
                    f"{', '.join(f'{100 * s:+.1f}' for s in stale)} | {100 * min(clean):+.1f} | {100 * alarms:.2f}% |")
    return ["Detectors compared (points; a gap > 0: the gated model is below the model told the modality is missing):",
            "", *rows, ""]


def detector_table(detector: str, records: list[dict]) -> list[str]:
    mods = modalities(records)
    lines = [f"### {detector}", "", "| condition | ungated | gated | declared | uni-modal | detected | false alarms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m in mods:
        other = [o for o in mods if o != m]
        for kind in KINDS:
            p = f"fail:{m}@{kind}"
            unimodal = mean(records, f"unimodal:{other[0]}", p, METRIC) if len(other) == 1 else None
            lines.append(f"| `{p}` | {pct(mean(records, METHOD, p, METRIC))} | {pct(mean(records, METHOD, p, f'{METRIC}:gated'))} | "
                         f"{pct(mean(records, METHOD, p, f'{METRIC}:declared'))} | {pct(unimodal)} | "
                         f"{pct(mean(records, METHOD, p, f'ignored:{m}'))} | {pct(mean(records, METHOD, 'full', f'ignored:{m}'))} |")
    lines.append(f"| `full` (clean) | {pct(mean(records, METHOD, 'full', METRIC))} | "
                 f"{pct(mean(records, METHOD, 'full', f'{METRIC}:gated'))} | | | | |")
    return lines + [""]
