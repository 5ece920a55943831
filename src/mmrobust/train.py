"""The generic training loop: one ``step(batch, epoch) -> {"loss", "logits"}`` per batch,
validation-based checkpoint selection, early stopping, seeds, device, progress, per-epoch
metrics as JSON lines."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .batch import Batch, MultiModalDataset, move_to, take_rows
from .files import append_jsonl
from .masking import derive_seed

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")


@dataclass
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: str = "none"  # none | cosine | step
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: decay factor
    patience: int | None = None  # early stopping: epochs without a better validation score
    grad_clip: float | None = None  # max gradient norm
    eval_batch_size: int = 512
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    progress: bool = False  # show a progress bar

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")

    def scaled(self, lr_scale: float, epoch_fraction: float) -> "TrainConfig":
        """The fine-tuning settings: ``lr * lr_scale`` for ``ceil(epochs * epoch_fraction)`` epochs."""
        return dataclasses.replace(self, lr=self.lr * lr_scale, epochs=max(1, math.ceil(self.epochs * epoch_fraction)))


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch seed, restoring the caller's random state after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def task_loss(logits: Tensor, target: Tensor, task: str) -> Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.float())
    return F.cross_entropy(logits, target.long())


def proba_from_logits(logits: Tensor, task: str) -> Tensor:
    return logits.sigmoid() if task == "multilabel" else logits.softmax(-1)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled batches of one epoch: a pure function of (seed, epoch)."""
    order = np.random.default_rng(derive_seed(seed, "shuffle", epoch)).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def iter_chunks(
    inputs: Mapping[str, Any], present: Mapping[str, Tensor], batch_size: int, device: torch.device
) -> Iterator[tuple[dict[str, Any], dict[str, Tensor]]]:
    """Evaluation chunks of rows, moved to ``device``; a modality absent from a chunk is left out."""
    n = int(next(iter(present.values())).shape[0])
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        chunk_present = {m: p[rows].to(device) for m, p in present.items()}
        chunk_inputs = {
            m: move_to(take_rows(inputs[m], rows), device)
            for m in present
            if inputs.get(m) is not None and bool(chunk_present[m].any())
        }
        yield chunk_inputs, chunk_present


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return None


def train_module(
    module: nn.Module,
    step: Callable[[Batch, int], Mapping[str, Tensor]],
    train: MultiModalDataset,
    config: TrainConfig,
    *,
    seed: int,
    validate: Callable[[], float] | None = None,
    log_path: str | Path | None = None,
    desc: str = "train",
) -> list[dict]:
    """Train ``module`` with ``step``; keep the state with the best ``validate()`` score.

    Without ``validate`` the last epoch is kept. Returns the per-epoch history (also
    appended to ``log_path`` as JSON lines). ``module`` ends in eval mode.
    """
    device = resolve_device(config.device)
    module.to(device)
    optimizer = make_optimizer(module, config)
    scheduler = make_scheduler(optimizer, config)
    history: list[dict] = []
    best_score, best_epoch, best_state = -math.inf, -1, None
    bar = tqdm(range(config.epochs), desc=desc, disable=not config.progress, leave=False)
    with seeded(seed):
        for epoch in bar:
            started = time.perf_counter()
            train_loss = _train_epoch(module, step, train, optimizer, config, device, seed, epoch)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            module.eval()
            score = validate() if validate is not None else None
            record = {"stage": desc, "epoch": epoch, "train_loss": train_loss, "val_score": score,
                      "lr": lr, "seconds": round(time.perf_counter() - started, 4)}
            history.append(record)
            if log_path is not None:
                append_jsonl(log_path, record)
            bar.set_postfix(loss=f"{train_loss:.4f}", val=score if score is None else f"{score:.4f}")
            if score is None or score > best_score:
                best_score, best_epoch = (score if score is not None else -math.inf), epoch
                best_state = copy.deepcopy(module.state_dict())
            elif config.patience is not None and epoch - best_epoch >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    for record in history:
        record["selected"] = record["epoch"] == best_epoch
    return history


def _train_epoch(module, step, train, optimizer, config, device, seed, epoch) -> float:
    module.train()
    total = torch.zeros((), device=device)
    for index in epoch_batches(len(train), config.batch_size, seed, epoch):
        batch = train.batch(index).to(device)
        loss = step(batch, epoch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        total += loss.detach() * batch.size
    return float(total) / max(1, len(train))
