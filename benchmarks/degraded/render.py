"""Render RESULTS.md from the committed run folder of the degraded-inputs benchmark.

    OMP_NUM_THREADS=1 mmrobust run --out benchmarks/degraded/results/digits --set "methods=[ume-mma, unimodal]" \\
        --set "protocols=[$(cat benchmarks/degraded/protocols.txt)]"
    OMP_NUM_THREADS=1 python benchmarks/degraded/choose_ramp.py benchmarks/degraded/results/digits > benchmarks/degraded/results/choose_ramp.md
    OMP_NUM_THREADS=1 python benchmarks/degraded/conflict.py benchmarks/degraded/results/digits > benchmarks/degraded/results/conflict.md
    (both before the run folder's models/ are removed; they are not committed)
    python benchmarks/degraded/render.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmrobust.files import write_text
from mmrobust.records import corruption_conditions, degraded_summary, degraded_table, failure_table, read_jsonl, summarize

HERE = Path(__file__).resolve().parent
RUN = HERE / "results" / "digits"
HELD_OUT = ("impulse-noise", "scale")  # added before any run looked at them; every other kind was seen while building
METHOD = "ume-mma"


def targets(summary: list[dict]) -> list[str]:
    """Per kind, the worst severity of each comparison the issue sets a target on (in points)."""
    cells = {(s["protocol"], s["metric"]): s["mean"] for s in summary if s["method"] == METHOD and s["pattern"] is None}
    lines = ["| kind | held out | hard − declared (≥ −1) | hard − ungated (≥ −0.5) | soft − declared (≥ −1) | soft − ungated (≥ −0.5) |",
             "|---|---|---:|---:|---:|---:|"]
    met = {"hard": 0, "soft": 0}
    total = 0
    for (modality, kind), severities in corruption_conditions(summary).items():
        values = {x: np.array([cells[(severities[s], "accuracy" + x)] for s in sorted(severities)])
                  for x in ("", ":gated", ":soft", ":declared")}
        row = []
        for gate in (":gated", ":soft"):
            for other, slack in ((":declared", 0.01), ("", 0.005)):
                gap = values[gate] - values[other]
                worst = int(np.argmin(gap))
                row.append(f"{100 * gap[worst]:+.1f} (severity {sorted(severities)[worst] }){'' if gap[worst] >= -slack else ' ✗'}")
            met["hard" if gate == ":gated" else "soft"] += int(
                np.sum((values[gate] - values[":declared"] >= -0.01) & (values[gate] - values[""] >= -0.005)))
        total += len(severities)
        lines.append(f"| {modality}: {kind} | {'yes' if kind in HELD_OUT else 'no'} | " + " | ".join(row) + " |")
    lines += ["", f"Conditions meeting both targets: hard gate {met['hard']} of {total}, soft gate {met['soft']} of {total}."]
    return lines


def main() -> None:
    summary = summarize(read_jsonl(RUN / "results.jsonl"))
    env = json.loads((RUN / "provenance.json").read_text())["environment"]
    seconds = float((RUN / "seconds.txt").read_text())
    methods = ["ume-weighted", "mma", "ume-mma"]
    ramp, conflict = ((HERE / "results" / f"{name}.md").read_text().strip() if (HERE / "results" / f"{name}.md").is_file()
                      else "" for name in ("choose_ramp", "conflict"))
    text = [
        "# Degraded inputs on the embedded digits (issue 39)", "",
        "Every test picture degraded before its PCA projection (`corrupt:image@<kind>:<severity>`, 11 kinds x 5 "
        "severities, `mmrobust.corruptions`), UME-MMA and its parts with the input gate off (*ungated*), on (*gated*, "
        "the hard gate), soft (*soft*: inputs weighted by plausibility) and with the picture declared missing "
        "(*declared*); 3 seeds (each retrains everything and draws its own corruptions); accuracy in %, means over seeds.", "",
        f"Command: see `render.py`'s docstring (`protocols.txt` lists the protocols).  ",
        f"Code: commit {env['git_commit']}.  ",
        f"Machine: {env.get('cpu_model')}, device `{env['device']}`, {env['cpu_count']} CPUs, {env['torch_threads']} torch "
        f"thread(s), torch {env['packages']['torch']}; {seconds / 60:.1f} min wall.  ",
        "Records: [results/digits/results.jsonl](results/digits/results.jsonl), report: "
        "[results/digits/report.md](results/digits/report.md).", "",
        "## The issue's targets, per kind (UME-MMA; worst severity of each comparison; ✗: missed)", "",
        f"*Held out*: {', '.join(HELD_OUT)} were added to the library before any run looked at them; the other nine "
        "kinds were looked at on seed 0's test rows while the gate's residual part was built, so they are not held out. "
        "The soft gate's ramp was chosen on validation rows degraded by noise, contrast and shift (below).", "",
        *targets(summary), "",
        "## Summary over every kind and severity", "", *degraded_summary(summary, methods, "accuracy"), "",
        "![degraded inputs](results/digits/degraded.png)", "",
        "## Every kind and severity (ungated / gated / soft / declared)", "", *degraded_table(summary, methods, "accuracy"), "",
        "## Broken inputs (the silent-failure conditions, the same run)", "", *failure_table(summary, methods, "accuracy"), "",
        *(["## The soft gate's ramp, chosen on validation rows (seed 0)", "",
           "Worst margin: min(soft − (ungated − 0.5), soft − (declared − 1)) over the 15 chosen conditions. Every ramp "
           "above 0 (the hard gate) lowers it, so the measurement does not choose a soft gate; `SOFT_RAMP` = 4 is "
           "reported to show the trade (on the test rows above it meets both targets in more conditions, and misses "
           "the moved digits the hard gate drops).", "", ramp, ""] if ramp else []),
        *(["## The cross-modal conflict signal on a stale feed", "",
           "MultiOOD's modality prediction discrepancy (L1 between the uni-modal models' probabilities), thresholded at "
           "the 99th percentile of clean validation rows (`conflict.py`; in brackets: at exactly 1% false alarms on "
           "the clean test rows, an oracle). Not adopted: the test speakers are new, so the validation threshold "
           "gives 4-7% false alarms, and at 1% the signal catches 5-8% of stale inputs (the audio model, 37-50% "
           "accurate, disagrees with the picture's on most clean rows).", "", conflict, ""] if conflict else []),
    ]
    write_text(HERE / "RESULTS.md", "\n".join(text) + "\n")
    print(HERE / "RESULTS.md")


if __name__ == "__main__":
    main()
