"""Render RESULTS.md from the committed run folders of the degraded-inputs benchmark.

    OMP_NUM_THREADS=1 mmrobust run --out benchmarks/degraded/results/digits --set "methods=[ume-mma, unimodal]" \\
        --set "protocols=[$(cat benchmarks/degraded/protocols.txt)]"
    OMP_NUM_THREADS=1 mmrobust run --manifest data/stamps/stamps.csv --label label --out benchmarks/degraded/results/stamps \\
        --seeds 0 1 2 --set data.options.group_column=family --set data.options.cache_dir=data/cache \\
        --set "methods=[ume-mma, unimodal]" --set "protocols=[$(cat benchmarks/degraded/protocols-stamps.txt)]"
      (the stamps: python benchmarks/stamps/build.py --out data/stamps, from Debian's tuxpaint-stamps-default)
    OMP_NUM_THREADS=1 python benchmarks/degraded/choose_ramp.py benchmarks/degraded/results/digits > benchmarks/degraded/results/choose_ramp.md
    OMP_NUM_THREADS=1 python benchmarks/degraded/conflict.py benchmarks/degraded/results/digits > benchmarks/degraded/results/conflict.md
    (both before the run folder's models/ are removed; they are not committed)
    python benchmarks/degraded/render.py
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mmrobust.files import write_text
from mmrobust.records import corruption_conditions, degraded_summary, degraded_table, failure_table, read_jsonl, summarize

HERE = Path(__file__).resolve().parent
RUN = HERE / "results" / "digits"
HELD_OUT = ("impulse-noise", "scale")  # added before any run looked at them; every other kind was seen while building
METHOD = "ume-mma"


def targets(summary: list[dict], held_out: Sequence[str] | None = None) -> list[str]:
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
        out = "yes" if held_out is None or kind in held_out else "no"
        lines.append(f"| {modality}: {kind} | {out} | " + " | ".join(row) + " |")
    lines += ["", f"Conditions meeting both targets: hard gate {met['hard']} of {total}, soft gate {met['soft']} of {total}."]
    return lines


def run_header(run: Path) -> list[str]:
    env = json.loads((run / "provenance.json").read_text())["environment"]
    seconds = float((run / "seconds.txt").read_text())
    link = f"results/{run.name}"
    return [f"Code: commit {env['git_commit']}.  ",
            f"Machine: {env.get('cpu_model')}, device `{env['device']}`, {env['cpu_count']} CPUs, {env['torch_threads']} "
            f"torch thread(s), torch {env['packages']['torch']}; {seconds / 60:.1f} min wall.  ",
            f"Records: [{link}/results.jsonl]({link}/results.jsonl), report: [{link}/report.md]({link}/report.md).", ""]


def run_sections(run: Path, held_out: Sequence[str] | None, methods: Sequence[str]) -> list[str]:
    summary = summarize(read_jsonl(run / "results.jsonl"))
    return ["### The issue's targets, per kind (UME-MMA; worst severity of each comparison; ✗: missed)", "",
            *targets(summary, held_out), "",
            "### Summary over every kind and severity", "", *degraded_summary(summary, methods, "accuracy"), "",
            f"![degraded inputs](results/{run.name}/degraded.png)", "",
            "### Every kind and severity (ungated / gated / soft / declared)", "",
            *degraded_table(summary, methods, "accuracy"), ""]


def main() -> None:
    methods = ["ume-weighted", "mma", "ume-mma"]
    ramp, conflict, files = ((HERE / "results" / f"{name}.md").read_text().strip()
                             if (HERE / "results" / f"{name}.md").is_file() else "" for name in ("choose_ramp", "conflict", "real_files"))
    digits = summarize(read_jsonl(RUN / "results.jsonl"))
    text = [
        "# Degraded inputs (issue 39)", "",
        "Each test input of one modality degraded before its own preprocessing (`corrupt:<m>@<kind>:<severity>`, "
        "`mmrobust.corruptions`), UME-MMA and its parts with the input gate off (*ungated*), on (*gated*, the hard "
        "gate), soft (*soft*: inputs weighted by plausibility) and with the modality declared missing (*declared*); "
        "3 seeds (each retrains everything and draws its own corruptions); accuracy in %, means over seeds. The "
        "commands are in `render.py`'s docstring.", "",
        "## The embedded digits: 11 picture kinds x 5 severities", "",
        "Every test picture degraded before its PCA projection (`protocols.txt`). *Held out*: "
        f"{', '.join(HELD_OUT)} were added to the library before any run looked at them; the other nine kinds were "
        "looked at on seed 0's test rows while the gate's residual part was built, so they are not held out. The soft "
        "gate's ramp was chosen on validation rows degraded by noise, contrast and shift (below).", "",
        *run_header(RUN), *run_sections(RUN, HELD_OUT, methods),
        "### Broken inputs (the silent-failure conditions, the same run)", "", *failure_table(digits, methods, "accuracy"), "",
    ]
    if files:
        text += ["## The digits' audio, degraded in real files (`real_files.py`)", "",
                 "The digits keep spectrograms, so their audio is degraded where a user's WAV reaches a saved model: the "
                 "held-out speakers' recordings degraded, written, and predicted beside a real MNIST picture of the same "
                 "digit. *Held out*: every audio kind (none was looked at before this run).", "", files, ""]
    stamps = HERE / "results" / "stamps"
    if (stamps / "results.jsonl").is_file():
        text += ["## The stamps: pictures, texts and sounds read through pre-trained extractors", "",
                 "Tux Paint's stamps (benchmarks/stamps: 142 test rows, natural gaps; a sound on 15 test rows that have "
                 "another modality, so its conditions score 15 rows), each cell read again from its file, degraded and "
                 "extracted (MobileNetV2, MiniLM, the speech embedding); severities 1, 3 and 5 "
                 "(`protocols-stamps.txt`). No run looked at this data before the one recorded here: every kind is "
                 "held out.", "", *run_header(stamps), *run_sections(stamps, None, methods)]
    if ramp:
        text += ["## The soft gate's ramp, chosen on validation rows (digits, seed 0)", "",
                 "Worst margin: min(soft − (ungated − 0.5), soft − (declared − 1)) over the 15 chosen conditions. Every "
                 "ramp above 0 (the hard gate) lowers it, so the measurement does not choose a soft gate; `SOFT_RAMP` = 4 "
                 "is reported to show the trade (on the test rows above it meets both targets in more conditions, and "
                 "misses the moved digits the hard gate drops).", "", ramp, ""]
    if conflict:
        text += ["## The cross-modal conflict signal on a stale feed (digits)", "",
                 "MultiOOD's modality prediction discrepancy (L1 between the uni-modal models' probabilities), "
                 "thresholded at the 99th percentile of clean validation rows (`conflict.py`; in brackets: at exactly 1% "
                 "false alarms on the clean test rows, an oracle). Not adopted: the test speakers are new, so the "
                 "validation threshold gives 4-7% false alarms, and at 1% the signal catches 5-8% of stale inputs (the "
                 "audio model, 37-50% accurate, disagrees with the picture's on most clean rows).", "", conflict, ""]
    write_text(HERE / "RESULTS.md", "\n".join(text) + "\n")
    print(HERE / "RESULTS.md")


if __name__ == "__main__":
    main()
