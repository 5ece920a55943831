"""The README's headline table, backed by committed records: ``mmrobust run`` on the embedded
digits (the default config: 3 seeds, every paper method, every default protocol), its run folder
kept under ``results/run`` (records, fits, config, provenance, report; the weights and masks are
not committed), and the tables rendered from those records into ``RESULTS.md`` and the README.

    OMP_NUM_THREADS=1 python benchmarks/digits/run.py     # train and evaluate, then render
    python benchmarks/digits/run.py --render-only         # re-render from the committed records

Results depend on the torch thread count (the order of floating-point sums); the recorded run
names its own in ``provenance.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mmrobust.files import write_text
from mmrobust.records import main_table, read_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUN = HERE / "results" / "run"
README_BLOCK = re.compile(r"(<!-- digits-table: start -->\n).*?(<!-- digits-table: end -->)", re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render-only", action="store_true", help="re-render from the committed records")
    args = parser.parse_args()
    if not args.render_only:
        shutil.rmtree(RUN, ignore_errors=True)
        command = ["mmrobust", "run", "--out", str(RUN.relative_to(ROOT))]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        write_text(RUN / "command.txt", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {' '.join(command)}\n")
        write_text(RUN / "seconds.txt", f"{time.perf_counter() - started:.1f}\n")
        for kept_out in ("models", "masks", "model"):
            shutil.rmtree(RUN / kept_out, ignore_errors=True)
    table = main_table(read_jsonl(RUN / "results.jsonl"))
    write_text(HERE / "RESULTS.md", render(table))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    write_text(ROOT / "README.md", README_BLOCK.sub(lambda m: m.group(1) + "\n".join(table) + "\n" + m.group(2), readme))
    shutil.copyfile(RUN / "robustness.png", ROOT / "docs" / "img" / "digits-robustness.png")
    print(HERE / "RESULTS.md")
    return 0


def render(table: list[str]) -> str:
    provenance = json.loads((RUN / "provenance.json").read_text())
    env, config = provenance["environment"], RUN / "config.yaml"
    fits = json.loads((RUN / "fits.json").read_text())
    choices = "; ".join(f"seed {f['seed']}: {f['selected'].upper()} (validation UME {100 * f['val_scores']['ume']:.2f}, "
                        f"MMA {100 * f['val_scores']['mma']:.2f})" for f in fits if f["method"] == "ume-mma")
    seconds = float((RUN / "seconds.txt").read_text())
    return "\n".join([
        "# Embedded digits: the README's headline table", "",
        f"Command: `{(RUN / 'command.txt').read_text().strip()}` (then `python benchmarks/digits/run.py --render-only` "
        "re-renders this page and the README's table from the records).  ",
        f"Code: commit {env['git_commit']}.  ",
        f"Machine: {env['device_name']}, device `{env['device']}`, {env['cpu_count']} CPUs, {env['torch_threads']} torch "
        f"thread(s), torch {env['packages']['torch']}; {seconds / 60:.1f} min wall.  ",
        f"Config: [{config.relative_to(HERE)}]({config.relative_to(HERE)}); records: "
        "[results/run/results.jsonl](results/run/results.jsonl), fits: [results/run/fits.json](results/run/fits.json), "
        "report: [results/run/report.md](results/run/report.md).", "",
        "Test accuracy in %, mean ± sample std over seeds 0, 1, 2:", "", *table, "",
        f"UME-MMA's choice on validation: {choices}.", ""])


if __name__ == "__main__":
    sys.exit(main())
