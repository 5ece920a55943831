"""A strong text, weak image manifest from the emoji set: is the person a man, a woman or neither?

    python benchmarks/emoji/gender.py --emoji data/emoji/emoji.csv   # writes data/emoji/gender.csv

The text names the label almost directly (*woman technologist: dark skin tone*), the 96-pixel
picture shows it only through hair, beard and clothes. Rows: every emoji whose name (before a skin
tone) holds exactly one of *man*, *woman*, *person* and no other people word, from families that
have at least two of these variants; label: that word. The split is the emoji set's own (by
family: the variants of one emoji never straddle splits), and the family is the ``group`` column,
so bootstrap intervals resample families.
"""
from __future__ import annotations

import argparse
import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

PEOPLE_WORDS = re.compile(r"\b(man|woman|person|men|women|people|boy|girl|child|adult|older|old|baby)\b")
LABELS = ("man", "woman", "person")


def gender_of(name: str) -> str | None:
    """``man``, ``woman`` or ``person`` when the name (before a skin tone) has exactly that one people word."""
    base = name.split(":")[0] if "skin tone" in name else name
    words = PEOPLE_WORDS.findall(base)
    return words[0] if len(words) == 1 and words[0] in LABELS and "," not in name else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emoji", type=Path, required=True, help="the emoji.csv written by build.py")
    parser.add_argument("--out", type=Path, default=None, help="default: gender.csv beside --emoji")
    args = parser.parse_args()
    with open(args.emoji, newline="", encoding="utf-8") as f:
        rows = [{**r, "gender": gender_of(r["text"])} for r in csv.DictReader(f)]
    variants = defaultdict(set)
    for r in rows:
        if r["gender"]:
            variants[r["family"]].add(r["gender"])
    kept = [{"id": r["id"], "image": r["image"], "text": r["text"], "gender": r["gender"], "group": r["family"],
             "split": r["split"]} for r in rows if r["gender"] and len(variants[r["family"]]) >= 2]
    out = args.out or args.emoji.with_name("gender.csv")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    counts = Counter((r["split"], r["gender"]) for r in kept)
    print(f"{out}: {len(kept)} rows from {len({r['group'] for r in kept})} families; "
          + ", ".join(f"{s} {sum(v for (sp, _), v in counts.items() if sp == s)}" for s in ("train", "val", "test")))


if __name__ == "__main__":
    main()
