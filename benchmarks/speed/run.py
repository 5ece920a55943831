"""Speed benchmarks: our training loop against a bare PyTorch loop, and inference cost as the
expensive modality goes missing. Prints one JSON line per measurement and appends it to
``benchmarks/speed/results/<tag>.jsonl``.

    python benchmarks/speed/run.py step --tag cpu                 # 1. step time, digits-sized LeNet pair
    python benchmarks/speed/run.py inference --tag cpu            # 2. cost vs share missing the expensive modality
    python benchmarks/speed/run.py kinetics --tag cpu --batch 64 --steps 2 --frames 1
    python benchmarks/speed/run.py pool --tag cpu                 # LeNet's max-pool at evaluation
    python benchmarks/speed/run.py kinetics --tag h100 --device cuda --precision bf16 --channels-last --batch 64 256

The bare loop is the same model, batch, threads and optimiser; it slices pre-collated host
tensors, copies the slice to the device, and applies the same modality-dropout masks by
multiplication, encoding every row (what one writes without a missing-aware library).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import mmrobust as mm
from mmrobust.masking import sample_modality_dropout
from mmrobust.models import task_loss
from mmrobust.train import TrainConfig, autocast, epoch_batches, prepare_module, resolve_device, train_module

HERE = Path(__file__).resolve().parent


def record(tag: str, **values) -> None:
    values = {"machine": machine(), **values}
    print(json.dumps(values), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / f"{tag}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(values) + "\n")


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return f"{gpu or platform.processor() or 'cpu'}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- the two loops ---------------------------------------------------------------------------

def ours(method, data, config: TrainConfig, device) -> float:
    """Seconds per step of mmrobust's loop (train_module with the method's own step)."""
    method.model_ = method.build_model(None)
    steps = len(epoch_batches(len(data), config.batch_size, 0, 0)) * config.epochs
    warm = TrainConfig(**{**config.__dict__, "epochs": 1})
    train_module(method.model_, method.training_step, data.subset(range(2 * config.batch_size)), warm, seed=0)
    sync(device)
    started = time.perf_counter()
    train_module(method.model_, method.training_step, data, config, seed=0)
    sync(device)
    return (time.perf_counter() - started) / steps


def bare(method, data, config: TrainConfig, device) -> float:
    """Seconds per step of a bare loop: pre-collated tensors, masks as multiplications."""
    model = prepare_module(method.build_model(None), config, device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    names = method.modalities
    tensors = {m: torch.as_tensor(np.asarray(data.inputs[m])) for m in names}
    target = data.target
    full = {m: torch.ones(len(data), dtype=torch.bool) for m in names}

    def run(epochs: int, rows: int) -> int:
        steps = 0
        for epoch in range(epochs):
            for index in epoch_batches(rows, config.batch_size, 0, epoch):
                idx = torch.as_tensor(index)
                present = {m: full[m][idx] for m in names}
                if method.augment:
                    present = sample_modality_dropout(present, idx, seed=method.seed, epoch=epoch, p_drop=method.p_drop)
                with autocast(config, device):
                    logits = [model.branches[m](tensors[m][idx].to(device, non_blocking=True))
                              for m in names]
                    masks = [present[m].to(device, non_blocking=True).float().unsqueeze(1) for m in names]
                    fused = sum(l * k for l, k in zip(logits, masks)) / sum(masks).clamp(min=1)
                    loss = task_loss(fused.float(), target[idx].to(device, non_blocking=True), "multiclass")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
        return steps

    run(1, 2 * config.batch_size)
    sync(device)
    started = time.perf_counter()
    steps = run(config.epochs, len(data))
    sync(device)
    return (time.perf_counter() - started) / steps


def compare(tag: str, name: str, method, data, config: TrainConfig, repeats: int, **extra) -> None:
    device = resolve_device(config.device)
    times = {"ours": [], "bare": []}
    for _ in range(repeats):  # interleaved, so that drift hits both
        times["bare"].append(bare(method, data, config, device))
        times["ours"].append(ours(method, data, config, device))
    best = {k: min(v) for k, v in times.items()}
    record(tag, benchmark=name, batch=config.batch_size, ours_s_per_step=best["ours"], bare_s_per_step=best["bare"],
           ratio=best["ours"] / best["bare"], ours_samples_per_s=config.batch_size / best["ours"],
           bare_samples_per_s=config.batch_size / best["bare"], repeats=repeats, device=str(device),
           precision=config.precision, channels_last=config.channels_last, **extra)


def fused(name: str, encoders, data, config: TrainConfig):
    return mm.create_method(name, encoders=encoders, num_classes=data.num_classes, seed=0, train_config=config)


# --- 1. step time on the digits data --------------------------------------------------------

def bench_step(args) -> None:
    data = mm.DATASETS.create("digits")
    train = data.train
    config = TrainConfig(epochs=args.epochs, batch_size=64, device=args.device)
    for name in ("late-fusion", "late-fusion-dropout"):
        compare(args.tag, f"step:{name}", fused(name, data.encoders, train, config), train, config, args.repeats,
                model="digits LeNet pair", rows=len(train))


# --- 2. inference cost as the expensive modality goes missing -------------------------------

def bench_inference(args) -> None:
    rng = np.random.default_rng(0)
    n = args.rows
    inputs = {"spectrogram": rng.normal(size=(n, 1, 128, 128)).astype(np.float32),
              "image": rng.normal(size=(n, 1, 28, 28)).astype(np.float32)}
    encoders = {"spectrogram": mm.EncoderSpec("resnet18-spectrogram"), "image": mm.EncoderSpec("lenet")}
    config = TrainConfig(epochs=0, device=args.device, eval_batch_size=128)
    ume = mm.create_method("ume", encoders=encoders, num_classes=10, seed=0, train_config=config)
    ume.model_ = ume.build_model(None).to(resolve_device(args.device)).eval()
    alone = mm.create_method("unimodal", encoders=encoders, num_classes=10, seed=0, modality="image", train_config=config)
    alone.model_ = alone.build_architecture().to(resolve_device(args.device)).eval()

    def timed(fn) -> float:
        fn()
        return min(_seconds(fn) for _ in range(args.repeats))

    base = timed(lambda: alone.predict_proba({"image": inputs["image"]}))
    for rate in (0.0, 0.25, 0.5, 0.75, 1.0):
        present = {"spectrogram": np.arange(n) >= round(rate * n), "image": np.ones(n, dtype=bool)}
        seconds = timed(lambda: ume.predict_proba(inputs, present))
        record(args.tag, benchmark="inference:ume", missing_rate=rate, seconds=seconds, image_alone_seconds=base,
               ratio_to_image_alone=seconds / base, rows=n,
               model="resnet18-spectrogram (1x128x128) + lenet image (28x28)")


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --- 4. a Kinetics-Sound-sized pair of ResNet-18s --------------------------------------------

def bench_kinetics(args) -> None:
    for batch in args.batch:
        rows = batch * args.steps
        rng = np.random.default_rng(0)
        inputs = {"video": rng.integers(0, 256, size=(rows, args.frames, 3, 224, 224), dtype=np.uint8),
                  "audio": rng.normal(size=(rows, 1, 257, 188)).astype(np.float32)}
        data = mm.MultiModalDataset(inputs, rng.integers(0, 31, rows))
        encoders = {"video": mm.EncoderSpec("resnet18"), "audio": mm.EncoderSpec("resnet18-spectrogram")}
        config = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, device=args.device, precision=args.precision,
                             channels_last=args.channels_last)
        compare(args.tag, "kinetics:late-fusion-dropout", fused("late-fusion-dropout", encoders, data, config), data, config,
                args.repeats, model=f"ResNet-18 frames ({args.frames}x3x224x224) + ResNet-18 spectrogram (1x257x188)",
                rows=rows)


def bench_pool(args) -> None:
    """LeNet's 2x2 max-pool at evaluation (no gradients): torch's kernel against the maximum of the
    four strided quarters that MaxPool2x2 computes, on the digits' first pooling (512 x 6 x 32 x 32)."""
    from mmrobust.encoders.cnn import MaxPool2x2

    x = torch.randn(args.rows, 6, 32, 32)
    with torch.no_grad():
        for name, pool in (("torch max_pool2d", lambda t: torch.nn.functional.max_pool2d(t, 2)), ("MaxPool2x2", MaxPool2x2())):
            pool(x)
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                for _ in range(10):
                    pool(x)
                times.append((time.perf_counter() - started) / 10)
            record(args.tag, bench="pool", pool=name, rows=args.rows, ms=round(1000 * min(times), 2))
        assert torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("step", "inference", "kinetics", "pool"))
    parser.add_argument("--tag", required=True, help="results/<tag>.jsonl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    {"step": bench_step, "inference": bench_inference, "kinetics": bench_kinetics, "pool": bench_pool}[args.bench](args)


if __name__ == "__main__":
    main()
