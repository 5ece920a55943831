"""A camera that fails silently, on real files: a run's ``model/`` answers the real recordings of
the embedded data's held-out speakers (george, lucas), alone and beside a broken image (black,
white, uniform noise; 28 x 28 grey PNG files), with the input gate on and off. What
``mmrobust predict`` does with those files (``Predictor.predict`` on the paths, in one process).

    python benchmarks/predict/broken_camera.py RUN_DIR --fsdd ../shared/data/fsdd/recordings [--n 150] [--record]

``--record`` appends the table to ``RESULTS.md`` beside this script.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from real_inputs import held_out_recordings  # noqa: E402  (the same recordings as that benchmark)

IMAGES = {"black": lambda rng: np.zeros((28, 28)), "white": lambda rng: np.full((28, 28), 255.0),
          "noise": lambda rng: rng.uniform(0, 255, (28, 28))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--fsdd", type=Path, required=True)
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)

    import torch
    from PIL import Image

    from mmrobust import Predictor
    from mmrobust.provenance import cpu_model, git_commit

    predictor = Predictor.load(args.run_dir / "model")
    recordings = held_out_recordings(args.fsdd, args.n)
    labels = np.array([label for _, label in recordings])
    rows = [("the recording alone (image declared missing)", None, True)]
    rows += [(f"{name} image + the recording, gate {'on' if gate else 'off'}", name, gate)
             for name in IMAGES for gate in (False, True)]
    lines = ["| input | accuracy % | image ignored % | answered by |", "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for text, image, gate in rows:
            samples = []
            for i, (wav, _) in enumerate(recordings):
                sample = {"audio": str(wav)}
                if image is not None:
                    path = Path(tmp) / f"{image}-{i}.png"
                    Image.fromarray(IMAGES[image](rng).astype(np.uint8), mode="L").save(path)
                    sample["image"] = str(path)
                samples.append(sample)
            predictions = predictor.predict(samples, gate=gate)
            accuracy = 100 * np.mean([p.label == str(y) for p, y in zip(predictions, labels)])
            ignored = 100 * np.mean(["image" in p.ignored for p in predictions]) if image is not None else 0.0
            answered = ", ".join(f"{k} {v}" for k, v in Counter(p.answered_by for p in predictions).most_common())
            lines.append(f"| {text} | {accuracy:.1f} | {ignored:.1f} | {answered} |")
    header = (f"\n## Broken camera, {args.n} held-out recordings (commit `{git_commit()[:10]}`)\n\n"
              f"`python benchmarks/predict/broken_camera.py {args.run_dir} --fsdd {args.fsdd} --n {args.n}`; "
              f"{cpu_model()}, {torch.get_num_threads()} torch thread(s), CPU.\n\n")
    text = header + "\n".join(lines) + "\n"
    print(text)
    if args.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
