"""The embedded digits, with records committed: the README's headline table (``run``: the
default config, the paper's methods) and the comparison with the strong baselines
(``comparison``: ``--set methods=[comparison]``), each ``mmrobust run`` with 3 seeds, every
default protocol. Each run folder is kept under ``results/<variant>`` (records, fits, config,
provenance, report; not the weights or masks), and the tables are rendered from those records
into ``RESULTS.md`` (and, for ``run``, the README).

    OMP_NUM_THREADS=1 python benchmarks/digits/run.py --variant run        # train and evaluate, then render
    OMP_NUM_THREADS=1 python benchmarks/digits/run.py --variant comparison
    OMP_NUM_THREADS=1 python benchmarks/digits/run.py --variant ogm-ge-authors  # 1.5 min
    python benchmarks/digits/run.py --render-only                           # re-render from the committed records

Results depend on the torch thread count (the order of floating-point sums); each recorded run
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
from mmrobust.records import against_unimodal, choice_text, main_table, read_jsonl, robustness_ranking

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VARIANTS = {"run": [], "comparison": ["--set", "methods=[comparison]", "--set", "gate=off", "--set",
                                      "protocols=[full, miss:audio, miss:image, sweep:audio, sweep:image, subsets]"],
            "ogm-ge-authors": ["--set", "methods=[ogm-ge-authors, late-fusion-concat]", "--set", "gate=off", "--set",
                               "protocols=[full, miss:audio, miss:image, sweep:audio, sweep:image, subsets]"]}
TITLES = {"run": "The README's headline table: the paper's methods (the default `mmrobust run`)",
          "comparison": "The comparison: the paper's methods and the strong baselines (`--set methods=[comparison]`)",
          "ogm-ge-authors": ("`ogm-ge-authors` rerun with its authors' initialisation, beside the concat late fusion it "
                             "modulates (its row in the comparison above predates that initialisation)")}
SHARED = Path(os.environ.get("MMROBUST_SHARED_DATA", ROOT.parent / "shared" / "data"))
README_BLOCK = re.compile(r"(<!-- digits-table: start -->\n).*?(<!-- digits-table: end -->)", re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append", default=None,
                        help="the run(s) to train (default: none with --render-only, else both)")
    parser.add_argument("--render-only", action="store_true", help="re-render from the committed records")
    args = parser.parse_args()
    for variant in ([] if args.render_only else args.variant or list(VARIANTS)):
        train(variant)
    done = [v for v in VARIANTS if (HERE / "results" / v / "results.jsonl").is_file()]
    write_text(HERE / "RESULTS.md", "\n".join(["# Embedded digits", ""] + [line for v in done for line in render(v)]))
    if "run" in done:
        table = main_table(*records_and_evidence("run"))
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        write_text(ROOT / "README.md", README_BLOCK.sub(lambda m: m.group(1) + "\n".join(table) + "\n" + m.group(2), readme))
        shutil.copyfile(HERE / "results" / "run" / "robustness.png", ROOT / "docs" / "img" / "digits-robustness.png")
    print(HERE / "RESULTS.md")
    return 0


def train(variant: str) -> None:
    folder = HERE / "results" / variant
    shutil.rmtree(folder, ignore_errors=True)
    command = ["mmrobust", "run", "--out", str(folder.relative_to(ROOT)), *VARIANTS[variant]]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    write_text(folder / "command.txt", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {' '.join(command)}\n")
    write_text(folder / "seconds.txt", f"{time.perf_counter() - started:.1f}\n")
    if variant == "run" and (SHARED / "mnist").is_dir():  # the model on real files, before its folder goes
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "predict" / "real_inputs.py"), str(folder.relative_to(ROOT)),
                        "--mnist", os.path.relpath(SHARED / "mnist", ROOT),
                        "--fsdd", os.path.relpath(SHARED / "fsdd" / "recordings", ROOT), "--record"],
                       check=True, cwd=ROOT)
    for kept_out in ("models", "masks", "model", "reliability.json"):
        path = folder / kept_out
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def records_and_evidence(variant: str) -> tuple[list[dict], list[dict]]:
    """The run's records, and its bootstrap intervals when it recorded them."""
    folder = HERE / "results" / variant
    evidence = folder / "evidence.jsonl"
    return read_jsonl(folder / "results.jsonl"), read_jsonl(evidence) if evidence.is_file() else []


def render(variant: str) -> list[str]:
    folder = HERE / "results" / variant
    records, evidence = records_and_evidence(variant)
    env = json.loads((folder / "provenance.json").read_text())["environment"]
    fits = json.loads((folder / "fits.json").read_text())
    choices = "; ".join(f"{f['method']}, seed {f['seed']}: {choice_text(f)}" for f in fits if "pattern_choice" in f)
    seconds = float((folder / "seconds.txt").read_text())
    link = f"results/{variant}"
    return [
        f"## {TITLES[variant]}", "",
        f"Command: `{(folder / 'command.txt').read_text().strip()}` (then `python benchmarks/digits/run.py "
        "--render-only` re-renders this page and the README's table from the records).  ",
        f"Code: commit {env['git_commit']}.  ",
        f"Machine: {env.get('cpu_model') or env['device_name'] + ' (CPU model not recorded by this older run)'}{', ' + env['cpu_capability'] if env.get('cpu_capability') else ''}, device `{env['device']}`, {env['cpu_count']} CPUs, {env['torch_threads']} torch "
        f"thread(s), torch {env['packages']['torch']}; {seconds / 60:.1f} min wall.  ",
        f"Config: [{link}/config.yaml]({link}/config.yaml); records: [{link}/results.jsonl]({link}/results.jsonl), "
        f"fits: [{link}/fits.json]({link}/fits.json), report: [{link}/report.md]({link}/report.md).", "",
        "Test accuracy in %, mean ± sample std over seeds 0, 1, 2" + (
            f", and in brackets the 95% bootstrap interval (1000 resamples of the {_unit(evidence)}, seeds averaged "
            "inside each)" if evidence else "") + ":", "", *main_table(records, evidence), "",
        "Ranked by the mean of full and each modality missing (test; the fused models select checkpoints on the "
        "same mean over validation):", "", *robustness_ranking(records), "",
        *(["UME-MMA with the paper's rule and with per-pattern routing beside the best uni-modal model of the "
           "modalities present (same masks and seeds; the paper's seed std is the spread to compare with):", "",
           *against_unimodal(records), ""] if any(r["method"] == "ume-mma-paper" for r in records) else []),
        f"What UME-MMA uses, chosen on validation: {choices}.", ""]


def _unit(evidence: list[dict]) -> str:
    units = {e["unit"] for e in evidence}
    return ("test rows" if units == {"row"} else "groups of test rows that share an audio clip" if units == {"group"}
            else "groups of test rows that share an audio clip where the audio is present, of rows with the image alone")


if __name__ == "__main__":
    sys.exit(main())
