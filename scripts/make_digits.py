"""Build the embedded `digits` dataset: a small AV-MNIST from real MNIST digits, and spoken digits
both synthesised with espeak-ng and recorded by people (the Free Spoken Digit Dataset).

    python scripts/make_digits.py --mnist ../shared/data/mnist --fsdd ../shared/data/fsdd/recordings \
        --out src/mmrobust/data/files/digits.npz

Images: real MNIST digits, degraded by a centred PCA fitted on the training images, keeping
the leading components up to ``--pca-energy`` of the energy; stored as PCA coefficients, and
as the 8-bit pictures themselves (what the input gate reads: ``--add-raw-images`` adds them to
a file built before they were kept, leaving every other array as it was).
Audio: each of the words "zero".."nine" spoken by espeak-ng voices (an English accent x a voice
variant, random speed and pitch per clip) and every Free Spoken Digit recording (6 speakers x 10
digits x 50 takes; speakers split as ``FSDD_SPEAKERS``: george and lucas only in the test split),
white noise at ``--snr-db``, as ``digits``-preset log mel spectrograms (32 x 32), quantised to 8
bits; each clip stored once and paired with images of the same digit (a random clip of the
split's pool, synthetic and recorded mixed) through an index array. Voice *variants* and
speakers are disjoint between splits; no MNIST image appears in two splits. Needs espeak-ng on
the PATH.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mmrobust.audio import add_noise, get_preset, spectrogram
from mmrobust.media import read_audio
from mmrobust.data.avmnist import fit_pca
from mmrobust.data.idx import load_mnist
from mmrobust.files import atomic_path

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "klatt3", "klatt4", "Alex", "Andy", "Annie", "adam", "belinda", "benjamin", "david", "ed", "edward",
            "john", "linda", "max", "michel", "paul", "quincy", "rob", "robert", "steph", "travis", "victor",
            "grandma", "grandpa", "norbert", "shelby", "zac", "anika", "Andrea", "aunty"]
SPLIT_VARIANTS = {"train": 45, "val": 0, "test": 0}  # synthetic voices train only; val and test are people
FSDD_SPEAKERS = {"train": ["jackson", "nicolas", "theo"], "val": ["yweweler"], "test": ["george", "lucas"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.add_raw_images:
        return add_raw_images(args.out, args.mnist)
    if args.fsdd is None:
        raise SystemExit("--fsdd: the Free Spoken Digit Dataset's recordings folder is needed to build the dataset")
    rng = np.random.default_rng(args.seed)
    variants = split_variants(rng)
    clips = synthesise_all(variants, ACCENTS[: args.accents], rng) + read_recordings(args.fsdd)
    spec, clip_meta = clips_to_spectrograms(clips, args.snr_db, args.seed, args.real_snr_db)
    images = split_images(args.mnist, {"train": args.n_train, "val": args.n_val, "test": args.n_test}, rng)
    arrays = {**quantise(spec), **pca_arrays(images, args.pca_energy)}
    for split, (_, labels, mnist_index) in images.items():
        arrays[f"{split}_label"] = labels.astype(np.uint8)
        arrays[f"{split}_mnist_index"] = mnist_index.astype(np.int32)
        arrays[f"{split}_audio_index"] = pair_clips(labels, clip_meta, split, rng)
    arrays["clip_label"] = np.array([c["digit"] for c in clip_meta], dtype=np.uint8)
    meta = describe(args, variants, clip_meta, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    print(json.dumps({k: meta[k] for k in ("sizes", "clips", "pca")}, indent=1))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", type=Path, required=True, help="folder with the MNIST IDX files (.gz or plain)")
    p.add_argument("--fsdd", type=Path, help="the Free Spoken Digit Dataset's recordings folder (needed to build)")
    p.add_argument("--add-raw-images", action="store_true",
                   help="add the 8-bit pictures to an existing --out (rows from its <split>_mnist_index), nothing else changed")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--snr-db", type=float, default=-9.0, help="white-noise SNR of the audio, in dB")
    p.add_argument("--real-snr-db", type=float, default=None,
                   help="white-noise SNR of the recorded (FSDD) clips, in dB (default: none, the recordings as they are)")
    p.add_argument("--pca-energy", type=float, default=0.34, help="share of the image energy kept by PCA")
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--accents", type=int, default=len(ACCENTS), help="use the first N accents (fewer clips, for tests)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def split_variants(rng: np.random.Generator) -> dict[str, list[str]]:
    order = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
    out, start = {}, 0
    for split, k in SPLIT_VARIANTS.items():
        out[split], start = sorted(order[start:start + k]), start + k
    return out


def synthesise_all(variants: dict[str, list[str]], accents: list[str], rng: np.random.Generator) -> list[dict]:
    jobs = [
        {"split": split, "source": "espeak-ng", "accent": accent, "variant": variant, "digit": digit,
         "speed": int(rng.integers(140, 221)), "pitch": int(rng.integers(20, 81))}
        for split, names in variants.items() for variant in names for accent in accents for digit in range(10)
    ]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as pool:
        waves = list(pool.map(lambda job: synthesise(job[1], Path(tmp) / f"{job[0]}.wav"), enumerate(jobs)))
    for job, (wave, rate) in zip(jobs, waves):
        job["wave"], job["rate"] = wave, rate
    return jobs


def read_recordings(folder: Path) -> list[dict]:
    """Every Free Spoken Digit recording (``<digit>_<speaker>_<take>.wav``), in its speaker's split."""
    clips = []
    for split, speakers in FSDD_SPEAKERS.items():
        for speaker in speakers:
            for digit in range(10):
                for take in range(50):
                    path = folder / f"{digit}_{speaker}_{take}.wav"
                    if not path.is_file():
                        raise FileNotFoundError(f"{path}: missing; --fsdd must hold all 3,000 FSDD recordings")
                    wave, rate = read_audio(path)
                    clips.append({"split": split, "source": "fsdd", "speaker": speaker, "take": take, "digit": digit,
                                  "wave": wave, "rate": rate})
    return clips


def synthesise(job: dict, path: Path):
    voice = f"{job['accent']}+{job['variant']}"
    cmd = ["espeak-ng", "-v", voice, "-s", str(job["speed"]), "-p", str(job["pitch"]), "-w", str(path), WORDS[job["digit"]]]
    subprocess.run(cmd, check=True, capture_output=True)
    return read_audio(path)


def clips_to_spectrograms(clips: list[dict], snr_db: float, seed: int, real_snr_db: float | None = None):
    preset = get_preset("digits")
    spec = np.stack([
        spectrogram(c["wave"] if c["source"] == "fsdd" and real_snr_db is None
                    else add_noise(c["wave"], snr_db if c["source"] != "fsdd" else real_snr_db, np.random.default_rng([seed, i])),
                    c["rate"], preset)
        for i, c in enumerate(clips)
    ])
    meta = [{k: v for k, v in c.items() if k not in ("wave", "rate")} for c in clips]
    return spec, meta


def quantise(spec: np.ndarray) -> dict[str, np.ndarray]:
    lo, hi = float(np.percentile(spec, 0.1)), float(np.percentile(spec, 99.9))
    q = np.round((np.clip(spec, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    return {"clip_spectrogram": q, "spectrogram_range": np.array([lo, hi], dtype=np.float32)}


def split_images(mnist: Path, sizes: dict[str, int], rng: np.random.Generator):
    train_x, train_y = load_mnist(mnist, "train")
    test_x, test_y = load_mnist(mnist, "test")
    order = rng.permutation(len(train_x))
    tr, va = order[: sizes["train"]], order[sizes["train"]: sizes["train"] + sizes["val"]]
    te = rng.permutation(len(test_x))[: sizes["test"]]
    return {"train": (train_x[tr], train_y[tr], tr), "val": (train_x[va], train_y[va], va), "test": (test_x[te], test_y[te], te)}


def pca_arrays(images, energy: float) -> dict[str, np.ndarray]:
    """Centred PCA on the training images; keep the leading components up to ``energy``."""
    mean, components, kept = fit_pca(images["train"][0], energy)
    out = {"pca_mean": mean.astype(np.float32), "pca_components": components.astype(np.float32),
           "pca_energy_kept": np.array([kept], dtype=np.float32)}
    for split, (x, _, _) in images.items():
        out[f"{split}_image_coef"] = ((x.reshape(len(x), -1) - mean) @ components.T).astype(np.float32)
    return {**out, **raw_image_arrays(images)}


def raw_image_arrays(images) -> dict[str, np.ndarray]:
    """Each split's pictures as MNIST has them (8-bit, 28 x 28): the projection above keeps 5 numbers
    of a picture and a black one projects close to a thin digit; the input gate reads these."""
    return {f"{split}_image_raw": np.asarray(x, dtype=np.uint8).reshape(len(x), 28, 28) for split, (x, _, _) in images.items()}


def add_raw_images(out: Path, mnist: Path) -> int:
    """``out`` with each split's MNIST pictures added, checked against its stored PCA coefficients."""
    with np.load(out, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    sources = {"train": load_mnist(mnist, "train")[0], "test": load_mnist(mnist, "test")[0]}
    images = {split: (sources["test" if split == "test" else "train"][arrays[f"{split}_mnist_index"]], None, None)
              for split in ("train", "val", "test")}
    for split, (x, _, _) in images.items():
        coef = (x.reshape(len(x), -1).astype(np.float32) - arrays["pca_mean"]) @ arrays["pca_components"].T
        if not np.allclose(coef, arrays[f"{split}_image_coef"], atol=0.01):
            raise SystemExit(f"{out}: {split}: the MNIST rows of {split}_mnist_index do not give its stored coefficients")
    arrays.update(raw_image_arrays(images))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    print(f"wrote {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")
    return 0


def pair_clips(labels: np.ndarray, clip_meta: list[dict], split: str, rng: np.random.Generator) -> np.ndarray:
    """Each image gets a random clip of the same digit from its split's clips."""
    index = np.empty(len(labels), dtype=np.int32)
    for digit in range(10):
        pool = np.array([i for i, c in enumerate(clip_meta) if c["split"] == split and c["digit"] == digit])
        rows = np.flatnonzero(labels == digit)
        index[rows] = rng.choice(pool, size=len(rows))
    return index


def describe(args, variants, clip_meta, arrays) -> dict:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "name": "digits", "seed": args.seed, "espeak_ng": version, "accents": ACCENTS[: args.accents], "variants": variants,
        "speakers": FSDD_SPEAKERS, "fsdd": "Free Spoken Digit Dataset (Jackson et al.), CC BY-SA 4.0, all 3,000 recordings",
        "words": WORDS, "snr_db": args.snr_db, "audio_front_end": get_preset("digits").to_dict(),
        "sizes": {s: int(len(arrays[f"{s}_label"])) for s in ("train", "val", "test")},
        "clips": {s: {source: sum(c["split"] == s and c["source"] == source for c in clip_meta)
                      for source in ("espeak-ng", "fsdd")} for s in SPLIT_VARIANTS},
        "clip_settings": [{k: v for k, v in c.items() if k not in ("split", "digit")} for c in clip_meta],
        "pca": {"energy_target": args.pca_energy, "components": int(len(arrays["pca_components"])),
                "energy_kept": float(arrays["pca_energy_kept"][0]), "fitted_on": "training images"},
        "mnist_files_md5": {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(Path(args.mnist).glob("*ubyte*"))},
    }


if __name__ == "__main__":
    sys.exit(main())
