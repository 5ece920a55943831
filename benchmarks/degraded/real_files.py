"""Degraded recordings through a saved model, as a user's files reach it: the held-out speakers'
real WAVs (george, lucas: never in training) degraded by each audio corruption at severities 1-5
(``mmrobust.corruptions``, at the file's own rate, written as float WAVs), each paired with a real
MNIST test picture of the same digit; ``Predictor.predict`` with the gate, without it, and with the
recording left out (*declared*). The digits keep spectrograms, not waveforms, so the run's
``corrupt:`` protocol cannot degrade their audio; this is how the audio kinds are measured.

    OMP_NUM_THREADS=1 python benchmarks/degraded/real_files.py MODEL_DIR --mnist ../shared/data/mnist \\
        --fsdd ../shared/data/fsdd/recordings [--n 300]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predict"))

from real_inputs import held_out_recordings  # noqa: E402  (the held-out speakers' recordings)

from mmrobust.corruptions import AUDIO, SEVERITIES, corrupt_clip  # noqa: E402
from mmrobust.media import read_audio  # noqa: E402
from mmrobust.predictor import Predictor  # noqa: E402


def paired_pictures(mnist: Path, labels: list[int], folder: Path, seed: int = 0) -> list[Path]:
    """For each label, a real MNIST test picture of that digit (at random), written as a PNG."""
    from PIL import Image

    from mmrobust.data.idx import load_mnist

    images, digits = load_mnist(mnist, "test")
    rng = np.random.default_rng(seed)
    out = []
    for i, label in enumerate(labels):
        row = rng.choice(np.flatnonzero(digits == label))
        path = folder / f"picture-{i}.png"
        Image.fromarray(images[row].astype(np.uint8), mode="L").save(path)
        out.append(path)
    return out


def score(predictor: Predictor, rows: list[dict], labels: list[int], gate: bool) -> tuple[float, float]:
    predictions = predictor.predict(rows, gate=gate)
    right = np.mean([int(p.label) == y for p, y in zip(predictions, labels)])
    return float(right), float(np.mean(["audio" in p.ignored for p in predictions]))


def main() -> None:
    import soundfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--mnist", type=Path, required=True)
    parser.add_argument("--fsdd", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    predictor = Predictor.load(args.model_dir)
    recordings = held_out_recordings(args.fsdd, args.n)
    labels = [label for _, label in recordings]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pictures = paired_pictures(args.mnist, labels, folder)
        declared, _ = score(predictor, [{"image": str(p)} for p in pictures], labels, gate=True)
        clean = [{"image": str(p), "audio": str(w)} for p, (w, _) in zip(pictures, recordings)]
        ungated, _ = score(predictor, clean, labels, gate=False)
        gated, alarms = score(predictor, clean, labels, gate=True)
        print(f"{args.model_dir}: {len(labels)} held-out recordings, each with an MNIST test picture of its digit.\n")
        print(f"Clean: ungated {100 * ungated:.1f}, gated {100 * gated:.1f}, picture alone (declared) {100 * declared:.1f}; "
              f"clean recordings ignored {100 * alarms:.1f}%.\n")
        print("| kind | severity | ungated | gated | declared | recordings ignored % |\n|---|---:|---:|---:|---:|---:|")
        rng = np.random.default_rng(0)
        waves = [read_audio(w) for w, _ in recordings]
        for kind in AUDIO:
            for severity in SEVERITIES:
                rows = []
                for i, ((wave, rate), picture) in enumerate(zip(waves, pictures)):
                    path = folder / f"{kind}-{severity}-{i}.wav"
                    soundfile.write(path, corrupt_clip(wave, rate, kind, severity, rng), rate, subtype="FLOAT")
                    rows.append({"image": str(picture), "audio": str(path)})
                u, _ = score(predictor, rows, labels, gate=False)
                g, ignored = score(predictor, rows, labels, gate=True)
                print(f"| {kind} | {severity} | {100 * u:.1f} | {100 * g:.1f} | {100 * declared:.1f} | {100 * ignored:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
