"""How often each interval holds the true accuracy on simulated clustered test rows, over the grid of
issue 38 (accuracy 0.5-0.98, intra-group correlation 0-0.2, 10-100 groups), every interval on the same
draws and resamples. Writes a markdown table (RESULTS.md beside this file records one run).

    OMP_NUM_THREADS=1 python benchmarks/intervals/coverage.py --trials 1000 > benchmarks/intervals/table.md
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_evidence import clustered_coverage  # noqa: E402  (the simulation the tests use)

from mmrobust.evidence import expanded_percentile, interval  # noqa: E402

INTERVALS = {
    "Korn–Graubard (used)": lambda values, value, units, rows: interval(values, 0.95, units, value=value, rows=rows),
    "expanded percentile (before)": lambda values, value, units, rows: expanded_percentile(values, 0.95, units)
    if np.ptp(values) else interval(values, 0.95, units, value=value, rows=rows),
}


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    trials = parser.parse_args().trials
    print(f"{trials} simulated test sets per cell, 1000 group resamples each, nominal 95%; "
          f"{cpu_model()}, 1 thread, numpy {np.__version__}.\n")
    print("| accuracy | correlation | groups | " + " | ".join(f"{n}: held (truth below / above)" for n in INTERVALS) + " |")
    print("|---:|---:|---:|" + "---|" * len(INTERVALS))
    for accuracy in (0.5, 0.75, 0.9, 0.95, 0.98):
        for correlation in (0.0, 0.1, 0.2):
            for groups in (10, 30, 100):
                coverage = clustered_coverage(accuracy, correlation, groups, trials, intervals=INTERVALS)
                cells = [f"{100 * held:.1f}% ({100 * below:.1f} / {100 * (1 - held - below):.1f})"
                         for held, below in coverage.values()]
                print(f"| {accuracy} | {correlation} | {groups} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
