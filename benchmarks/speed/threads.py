"""How many torch threads to train with on a shared CPU: one epoch of a LeNet pair (late fusion on
the embedded digits, 5,000 rows, batch 64) with 1 and with N threads, on an otherwise idle machine
and beside a competing busy process (one Python loop spinning on a core), wall and CPU seconds;
and the start-up time of ``mmrobust --help``. One JSON line per measurement in
``results/threads.jsonl``.

    python benchmarks/speed/threads.py --repeats 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def spin(stop) -> None:  # the competing load: a busy process that never sleeps
    while not stop.is_set():
        pass


def one_epoch(threads: int) -> dict:
    """Wall and CPU seconds of one training epoch with ``threads`` torch threads (own process)."""
    code = f"""
import json, time, torch
torch.set_num_threads({threads})
import mmrobust as mm
data = mm.DATASETS.create("digits")
method = mm.create_method("late-fusion", encoders=data.encoders, num_classes=10, seed=0,
                          train_config=mm.TrainConfig(epochs=1, batch_size=64, device="cpu", threads={threads}))
wall, cpu = time.perf_counter(), time.process_time()
method.fit(data.train, None)
print(json.dumps({{"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def help_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mmrobust", "--help"], capture_output=True, check=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    args = p.parse_args(argv)
    lines = []
    for repeat in range(args.repeats):
        lines.append({"what": "mmrobust --help", "repeat": repeat, "wall_s": help_seconds()})
        for load in ("idle", "one busy process"):
            stop = multiprocessing.Event()
            competitor = multiprocessing.Process(target=spin, args=(stop,)) if load != "idle" else None
            if competitor:
                competitor.start()
            try:
                for threads in args.threads:
                    lines.append({"what": "late-fusion epoch", "load": load, "threads": threads, "repeat": repeat,
                                  "cpu_count": os.cpu_count(), **one_epoch(threads)})
                    print(json.dumps(lines[-1]), flush=True)
            finally:
                if competitor:
                    stop.set()
                    competitor.join()
    with open(HERE / "results" / "threads.jsonl", "a", encoding="utf-8") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
