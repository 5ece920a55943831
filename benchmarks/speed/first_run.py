"""A newcomer's first `mmrobust run`: wall time, training and evaluation time, peak memory.

    python benchmarks/speed/first_run.py --jobs default 1        # this checkout, default jobs then --jobs 1
    python benchmarks/speed/first_run.py --jobs 1 --mmrobust OTHER/.venv/bin/mmrobust --label before

Each variant runs `mmrobust run --out DIR [--jobs N]` in a fresh folder, as the README says (the
default digits preset, default threads), with nothing else on the machine. Peak memory is sampled
from /proc every 0.2 s: the largest single process and the sum over the run's process tree (the
workers included). The training and evaluation times come from the run's provenance.json; the
sha256 of results.jsonl shows whether two variants recorded the same numbers. One JSON line per
variant is printed and appended to ``benchmarks/speed/results/first-run.jsonl``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=["default", "1"], help="'default' or a number, one run each")
    parser.add_argument("--mmrobust", default=shutil.which("mmrobust") or str(Path(sys.executable).with_name("mmrobust")),
                        help="the command to time (default: this environment's)")
    parser.add_argument("--label", default="this checkout", help="what the command is (e.g. before)")
    parser.add_argument("--commit", default=None, help="the commit the command runs (default: this checkout's)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the (last) run's folder here (for benchmarks/predict)")
    args = parser.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=HERE).stdout.strip()
    for jobs in args.jobs:
        record({"label": args.label, "commit": commit, "jobs": jobs, **first_run(args.mmrobust, jobs, args.keep),
                **machine()})


def first_run(command: str, jobs: str, keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [command, "run", "--out", str(out)] + ([] if jobs == "default" else ["--jobs", jobs])
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peaks = {"process": 0, "tree": 0}
        sampler = threading.Thread(target=sample_memory, args=(process, peaks), daemon=True)
        sampler.start()
        _, err = process.communicate()
        wall = time.perf_counter() - started
        sampler.join()
        if process.returncode:
            raise SystemExit(f"{' '.join(argv)} failed:\n{err[-3000:]}")
        commands = {c["command"]: c["seconds"] for c in json.loads((out / "provenance.json").read_text())["commands"]}
        threads = json.loads((out / "provenance.json").read_text())["environment"].get("torch_threads")
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(out, keep)
        return {"wall_s": round(wall, 1), "train_s": commands.get("train"), "evaluate_s": commands.get("evaluate"),
                "peak_process_mb": round(peaks["process"] / 2**20), "peak_tree_mb": round(peaks["tree"] / 2**20),
                "threads": threads, "workers": "worker processes" in err,
                "results_sha256": hashlib.sha256((out / "results.jsonl").read_bytes()).hexdigest()[:16]}


def sample_memory(process: subprocess.Popen, peaks: dict) -> None:
    """The largest resident set of one process and of the whole tree under ``process``, until it ends."""
    while process.poll() is None:
        sizes = [rss(pid) for pid in tree(process.pid)]
        peaks["process"] = max(peaks["process"], max(sizes, default=0))
        peaks["tree"] = max(peaks["tree"], sum(sizes))
        time.sleep(0.2)


def tree(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}


def record(values: dict) -> None:
    print(json.dumps(values), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "first-run.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(values) + "\n")


if __name__ == "__main__":
    main()
