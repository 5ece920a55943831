"""Build the stamps benchmark: a real three-modality set with natural gaps, from Debian's
``tuxpaint-stamps-default`` (Tux Paint's stamps, GPL-2+), read as the package installs it.

Each stamp is a row: its drawing (``<name>.png``; a stamp shipped only as SVG has no picture, a
natural gap), its English description (the first line of ``<name>.txt``, the others being
translations ``<lang>.utf8=...``) and its sound effect (``<name>.ogg``, exactly as shipped; most
stamps have none). The label is the stamp's top-level category (16 of them; ``cartoon`` has no
descriptions and is left out). ``family`` names the stamp's folder (the letters of one alphabet,
the coins of one country): rows that share one are near-duplicates, and intervals resample them
together (``--set data.options.group_column=family``).

    apt-get install tuxpaint-stamps-default
    python benchmarks/stamps/build.py --out data/stamps          # -> data/stamps/stamps.csv

The manifest names the installed files by absolute path; nothing is copied.
"""
from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from pathlib import Path

STAMPS = Path("/usr/share/tuxpaint/stamps")
TRANSLATION = re.compile(r"^[A-Za-z_@]+\.utf8=")


def english_description(path: Path) -> str | None:
    """The first line of a stamp's ``.txt`` that is not a translation, whitespace folded."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() and not TRANSLATION.match(line.strip()):
            return " ".join(line.split())
    return None


def stamp_rows(stamps: Path) -> list[dict[str, str]]:
    rows = []
    for txt in sorted(stamps.rglob("*.txt")):
        stem = txt.with_suffix("")
        text = english_description(txt)
        if text is None:
            continue
        relative = stem.relative_to(stamps)
        picture, sound = stem.with_suffix(".png"), stem.with_suffix(".ogg")
        rows.append({"id": relative.as_posix(), "image": str(picture) if picture.is_file() else "",
                     "sound": str(sound) if sound.is_file() else "", "text": text,
                     "family": relative.parent.as_posix(), "label": relative.parts[0]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stamps", type=Path, default=STAMPS, help=f"the installed stamps (default {STAMPS})")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write stamps.csv to")
    args = parser.parse_args()
    if not args.stamps.is_dir():
        raise SystemExit(f"{args.stamps}: not found; install Debian's tuxpaint-stamps-default")
    rows = stamp_rows(args.stamps)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "stamps.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    present = {m: sum(bool(r[m]) for r in rows) for m in ("image", "sound", "text")}
    print(f"{args.out / 'stamps.csv'}: {len(rows)} stamps, {len(Counter(r['label'] for r in rows))} classes; "
          f"present: {present}")
    print("classes: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["label"] for r in rows).items())))


if __name__ == "__main__":
    main()
