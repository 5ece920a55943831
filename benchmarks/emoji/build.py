"""Build the emoji image + text benchmark as an mmrobust manifest (offline, from Debian files).

    python benchmarks/emoji/build.py --out data/emoji [--label subgroup]

Source: Unicode's emoji-test.txt (Debian `unicode-data`, 15.0) gives every fully-qualified emoji
with its name, group and subgroup; the image is rendered with Pillow from Noto Color Emoji
(Debian `fonts-noto-color-emoji`). Rows: image (PNG path), text (the emoji's CLDR name), group,
subgroup, family, split.

Against leakage the split is by *family*, not by emoji: the name with skin tones, gender words
(man / woman / person, men / women / people, boy / girl / child ...) and the word "flag: " removed,
so skin-tone and gender variants of one emoji (near-identical pictures and names) always land in
the same split. Families are split 70/15/15, stratified by label, seed 0.
"""
from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmrobust.data.table import stratified_split

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
LINE = re.compile(r"^(?P<codes>[0-9A-F ]+?)\s*; fully-qualified\s*# (?P<emoji>\S+) E\d+\.\d+ (?P<name>.+)$")
PEOPLE_WORDS = r"\b(man|woman|person|men|women|people|boy|girl|child|adult|older|old|baby)\b"


def read_emoji(path: Path) -> list[dict]:
    rows, group, subgroup = [], None, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := LINE.match(line)) and group != "Component":
            rows.append({"emoji": match["emoji"], "codes": match["codes"].split(), "name": match["name"],
                         "group": group, "subgroup": subgroup})
    return rows


def family(name: str) -> str:
    """The name without skin tone, gender or person words: variants of one emoji share it."""
    base = name.split(":")[0] if "skin tone" in name else name
    base = re.sub(PEOPLE_WORDS, " ", base.replace("flag: ", ""))
    return re.sub(r"\s+", " ", base).strip() or "person"


def render(emoji: str, font: ImageFont.FreeTypeFont, size: int) -> Image.Image | None:
    """The emoji on white, cropped to its ink and resized; None when the font draws nothing."""
    canvas = Image.new("RGBA", (160 * max(1, len(emoji)), 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), emoji, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return square.convert("RGB").resize((size, size), Image.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", choices=("group", "subgroup"), default="subgroup", help="the column to stratify the split by")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    font = ImageFont.truetype(str(FONT), 109)  # Noto Color Emoji is a bitmap font: 109 px only
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    rows, blank = [], 0
    for row in read_emoji(EMOJI_TEST):
        image = render(row["emoji"], font, args.size)
        if image is None or np.asarray(image).std() < 1.0:
            blank += 1
            continue
        name = "-".join(c.lower() for c in row["codes"]) + ".png"
        image.save(args.out / "images" / name, optimize=True)
        rows.append({"id": name[:-4], "image": f"images/{name}", "text": row["name"], "group": row["group"],
                     "subgroup": row["subgroup"], "family": family(row["name"])})
    families = sorted({r["family"] for r in rows})
    label_of = {r["family"]: r[args.label] for r in rows}
    split_of = dict(zip(families, stratified_split([label_of[f] for f in families], args.seed)))
    for row in rows:
        row["split"] = split_of[row["family"]]
    with open(args.out / "emoji.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    print(f"{args.out / 'emoji.csv'}: {len(rows)} emoji ({blank} not drawn by the font), {len(families)} families, "
          f"{len({r['group'] for r in rows})} groups, {len({r['subgroup'] for r in rows})} subgroups; split {counts}")


if __name__ == "__main__":
    main()
