"""The records of ``run.py`` -> ``RESULTS.md`` and one heatmap per dataset (no torch): the dropout
grid, and the per-pattern evidence of the paper's rate (p = 0.5)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmrobust.files import atomic_path, write_text
from mmrobust.records import (calibration_table, coverage_table, evidence_table, method_order, read_jsonl,
                              reference_modality, summarize)

PAPER_RATE = 0.5
TITLES = {"digits": "Embedded digits", "avmnist": "AV-MNIST (cpu-10k)"}


def render_results(here: Path) -> None:
    lines = ["# How much dropout to train with, and per-pattern evidence", "",
             "Rendered by `benchmarks/evidence/render.py` from the records under `results/` (written by "
             "`benchmarks/evidence/run.py`; the command, commit and machine of each run are in its `run.json`).", ""]
    for dataset in ("digits", "avmnist"):
        folder = here / "results" / dataset
        if (folder / f"p{PAPER_RATE:g}" / "results.jsonl").is_file():
            lines += render_dataset(folder, dataset, here)
    write_text(here / "RESULTS.md", "\n".join(lines) + "\n")
    print(here / "RESULTS.md")


def load_runs(folder: Path) -> dict[float, dict]:
    runs = {}
    for sub in sorted(folder.glob("p*")):
        if (sub / "results.jsonl").is_file() and (sub / "run.json").is_file():
            run = json.loads((sub / "run.json").read_text())
            runs[run["p_drop"]] = {"run": run, "records": read_jsonl(sub / "results.jsonl"),
                                   "evidence": read_jsonl(sub / "evidence.jsonl")}
    return dict(sorted(runs.items()))


def per_seed(records, method: str, protocol: str, rate, metric: str = "accuracy") -> list[float]:
    return [r["value"] for r in sorted(records, key=lambda r: r["seed"]) if r["method"] == method
            and r["protocol"] == protocol and r["rate"] == rate and r["metric"] == metric and r["pattern"] is None]


def grid_rows(runs: dict[float, dict], modalities: list[str]) -> list[tuple[str, dict[str, list[float]]]]:
    """(label, column -> per-seed values): MMA at every p, and the uni-modal references."""
    columns = [("full", "full", None, "accuracy")]
    columns += [(f"{m} missing", f"sweep:{m}", 1.0, "accuracy") for m in modalities]
    columns += [(f"{m} sweep (area)", f"sweep:{m}", None, "area:accuracy") for m in modalities]
    rows = []
    paper = runs[PAPER_RATE]["records"]
    for m in modalities:
        rows.append((f"*{m} only (reference)*", {c: per_seed(paper, f"unimodal:{m}", p, r, k) for c, p, r, k in columns}))
    for p, run in runs.items():
        rows.append((f"MMA, p = {p:g}", {c: per_seed(run["records"], "mma", pr, r, k) for c, pr, r, k in columns}))
    for _, cells in rows:
        seeds = zip(*(cells[c] for c in ["full", *[f"{m} missing" for m in modalities]]))
        values = [list(v) for v in seeds]
        cells["mean of full + each missing"] = ([float(np.mean(v)) for v in values]
                                                if values and all(x is not None for v in values for x in v) else [])
    return rows


def _text(values: list) -> str:
    if not values or any(v is None for v in values):
        return "n/a"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1) if len(values) > 1 else 0:.1f}"


def grid_table(rows) -> list[str]:
    headers = list(rows[0][1])
    out = ["| trained with | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    return out + [f"| {label} | " + " | ".join(_text(cells[h]) for h in headers) + " |" for label, cells in rows]


def supported_rate(rows) -> str:
    """Which p the data support: the best mean of full and each modality missing, and every p
    whose mean lies within the best one's seed standard deviation."""
    scores = {label: cells["mean of full + each missing"] for label, cells in rows if label.startswith("MMA")}
    best = max(scores, key=lambda k: np.mean(scores[k]))
    spread = np.std(scores[best], ddof=1) if len(scores[best]) > 1 else 0.0
    close = [k.split("= ")[1] for k in scores if np.mean(scores[best]) - np.mean(scores[k]) <= spread]
    return (f"Highest mean of full and each modality missing: {best.replace('MMA, ', '')} "
            f"({100 * np.mean(scores[best]):.1f} ± {100 * spread:.1f}); within that seed spread: p ∈ {{{', '.join(close)}}}.")


def heatmap(runs: dict[float, dict], modalities: list[str], path: Path) -> None:
    """Accuracy of MMA against the test missing rate of each modality (columns) and the training
    dropout p (rows), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({r["rate"] for run in runs.values() for r in run["records"] if r["rate"] is not None})
    fig, axes = plt.subplots(1, len(modalities), figsize=(6.5 * len(modalities), 3.6), squeeze=False)
    for ax, m in zip(axes[0], modalities):
        grid = np.array([[np.mean(per_seed(run["records"], "mma", f"sweep:{m}", r)) for r in rates] for run in runs.values()])
        image = ax.imshow(100 * grid, aspect="auto", cmap="viridis", origin="lower")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7, color="white" if value < grid.mean() else "black")
        ax.set(xticks=range(len(rates)), xticklabels=[f"{r:g}" for r in rates], yticks=range(len(runs)),
               yticklabels=[f"{p:g}" for p in runs], xlabel=f"share of test rows without {m}", ylabel="training dropout p",
               title=f"MMA accuracy (%), {m} missing")
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def render_dataset(folder: Path, dataset: str, here: Path) -> list[str]:
    runs = load_runs(folder)
    paper = runs[PAPER_RATE]
    modalities = sorted({reference_modality(r["method"]) for r in paper["records"] if reference_modality(r["method"])})
    rows = grid_rows(runs, modalities)
    figure = here / f"dropout-{dataset}.png"
    heatmap(runs, modalities, figure)
    run = paper["run"]
    seconds = {p: r["run"]["seconds"] for p, r in runs.items()}
    commits = sorted({r["run"]["commit"] or "not a git checkout" for r in runs.values()})
    summary = summarize(paper["records"])
    methods = method_order(paper["records"])
    return [
        f"## {TITLES.get(dataset, dataset)}", "",
        f"Command: `{run['command']}`  ", f"Code: commit {', '.join(commits)}.  ", f"Machine: {run['machine']}.  ",
        "Time: " + ", ".join(f"p = {p:g} {s / 60:.1f} min" for p, s in seconds.items()) + ".  ",
        f"Data: {run['setting']}; seeds 0, 1, 2 (each retrains Stage 1, shared by every p within a seed).", "",
        "### How much modality dropout to train MMA with", "",
        "Test accuracy in %, mean ± std over seeds. *missing*: the modality absent from every test row (the sweep's "
        "rate 1); *sweep (area)*: area under accuracy against the share of test rows without the modality.", "",
        *grid_table(rows), "", supported_rate(rows), "", f"![dropout grid]({figure.name})", "",
        "### Per presence pattern, at the paper's rate (p = 0.5)", "",
        f"Test accuracy in % with its 95% bootstrap interval (1000 resamples of the {_unit(paper['evidence'])}, seeds "
        "averaged inside each); difference to the best uni-modal model present, paired interval, verdict."
        + (" These records predate group resampling: rows that share a recording make a row bootstrap too narrow, "
           "and the seed spread above is the sturdier error bar." if _unit(paper["evidence"]) == "test rows" else ""),
        "", *evidence_table(paper["evidence"], methods), "",
        "Calibration (before → after temperature scaling per pattern, fitted on validation), means over seeds:", "",
        *calibration_table(summary, methods), "",
        "Conformal prediction sets at 90% (fitted on validation), per pattern and pattern-blind:", "",
        *coverage_table(summary, methods), ""]


def _unit(evidence: list[dict]) -> str:
    units = {e["unit"] for e in evidence}
    return ("test rows" if units <= {"row"} else "groups of test rows that share a source" if units == {"group"} else
            "groups of test rows that share a source of a modality present; rows where none is shared")
