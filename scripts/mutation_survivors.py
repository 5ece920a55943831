"""After `mutmut run` (docs/mutation-testing.md): the score per module, and each surviving
mutant with the lines it changes, so that each can be killed by a test or written down as
equivalent. Run from the repository root, in the environment mutmut ran in:

    python scripts/mutation_survivors.py              # scores, then every survivor's diff
    python scripts/mutation_survivors.py --scores     # the scores only
"""
from __future__ import annotations

import sys
from collections import Counter, defaultdict


def results() -> dict[str, tuple[str, object]]:
    """mutant name -> (status: killed, survived, no tests, timeout, ..., the file it lives in);
    read in this process through mutmut's own records (one process, not one per mutant)."""
    from mutmut.__main__ import SourceFileMutationData, status_by_exit_code, walk_mutatable_files

    out = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        out.update({name: (status_by_exit_code[code], path) for name, code in data.exit_code_by_key.items()})
    return out


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def diff(name: str, path: object) -> list[str]:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return [line for line in get_diff_for_mutant(name, path=path).splitlines()
            if line[:1] in ("-", "+") and line[:3] not in ("---", "+++")]


def main(argv: list[str]) -> int:
    status = results()
    per_module: dict[str, Counter] = defaultdict(Counter)
    for name, (state, _) in status.items():
        per_module[module_of(name)][state] += 1
    print(f"{'module':34} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>6} {'score':>6}")
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        other = total - counts["killed"] - counts["survived"] - counts["no tests"]
        print(f"{module:34} {total:7} {counts['killed']:7} {counts['survived']:8} {counts['no tests']:8} {other:6} "
              f"{100 * counts['killed'] / total:5.1f}%")
    if "--scores" in argv:
        return 0
    for name, (state, path) in sorted(status.items()):
        if state in ("survived", "no tests"):
            print(f"\n== {name} ({state})")
            print("\n".join(diff(name, path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
