"""After `mutmut run` (docs/mutation-testing.md): the score per module, and each surviving
mutant with the lines it changes, so that each can be killed by a test or written down as
equivalent. Run from the repository root, in the environment mutmut ran in:

    python scripts/mutation_survivors.py              # scores, then every survivor's diff
    python scripts/mutation_survivors.py --scores     # the scores only
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

STATUS = re.compile(r"^\s*(mmrobust\.\S+): (.+)$")


def results() -> dict[str, str]:
    """mutant name -> status (killed, survived, no tests, timeout, ...)."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    return {m.group(1): m.group(2).strip() for m in map(STATUS.match, out.splitlines()) if m}


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def diff(name: str) -> list[str]:
    out = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line[:2] in ("- ", "+ ")]


def main(argv: list[str]) -> int:
    status = results()
    per_module: dict[str, Counter] = defaultdict(Counter)
    for name, state in status.items():
        per_module[module_of(name)][state] += 1
    print(f"{'module':34} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>6} {'score':>6}")
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        other = total - counts["killed"] - counts["survived"] - counts["no tests"]
        print(f"{module:34} {total:7} {counts['killed']:7} {counts['survived']:8} {counts['no tests']:8} {other:6} "
              f"{100 * counts['killed'] / total:5.1f}%")
    if "--scores" in argv:
        return 0
    for name, state in sorted(status.items()):
        if state in ("survived", "no tests"):
            print(f"\n== {name} ({state})")
            print("\n".join(diff(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
