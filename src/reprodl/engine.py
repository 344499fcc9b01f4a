"""The one training engine every experiment reuses.

Data lives in memory as tensors; batches are index slices of a seeded permutation and
augmentation runs on the whole batch at once (no per-sample DataLoader, no PIL). One call:

    history = fit(model, train, val, TrainConfig(epochs=10, batch_size=128, lr=0.1), on_epoch=log)

The engine knows nothing of DVC: a stage passes `on_epoch`, a callable that receives the
epoch number and that epoch's metrics (see reprodl.tracking for the DVCLive one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
SCHEDULES = ("constant", "onecycle", "cosine")
LOSSES = ("cross_entropy", "bce_with_logits", "mse")


@dataclass(frozen=True)
class Augment:
    """Random affine jitter, drawn per image, applied to the whole batch in one grid_sample."""

    shift: float = 0.0  # max translation, pixels
    rotate: float = 0.0  # max rotation, degrees
    scale: float = 0.0  # max relative zoom, e.g. 0.1 = +-10%

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.rotate > 0 or self.scale > 0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate for the onecycle schedule
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    loss: str = "cross_entropy"
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    eval_batch_size: int = 1024
    max_batches: int | None = None  # cap batches per epoch (tests shrink runs with it)
    channels_last: bool = True  # faster CPU convolutions; a no-op for 2-D inputs


@dataclass
class History:
    """Per-epoch curves; `accuracy` entries are NaN for losses without classes."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def to_tensor_images(x: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)


def random_affine(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Jitter a batch (B, C, H, W): one random rotation, zoom and shift per image."""
    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=generator) * 2 - 1  # (B, 4) in [-1, 1)
    angle = u[:, 0] * math.radians(augment.rotate)
    zoom = 1 + u[:, 1] * augment.scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
    tx, ty = u[:, 2] * augment.shift * 2 / w, u[:, 3] * augment.shift * 2 / h
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "bce_with_logits":
        return lambda logits, target: F.binary_cross_entropy_with_logits(logits, target.float())
    if name == "mse":
        return F.mse_loss
    raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int):
    """A per-step learning-rate schedule (None for a constant rate)."""
    if name == "constant":
        return None
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")


def _prepare_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, channels_last: bool = True) -> torch.Tensor:
    """Model outputs for every row of x, in eval mode, batch by batch."""
    model.eval()
    outputs = [model(_prepare_input(x[i : i + batch_size], channels_last)) for i in range(0, len(x), batch_size)]
    return torch.cat(outputs).float()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int = 1024, channels_last: bool = True) -> dict[str, float]:
    """Loss and, for classification, accuracy on a whole split."""
    outputs = predict(model, x, batch_size, channels_last)
    result = {"loss": float(loss_function(loss)(outputs, y))}
    result["accuracy"] = float((outputs.argmax(1) == y).float().mean()) if loss == "cross_entropy" else float("nan")
    return result


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train `model` in place on (x, y) tensors; evaluate on `val` after every epoch.

    Reproducible: shuffling and augmentation draw from one generator seeded with cfg.seed
    (the model's initial weights are the caller's: build it with a seed).
    """
    x_train, y_train = train
    n = len(x_train)
    if n == 0:
        raise ValueError("the training split is empty")
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator: make it independent of earlier work
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    if cfg.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_batches)
    if cfg.channels_last and x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    criterion = loss_function(cfg.loss)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    schedule = make_schedule(cfg.schedule, optimizer, cfg.lr, cfg.epochs * steps_per_epoch)
    classify = cfg.loss == "cross_entropy"
    history = History()

    # disable=None: a bar on a terminal, none in logs (CI, redirected output).
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=desc, disable=None if progress else True, leave=False, unit="batch")
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]  # (B, C, H, W), (B,) or (B, K)
            if cfg.augment.active:
                xb = random_affine(xb, cfg.augment, generator)
            out = model(_prepare_input(xb, cfg.channels_last))
            loss = criterion(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            # Accumulate as tensors: a .item() per batch would force a sync for nothing.
            loss_sum += loss.detach() * len(idx)
            if classify:
                correct += (out.detach().argmax(1) == yb).sum()
            seen += len(idx)
            bar.update()
        metrics = {"train_loss": float(loss_sum) / seen, "train_accuracy": float(correct) / seen if classify else float("nan")}
        if val is not None and len(val[0]):
            scores = evaluate(model, val[0], val[1], cfg.loss, cfg.eval_batch_size, cfg.channels_last)
            metrics.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        metrics["seconds"] = time.perf_counter() - start
        history.train_loss.append(metrics["train_loss"])
        history.train_accuracy.append(metrics["train_accuracy"])
        history.val_loss.append(metrics.get("val_loss", float("nan")))
        history.val_accuracy.append(metrics.get("val_accuracy", float("nan")))
        history.seconds.append(metrics["seconds"])
        if not math.isfinite(metrics["train_loss"]):
            bar.close()
            raise FloatingPointError(f"{desc}: training loss became {metrics['train_loss']} at epoch {epoch}; lower the learning rate")
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k != "seconds" and math.isfinite(v)})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    bar.close()
    return history
