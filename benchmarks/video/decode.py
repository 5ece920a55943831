"""Clips per second through a manifest's video column, against PyAV's decoding alone (issue 37).

Writes ``--clips`` H.264 + AAC MP4 clips (``--seconds`` long, 320 x 240 at 25 fps: the size of
Kinetics' and AVE's downloads after the field's usual resize to a short side of 240), made of
real MNIST digits drifting over a textured background so that the encoder has real work, then
measures on the same files:

- **floor**: PyAV decoding every frame of each clip, one clip after another, with FFmpeg's own
  frame threading (``thread_type = "AUTO"``): what any reader of these files pays;
- **ours, decoding only**: the video column's reader (frames evenly spaced, resized to 224) in
  its worker threads, no extraction;
- **ours, first run**: :func:`mmrobust.data.table.build_splits` on a manifest with the clips as a
  video column (frames evenly spaced, MobileNetV2 per frame, pooled), an empty feature cache:
  decoding in worker threads overlapped with extraction;
- **ours, second run**: the same with the cache filled (nothing decoded);
- the same for the clips' sound track as a second modality (``audio_track``).

    python benchmarks/video/decode.py --mnist ../shared/data/mnist --work /tmp/video-bench \
        [--clips 40] [--seconds 10] [--frames 8 3]

Prints one JSON line per measurement; RESULTS.md keeps them with the machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mmrobust.data.idx import load_mnist

WIDTH, HEIGHT, FPS = 320, 240, 25


def write_clip(path: Path, digits: np.ndarray, seconds: float, rng: np.random.Generator) -> None:
    """Real MNIST digits drifting over a textured background, and a tone for its sound track."""
    import av

    background = rng.integers(0, 120, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = int(seconds * FPS)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        start = rng.integers(0, [HEIGHT - 84, WIDTH - 84], size=(len(digits), 2))
        speed = rng.normal(0, 2, size=(len(digits), 2))
        for t in range(frames):
            picture = np.roll(background, t, axis=1).copy()
            for digit, (y, x), (dy, dx) in zip(digits, start, speed):
                y, x = int(np.clip(y + dy * t, 0, HEIGHT - 84)), int(np.clip(x + dx * t, 0, WIDTH - 84))
                big = np.kron(digit, np.ones((3, 3), np.uint8))
                picture[y:y + 84, x:x + 84] = np.maximum(picture[y:y + 84, x:x + 84], big[..., None])
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        time_axis = np.arange(int(seconds * 16000)) / 16000
        wave = (0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * time_axis)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*audio.encode(frame), *audio.encode()]:
            container.mux(packet)


def floor(paths: list[Path]) -> float:
    """Seconds for PyAV to decode every video frame of every clip, one after another."""
    import av

    started = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass
    return time.perf_counter() - started


def decoding(paths: list[Path], frames: int) -> float:
    """Seconds to read ``frames`` frames of every clip as the manifest's video column does (no extraction)."""
    from concurrent.futures import ThreadPoolExecutor

    from mmrobust.data.table import decode_workers
    from mmrobust.media import read_video_frames

    started = time.perf_counter()
    with ThreadPoolExecutor(decode_workers()) as pool:
        list(pool.map(lambda path: read_video_frames(path, frames, 224), paths))
    return time.perf_counter() - started


def ours(manifest: Path, cache: Path, frames: int, audio_track: bool) -> float:
    from mmrobust.data import DATASETS

    started = time.perf_counter()
    DATASETS.create("manifest", path=str(manifest), label="label", cache_dir=str(cache),
                    extractors={"clip": f"video:mobilenetv2@{frames}"},
                    **({"audio_track": {"clip": "clip_audio"}} if audio_track else {"columns": ["clip"]}))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 3], help="frames per clip (the default 8; 3 as the "
                        "Kinetics-Sound presets use)")
    args = parser.parse_args()
    images, _ = load_mnist(args.mnist, "test")
    rng = np.random.default_rng(0)
    clips = args.work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    paths = [clips / f"{i}.mp4" for i in range(args.clips)]
    for path in paths:
        if not path.is_file():
            write_clip(path, images[rng.integers(0, len(images), 3)], args.seconds, rng)
    with open(args.work / "clips.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "label"])
        writer.writerows([[f"clips/{p.name}", ("a", "b", "c")[i % 3]] for i, p in enumerate(paths)])
    machine = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "decode_workers": os.environ.get("MMROBUST_DECODE_WORKERS", "default")}
    floor(paths[:2])  # warm the file cache
    base = floor(paths)
    print(json.dumps({"measure": "floor: PyAV decodes every frame", "clips": args.clips, "seconds": round(base, 2),
                      "clips_per_s": round(args.clips / base, 2), **machine}), flush=True)
    def report(measure: str, took: float, frames: int) -> None:
        print(json.dumps({"measure": measure, "clips": args.clips, "frames": frames, "seconds": round(took, 2),
                          "clips_per_s": round(args.clips / took, 2), "ratio_to_floor": round(base / took, 2),
                          **machine}), flush=True)

    for frames in args.frames:
        report("ours, decoding only (the column's reader, its worker threads)", decoding(paths, frames), frames)
    for frames in args.frames:
        for track in (False, True):
            cache = args.work / f"cache-{frames}-{int(track)}-{time.time_ns()}"
            for run in ("first run (cold cache)", "second run (cached)"):
                took = ours(args.work / "clips.csv", cache, frames, track)
                report(f"ours, {run}" + (", + audio track" if track else ""), took, frames)


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
