"""Does a run's model answer real inputs as well as its report says? ``mmrobust predict`` on real
MNIST test digits written as PNG files (image only) and on the real recordings of the embedded
data's held-out test speakers, george and lucas (audio only), against the run's own test
accuracy of each uni-modal model (mean over seeds) and of UME-MMA with the other modality
missing (the model's seed).

    python benchmarks/predict/real_inputs.py RUN_DIR --mnist ../shared/data/mnist \\
        --fsdd ../shared/data/fsdd/recordings [--n 1000] [--record]

``--record`` appends the result to ``RESULTS.md`` beside this script.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEST_SPEAKERS = ("george", "lucas")


def real_digit_pngs(mnist: Path, folder: Path, n: int, seed: int = 0) -> list[tuple[Path, int]]:
    """``n`` MNIST test digits, chosen at random, each written as an 8-bit grey PNG."""
    from PIL import Image

    from mmrobust.data.idx import load_mnist

    images, labels = load_mnist(mnist, "test")
    rows = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
    out = []
    for row in rows:
        path = folder / f"mnist-test-{row}.png"
        Image.fromarray(images[row].astype(np.uint8), mode="L").save(path)
        out.append((path, int(labels[row])))
    return out


def held_out_recordings(fsdd: Path, n: int, seed: int = 0) -> list[tuple[Path, int]]:
    """``n`` recordings of the held-out speakers (``<digit>_<speaker>_<take>.wav``), at random."""
    paths = sorted(p for s in TEST_SPEAKERS for p in fsdd.glob(f"*_{s}_*.wav"))
    if not paths:
        raise SystemExit(f"{fsdd}: no recordings of {', '.join(TEST_SPEAKERS)}")
    chosen = np.random.default_rng(seed).choice(len(paths), size=min(n, len(paths)), replace=False)
    return [(paths[i], int(paths[i].name.split("_")[0])) for i in sorted(chosen)]


def accuracy(predictor, modality: str, items: list[tuple[Path, int]]) -> float:
    predictions = predictor.predict([{modality: str(path)} for path, _ in items])
    return float(np.mean([int(p.label) == label for p, (_, label) in zip(predictions, items)]))


def reported(run_dir: Path, seed: int) -> dict[str, float]:
    """The run's test accuracies: each uni-modal model (mean over seeds) and UME-MMA with only
    that modality (the model's seed)."""
    from mmrobust.records import read_jsonl

    records = [r for r in read_jsonl(run_dir / "results.jsonl") if r["metric"] == "accuracy" and r["rate"] is None]
    out = {}
    for modality, other in (("image", "audio"), ("audio", "image")):
        out[f"unimodal:{modality}"] = float(np.mean([r["value"] for r in records if r["method"] == f"unimodal:{modality}"
                                                     and r["protocol"] == "full"]))
        out[f"ume-mma, {modality} only"] = next(r["value"] for r in records if r["method"] == "ume-mma"
                                                 and r["protocol"] == f"miss:{other}" and r["seed"] == seed)
    return out


def measure(run_dir: Path, mnist: Path, fsdd: Path, n: int) -> dict:
    from mmrobust import Predictor

    predictor = Predictor.load(run_dir / "model")
    seed = predictor.method.seed
    with tempfile.TemporaryDirectory() as tmp:
        image = accuracy(predictor, "image", real_digit_pngs(mnist, Path(tmp), n))
    audio = accuracy(predictor, "audio", held_out_recordings(fsdd, n))
    return {"predict": {"image": image, "audio": audio}, "report": reported(run_dir, seed), "seed": seed, "n": n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--mnist", type=Path, required=True)
    p.add_argument("--fsdd", type=Path, required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    result = measure(args.run_dir, args.mnist, args.fsdd, args.n)
    print(json.dumps(result, indent=1))
    if args.record:
        import torch

        from mmrobust.provenance import git_commit

        lines = [f"## {args.run_dir.name}", "",
                 f"Command: `python benchmarks/predict/real_inputs.py {args.run_dir} --mnist {args.mnist} --fsdd {args.fsdd} "
                 f"--n {args.n} --record`; code: commit {git_commit() or 'not a git checkout'}; machine: "
                 f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s).", "",
                 "| modality | `predict` on real files | the report: uni-modal model (mean over seeds) | the report: UME-MMA, "
                 "that modality only (same seed) |", "|---|---:|---:|---:|"]
        for modality, what in (("image", f"{args.n} MNIST test digits as PNG"),
                               ("audio", f"{min(args.n, 1000)} recordings of george and lucas (held-out speakers)")):
            lines.append(f"| {modality}: {what} | {100 * result['predict'][modality]:.1f} | "
                         f"{100 * result['report'][f'unimodal:{modality}']:.1f} | "
                         f"{100 * result['report'][f'ume-mma, {modality} only']:.1f} |")
        path = HERE / "RESULTS.md"
        text = path.read_text(encoding="utf-8") if path.is_file() else "# `mmrobust predict` on real inputs\n\n"
        head, _, rest = text.partition(lines[0] + "\n")  # a section of the same run is replaced
        rest = rest[rest.index("\n## "):].lstrip("\n") if "\n## " in rest else ""
        path.write_text(head + "\n".join(lines) + "\n\n" + rest, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
