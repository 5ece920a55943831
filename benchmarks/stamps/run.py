"""The stamps benchmark (image + text + sound with natural gaps) through `mmrobust run --manifest`,
then RESULTS.md from the run folder's report.

    apt-get install tuxpaint-stamps-default
    python benchmarks/stamps/build.py --out data/stamps
    python benchmarks/stamps/run.py --manifest data/stamps/stamps.csv [--render-only]

Every default protocol (the data's own gaps as ``observed``, ``full``, each modality missing, the
sweeps, the 7 presence patterns of ``subsets``, the silent failures of each modality), the
paper's methods, 3 seeds; intervals resample stamp families (``group_column=family``).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from mmrobust.files import write_text

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "main"
SECTIONS = ("## By presence pattern", "## Silent failures", "## UME-MMA: what each presence pattern uses")  # in this order
# (the first holds its subsection "Better than the uni-modal model of what is present?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--seeds", default="0 1 2")
    parser.add_argument("--cache", type=Path, default=Path("data/cache"), help="the feature cache")
    parser.add_argument("--render-only", action="store_true", help="rebuild RESULTS.md from the saved run")
    args = parser.parse_args()
    command = ["mmrobust", "run", "--manifest", str(args.manifest), "--label", "label", "--out", _relative(OUT),
               "--seeds", *args.seeds.split(), "--set", "data.options.group_column=family",
               "--set", f"data.options.cache_dir={args.cache}"]
    if not args.render_only:
        shutil.rmtree(OUT, ignore_errors=True)  # a fresh run folder (mmrobust run never overwrites one)
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        write_text(OUT / "command.txt", shlex.join(command) + "\n")
        write_text(OUT / "seconds.txt", f"{time.perf_counter() - started:.1f}\n")
    write_text(HERE / "RESULTS.md", render())
    print(HERE / "RESULTS.md")
    return 0


def render() -> str:
    report = (OUT / "report.md").read_text()
    head = report.split("\n## ", 1)[0].split("\n", 2)[2]  # the report's opening: what the numbers are, the main table
    parts = [section(report, title) for title in SECTIONS]
    return "\n".join([
        "# Stamps benchmark (image + text + sound, natural gaps, pre-trained encoders, offline)", "",
        (HERE / "ABOUT.md").read_text().strip(), "",
        f"Command: `{(OUT / 'command.txt').read_text().strip()}`  ",
        f"Time: {float((OUT / 'seconds.txt').read_text()) / 60:.1f} min wall for the whole run. "
        f"Machine: {_machine()}.", "",
        "## The run's report (`results/main/report.md`)", "", head.strip(), "", *[p for p in parts if p]]) + "\n"


def section(report: str, title: str) -> str:
    """A report section from its heading to the next heading of its level or above."""
    start = report.find(title)
    if start < 0:
        return ""
    level = title.split(" ", 1)[0]
    rest = report[start + len(title):]
    end = re.search(rf"\n#{{1,{len(level)}}} ", rest)
    return (title + (rest[:end.start()] if end else rest)).strip() + "\n"


def _machine() -> str:
    import json

    env = json.loads((OUT / "provenance.json").read_text()).get("environment", {})
    return (f"code at commit {str(env.get('git_commit'))[:10]}; "
            f"{env.get('cpu_model', 'CPU model not recorded')} ({env.get('cpu_count')} cores), device "
            f"`{env.get('device')}`, {env.get('torch_threads')} torch thread(s), torch {env.get('packages', {}).get('torch')}")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
