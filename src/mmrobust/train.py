"""The generic training loop: one ``step(batch, epoch) -> {"loss", "logits"}`` per batch, its
settings (:class:`TrainConfig`), optimiser and schedule, validation-based checkpoint selection,
early stopping, progress, per-epoch metrics as JSON lines, and a checkpoint every epoch to
resume from. Device and seeding helpers live in :mod:`mmrobust.runtime`."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import math
import os
import pickle
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import distributed
from .batch import Batch, MultiModalDataset
from .config import TrainConfig
from .errors import ModelFileError
from .files import append_jsonl, disk_full, file_name, write_jsonl
from .runtime import derive_seed, resolve_device, seeded

def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled batches of one epoch: a pure function of (seed, epoch)."""
    order = np.random.default_rng(derive_seed(seed, "shuffle", epoch)).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


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
    checkpoint_dir: str | Path | None = None,
    desc: str = "train",
) -> list[dict]:
    """Train ``module`` with ``step``; keep the state with the best ``validate()`` score.

    Without ``validate`` the last epoch is kept. Returns the per-epoch history (also
    appended to ``log_path`` as JSON lines). With ``checkpoint_dir`` every epoch ends with a
    checkpoint (model, best state, optimiser, scheduler, random state, history), and a call
    that finds one resumes after it, ending exactly as an uninterrupted run. ``module`` ends
    in eval mode.
    """
    device = resolve_device(config.device)
    prepare_module(module, config, device)
    optimizer = make_optimizer(module, config)
    scheduler = make_scheduler(optimizer, config)
    loop = _LoopState()
    with seeded(seed):
        if checkpoint_dir is not None:
            loop = load_checkpoint(Path(checkpoint_dir), module, optimizer, scheduler, device) or loop
        if log_path is not None and distributed.is_main():  # the log restarts from what the checkpoint holds
            write_jsonl(log_path, loop.history)
        bar = tqdm(range(loop.next_epoch, config.epochs), desc=desc, disable=not config.progress, leave=False)
        for epoch in bar:
            if loop.stopped:
                break
            started = time.perf_counter()
            train_loss = _train_epoch(module, step, train, optimizer, config, device, seed, epoch)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            module.eval()
            score = validate() if validate is not None else None
            record = {"stage": desc, "epoch": epoch, "train_loss": train_loss, "val_score": score,
                      "lr": lr, "seconds": round(time.perf_counter() - started, 4)}
            loop.record(record, module, config.patience)
            if checkpoint_dir is not None and distributed.is_main():
                save_checkpoint(Path(checkpoint_dir), loop, module, optimizer, scheduler)
            if log_path is not None and distributed.is_main():
                append_jsonl(log_path, record)
            bar.set_postfix(loss=f"{train_loss:.4f}", val=score if score is None else f"{score:.4f}")
    if loop.best_state is not None:
        module.load_state_dict(loop.best_state)
    module.eval()
    return [{**record, "selected": record["epoch"] == loop.best_epoch} for record in loop.history]


def prepare_module(module: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """Move to ``device``; channels_last weights and compiled encoders when configured."""
    module.to(device)
    if config.channels_last:
        module.to(memory_format=torch.channels_last)
    if config.compile:
        for encoder in _outermost_encoders(module):
            encoder.compile(dynamic=True)
    return module


def _outermost_encoders(module: nn.Module):
    for child in module.children():
        if isinstance(getattr(child, "out_dim", None), int):
            yield child
        else:
            yield from _outermost_encoders(child)


def autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast of the forward pass when configured (the backward follows it)."""
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def stage_checkpoints(checkpoint_dir: str | Path | None, stage: str) -> Path | None:
    """The checkpoint folder of one training stage inside a run's checkpoint folder."""
    return None if checkpoint_dir is None else Path(checkpoint_dir) / file_name(stage, "")


@dataclasses.dataclass
class _LoopState:
    """What an epoch loop carries from one epoch to the next (and what a checkpoint keeps)."""

    history: list[dict] = dataclasses.field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = -1
    best_state: dict[str, Tensor] | None = None
    stopped: bool = False  # early stopping triggered

    @property
    def next_epoch(self) -> int:
        return self.history[-1]["epoch"] + 1 if self.history else 0

    def record(self, record: dict, module: nn.Module, patience: int | None) -> None:
        self.history.append(record)
        score, epoch = record["val_score"], record["epoch"]
        if score is None or score > self.best_score:
            self.best_score, self.best_epoch = (score if score is not None else -math.inf), epoch
            self.best_state = copy.deepcopy(module.state_dict())
        elif patience is not None and epoch - self.best_epoch >= patience:
            self.stopped = True


CHECKPOINT_FORMAT = "mmrobust.epoch/1"


KEPT_EPOCHS = 2  # the newest complete epoch checkpoint and the one before it (the fallback if it is damaged)


def save_checkpoint(folder: Path, loop: _LoopState, module: nn.Module, optimizer, scheduler) -> None:
    """``folder/epoch-NNNN/`` (weights.safetensors + state.pt), complete or absent: written in a
    temporary folder, renamed into place, then all but the :data:`KEPT_EPOCHS` newest removed. A
    full disk is said in one line, the earlier checkpoints untouched (resume once space is free)."""
    epoch = loop.history[-1]["epoch"]
    tmp = folder / f".epoch-{epoch:04d}.tmp"
    try:
        _write_checkpoint(folder, tmp, epoch, loop, module, optimizer, scheduler)
    except (OSError, SafetensorError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(err, folder):
            raise OSError(errno.ENOSPC, f"{folder}: the disk is full while saving the checkpoint of epoch {epoch}; "
                                        "the earlier checkpoints are kept: free some space, then resume the run "
                                        "(mmrobust run --resume RUN_DIR)") from None
        raise
    for old in sorted(folder.glob("epoch-*"))[:-KEPT_EPOCHS]:
        shutil.rmtree(old, ignore_errors=True)


def _write_checkpoint(folder: Path, tmp: Path, epoch: int, loop: _LoopState, module: nn.Module, optimizer,
                      scheduler) -> None:
    final = folder / f"epoch-{epoch:04d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model/{k}": v for k, v in module.state_dict().items()}
    tensors |= {f"best/{k}": v for k, v in (loop.best_state or {}).items()}
    meta = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "history": loop.history, "best_score": loop.best_score,
            "best_epoch": loop.best_epoch, "stopped": loop.stopped, "has_best": loop.best_state is not None}
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp / "weights.safetensors"),
              metadata={"mmrobust": json.dumps(meta, default=float)})
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def load_checkpoint(folder: Path, module: nn.Module, optimizer, scheduler, device) -> _LoopState | None:
    """Restore the latest readable epoch checkpoint in ``folder``; None when there is none. A
    damaged checkpoint (a truncated file) is skipped for the one before it, said in a warning;
    when none is readable, the error says which folder to delete to retrain the stage."""
    done = sorted(folder.glob("epoch-*")) if folder.is_dir() else []
    if not done:
        return None
    errors = []
    for latest in reversed(done):
        try:
            with safe_open(str(latest / "weights.safetensors"), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("mmrobust", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            state = torch.load(latest / "state.pt", map_location="cpu", weights_only=True)
            break
        except (SafetensorError, OSError, ValueError, RuntimeError, pickle.UnpicklingError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            errors.append(f"{latest.name}: {reason}")
            warnings.warn(f"{latest}: not a readable checkpoint ({reason}); trying the one before it", stacklevel=2)
    else:
        raise ModelFileError(f"{folder}: no readable epoch checkpoint ({'; '.join(errors)}); delete that folder to "
                             f"train this stage again from its start")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{latest}: not an mmrobust epoch checkpoint (format {meta.get('format')!r})")
    module.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    best = {k[len("best/"):]: v.to(device) for k, v in tensors.items() if k.startswith("best/")}
    return _LoopState(history=list(meta["history"]), best_score=meta["best_score"],
                      best_epoch=meta["best_epoch"], best_state=best if meta["has_best"] else None, stopped=meta["stopped"])


def _epoch_loader(train: MultiModalDataset, batches: list[np.ndarray], device: torch.device):
    """(global batch, this rank's rows of it as a Batch or None). For a GPU each batch is
    gathered and pinned in a background thread while the previous one trains."""
    def build(index: np.ndarray):
        rows = distributed.shard(index)
        batch = train.batch(rows) if len(rows) else None
        return index, batch.pin_memory() if batch is not None and device.type == "cuda" else batch

    if device.type != "cuda" or not batches:
        yield from map(build, batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build, batches[0])
        for following in [*batches[1:], None]:
            ready = pending.result()
            if following is not None:
                pending = pool.submit(build, following)
            yield ready


def _train_epoch(module, step, train, optimizer, config, device, seed, epoch) -> float:
    """One epoch over the global batches; the loss of each is the mean over the rows the step
    counts (``rows`` in its output; default all). Under torchrun each rank takes its share of
    every batch, weights its loss by its share of the counted rows, and the gradients are
    summed over ranks: the update of one process on the whole batch."""
    module.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    rows_seen = 0.0
    for index, batch in _epoch_loader(train, epoch_batches(len(train), config.batch_size, seed, epoch), device):
        optimizer.zero_grad(set_to_none=True)
        loss, counted = None, 0.0
        if batch is not None:
            with autocast(config, device):
                out = step(batch.to(device), epoch)
            loss, counted = out["loss"], float(out.get("rows", batch.size))  # a host count: no GPU sync
        share = counted / max(1.0, float(_summed(counted, device))) if distributed.active() else 1.0
        if loss is not None and counted > 0:
            (loss * share).backward()
            loss_sum += loss.detach().double() * counted
            rows_seen += counted
        distributed.all_reduce_gradients(module.parameters())
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        distributed.broadcast_buffers(module)
    return float(distributed.all_reduce_sum(loss_sum)) / max(1.0, float(_summed(rows_seen, device)))


def _summed(value: float, device: torch.device) -> Tensor:
    return distributed.all_reduce_sum(torch.tensor(value, dtype=torch.float64, device=device))
