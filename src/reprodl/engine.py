"""The one training engine every experiment reuses.

Data lives in memory as tensors; batches are index slices of a seeded permutation and
augmentation runs on the whole batch at once (no per-sample DataLoader, no PIL). One call:

    history = fit(model, train, val, TrainConfig(epochs=10, batch_size=128, lr=0.1), on_epoch=log)

The engine knows nothing of DVC: a stage passes `on_epoch`, a callable that receives the
epoch number and that epoch's metrics (see reprodl.tracking for the DVCLive one).

Long runs pass `checkpoint=path`: the full training state is written after every epoch and a
restarted run resumes from it, ending with the same weights and metrics as an uninterrupted
one. Under `torchrun --nproc_per_node N` (a process group initialised, e.g. with
`init_distributed()`), fit trains the model with DistributedDataParallel: every rank draws
the same batches, takes its share of each (shares may be uneven, or empty for a last batch
smaller than the world), each rank's loss is weighted by its share so that the averaged
gradient is the whole batch's, as in one process, metrics are summed over ranks, and only
rank 0 writes checkpoints and calls `on_epoch`.

Devices: params.yaml's `device` (auto, cpu, cuda) becomes a torch.device once, in
`resolve_device`; a stage passes that value down. `fit(..., device=...)` moves the model there,
moves the training and val tensors there whole when they fit in its free memory (else each batch
is moved as it is drawn), and records the device that ran in History.device, next to the
precision (bf16 autocast follows `precision` on CUDA as on the CPU). The batch order and the
augmentation draws come from a CPU generator, so they are the same on every device. Under
torchrun a CUDA run uses nccl with LOCAL_RANK's GPU, a CPU run gloo (`init_distributed`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import io
from .heap import retain_freed_memory
from .images import Images, model_input, nbytes, to_unit_float
from .precision import autocast, use_bf16

from .config import DEVICES, OPTIMIZERS, SCHEDULES, ParamError, TrainBase  # the allowed values live in the config

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
    precision: str = "fp32"  # fp32, bf16 (autocast) or auto (bf16 where native): see reprodl.precision


def train_config(block: TrainBase, *, seed: int, loss: str = "cross_entropy", lr: float | None = None, **overrides) -> TrainConfig:
    """A params training block (config.Train / TrainBase) -> the engine's TrainConfig.

    Every field of the block reaches the engine here, and only here: a new field in the config
    that this function does not pass on is caught by tests/test_no_dead_params.py.
    lr: for blocks without their own (config.MLPSigmoid trains one model per lr).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    return TrainConfig(
        epochs=block.epochs,
        batch_size=block.batch_size,
        lr=lr if lr is not None else block.lr,
        optimizer=block.optimizer,
        momentum=block.momentum,
        weight_decay=block.weight_decay,
        schedule=block.schedule,
        loss=loss,
        augment=Augment(shift=block.augment.shift, rotate=block.augment.rotate, scale=block.augment.scale),
        seed=seed,
        max_batches=block.max_batches,
        precision=block.precision,
        **overrides,
    )


@dataclass
class History:
    """Per-epoch curves; `accuracy` entries are NaN for losses without classes."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    precision: str = "fp32"  # what the training steps ran in: fp32 or bf16 (cfg.precision resolved)
    device: str = "cpu"  # where they ran: cpu or cuda (device_name)


# --------------------------------------------------------------------------- devices


def resolve_device(name: str, *, cuda_available: bool | None = None, env=None) -> torch.device:
    """params.yaml's `device` (config.DEVICES) -> the torch.device this process computes on.

    auto: CUDA when torch.cuda.is_available(), else the CPU; cpu: the CPU; cuda: a CUDA GPU, and a
    ParamError naming the param where there is none. The GPU is LOCAL_RANK's (torchrun sets it; 0
    without torchrun). On CUDA, cuDNN and matrix products keep to fp32 (no TF32), so `precision`
    alone chooses the arithmetic, and cuDNN picks deterministic kernels.
    cuda_available and env (default os.environ) are for tests.
    """
    if name not in DEVICES:
        raise ParamError("device", f"must be one of {', '.join(DEVICES)}; got {name!r}")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if name == "cpu" or (name == "auto" and not available):
        return torch.device("cpu")
    if not available:
        raise ParamError(
            "device", "is cuda, but torch.cuda.is_available() is False (no CUDA GPU visible, or a CPU-only torch build): "
            "set device: auto or cpu, or install a CUDA build of torch"
        )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    local_rank = (os.environ if env is None else env).get("LOCAL_RANK", "0")
    return torch.device("cuda", int(local_rank))


def device_name(device: torch.device | str) -> str:
    """What the metrics record: the device's type, "cpu" or "cuda"."""
    return torch.device(device).type


def place(tensors: tuple[torch.Tensor | Images, ...], device: torch.device | str, *, budget: float = 0.5, free_bytes: int | None = None) -> tuple:
    """`tensors` (or Images: their uint8 pixels) moved to `device` whole when together they take at most `budget` of its free
    memory (a CUDA device's, or `free_bytes`), else as they are: their batches then move one at a
    time. On the CPU nothing moves."""
    device = torch.device(device)
    if device.type == "cpu" or all(t.device == device for t in tensors):
        return tensors
    if free_bytes is None and device.type == "cuda":
        free_bytes = torch.cuda.mem_get_info(device)[0]
    size = sum(nbytes(t) for t in tensors if t.device != device)
    if free_bytes is not None and size > budget * free_bytes:
        return tensors
    return tuple(t.to(device) for t in tensors)


def to_tensor_images(x: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [0, 1], the whole array at once (a large split:
    reprodl.images.Images, converted per batch)."""
    return to_unit_float(torch.from_numpy(np.ascontiguousarray(x)))


def random_affine(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Jitter a batch (B, C, H, W): one random rotation, zoom and shift per image."""
    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=generator).mul_(2).sub_(1)  # (B, 4) in [-1, 1)
    angle = u[:, 0] * math.radians(augment.rotate)
    inverse_zoom = (u[:, 1] * augment.scale).add_(1).reciprocal_()
    cos, sin = torch.cos(angle).mul_(inverse_zoom), torch.sin(angle).mul_(inverse_zoom)
    # The sampling grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
    tx, ty = u[:, 2] * (augment.shift * 2 / w), u[:, 3] * (augment.shift * 2 / h)
    theta = torch.stack([cos, -sin, tx, sin, cos, ty], 1).view(b, 2, 3)  # (B, 2, 3)
    grid = affine_grid(theta.to(x.device), h, w)  # (B, H, W, 2)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, C, h, w), align_corners=False), several times faster on small images.

    torch's version builds a (B, H, W, 3) base grid and multiplies it by theta (a batched
    product of inner size 3) on every call; here each output coordinate is two multiply-adds
    of the pixel centres, which sit at (2 j + 1) / w - 1 in [-1, 1] as in torch's.
    """
    xs, ys = _pixel_centres(h, w, theta.dtype, theta.device)  # (1, 1, W), (1, H, 1)
    c = theta.reshape(-1, 6, 1, 1)  # (B, 6, 1, 1): the two rows of each theta
    gx = torch.addcmul(torch.addcmul(c[:, 2], c[:, 0], xs), c[:, 1], ys)  # (B, H, W)
    gy = torch.addcmul(torch.addcmul(c[:, 5], c[:, 3], xs), c[:, 4], ys)
    return torch.stack([gx, gy], -1)  # (B, H, W, 2)


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    return xs.view(1, 1, w), ys.view(1, h, 1)


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
        # cycle_momentum=False: torch would otherwise cycle SGD's momentum (and Adam's beta1)
        # between its own 0.85 and 0.95, overriding the momentum param: a dead param.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, cycle_momentum=False)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")


def _prepare_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


# The most input bytes (float32) one prediction batch takes: 1,024 MNIST rows are 3 MiB, but
# 1,024 images at 224 px are 588 MiB, and each early layer output of ResNet50 on them 3.2 GB.
PREDICT_BATCH_BYTES = 64 * 2**20


def predict_batch_rows(x: torch.Tensor | Images, batch_size: int) -> int:
    """batch_size, or fewer rows where batch_size rows would exceed PREDICT_BATCH_BYTES of float32 input."""
    per_row = 4 * math.prod(x.shape[1:])
    return max(1, min(batch_size, PREDICT_BATCH_BYTES // per_row))


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor | Images, batch_size: int = 1024, channels_last: bool = True) -> torch.Tensor:
    """Model outputs for every row of x, in eval mode, batch by batch on the model's device; returned on the CPU.
    Batches of batch_size rows, fewer for large images (predict_batch_rows)."""
    model.eval()
    device = _device_of(model)
    batch_size = predict_batch_rows(x, batch_size)
    outputs = [model(_prepare_input(model_input(x[i : i + batch_size].to(device)), channels_last)) for i in range(0, len(x), batch_size)]
    return torch.cat(outputs).float().cpu()


def evaluate(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, loss: str, batch_size: int = 1024, channels_last: bool = True) -> dict[str, float]:
    """Loss and, for classification, accuracy on a whole split."""
    outputs = predict(model, x, batch_size, channels_last)  # on the CPU
    y = y.cpu()
    result = {"loss": float(loss_function(loss)(outputs, y))}
    result["accuracy"] = float((outputs.argmax(1) == y).float().mean()) if loss == "cross_entropy" else float("nan")
    return result


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor | Images, torch.Tensor],
    val: tuple[torch.Tensor | Images, torch.Tensor] | None,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    checkpoint: str | os.PathLike | None = None,
    run_key: str = "",
    device: torch.device | str | None = None,
) -> History:
    """Train `model` in place on (x, y) tensors; evaluate on `val` after every epoch.

    Reproducible: shuffling and augmentation draw from one generator seeded with cfg.seed
    (the model's initial weights are the caller's: build it with a seed).

    checkpoint: a file rewritten after every epoch with the whole training state (model,
    optimizer, schedule, generators, metrics so far). When it exists and was written for the
    same cfg and `run_key` (the caller's fingerprint of data and initial weights), training
    resumes after its last epoch, and `on_epoch` is first replayed for the restored epochs so
    per-epoch logs come out whole. A checkpoint of another configuration is ignored.

    device: where to train (a resolve_device value); the model is moved there (in place) and
    stays there. None: where the model is.
    """
    x_train, y_train = train
    n = len(x_train)
    if n == 0:
        raise ValueError("the training split is empty")
    retain_freed_memory()  # every step re-allocates the same buffers: keep them (see reprodl.heap)
    rank, world = distributed_rank_world()
    if device is not None:
        model.to(device)
    device = _device_of(model)
    x_train, y_train = place((x_train, y_train), device)  # whole, once, when it fits
    if val is not None:
        val = place(tuple(val), device)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator: make it independent of earlier work
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    if cfg.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_batches)
    if cfg.channels_last and x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    criterion = loss_function(cfg.loss)
    bf16 = use_bf16(cfg.precision, device)  # weights and optimiser state stay fp32 either way
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    schedule = make_schedule(cfg.schedule, optimizer, cfg.lr, cfg.epochs * steps_per_epoch)
    classify = cfg.loss == "cross_entropy"
    history = History(precision="bf16" if bf16 else "fp32", device=device_name(device))

    done: list[dict[str, float]] = []  # metrics of the epochs restored from the checkpoint
    if checkpoint is not None:
        done = _resume(Path(checkpoint), cfg, run_key, model, optimizer, schedule, generator)
        if rank == 0 and on_epoch is not None:
            for epoch, metrics in enumerate(done, start=1):
                on_epoch(epoch, metrics)
        for metrics in done:
            _record(history, metrics)
    # DDP broadcasts rank 0's weights at wrapping, then averages gradients in backward (see _share_loss).
    trained = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # disable=None: a bar on a terminal, none in logs (CI, redirected output).
    bar = tqdm(
        total=cfg.epochs * steps_per_epoch, initial=len(done) * steps_per_epoch, desc=desc,
        disable=None if progress and rank == 0 else True, leave=False, unit="batch",
    )
    for epoch in range(len(done) + 1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(x_train.device)  # drawn on the CPU: the same order on every device
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb, yb = model_input(x_train[idx]), y_train[idx]  # (B, C, H, W), (B,) or (B, K); Images converted here
            if cfg.augment.active:
                xb = random_affine(xb, cfg.augment, generator)  # the whole batch: every rank's generator stays in step
            if world > 1:  # this rank's share of the batch
                xb, yb = xb[rank::world], yb[rank::world]
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with autocast(bf16, device):
                out = trained(_prepare_input(xb, cfg.channels_last))
                if world > 1:  # weighted by the share's size; an empty share contributes zero
                    loss, objective = _share_loss(criterion, out.float(), yb, len(idx), world)
                else:
                    loss = objective = criterion(out.float(), yb)  # the loss in fp32 whatever the precision
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            # Accumulate as tensors: a .item() per batch would force a sync for nothing.
            loss_sum += loss.detach() * len(yb)
            if classify:
                correct += (out.detach().argmax(1) == yb).sum()
            seen += len(yb)
            bar.update()
        if world > 1:
            totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=device)])
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
            _broadcast_buffers(model)  # every rank evaluates (and holds) the model rank 0 saves
        metrics = {"train_loss": float(loss_sum) / seen, "train_accuracy": float(correct) / seen if classify else float("nan")}
        if val is not None and len(val[0]):
            if world > 1:
                scores = _evaluate_shared(model, val[0], val[1], cfg, rank, world)
            else:
                scores = evaluate(model, val[0], val[1], cfg.loss, cfg.eval_batch_size, cfg.channels_last)
            metrics.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        metrics["seconds"] = time.perf_counter() - start
        _record(history, metrics)
        if not math.isfinite(metrics["train_loss"]):
            bar.close()
            raise FloatingPointError(f"{desc}: training loss became {metrics['train_loss']} at epoch {epoch}; lower the learning rate")
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items() if k != "seconds" and math.isfinite(v)})
        done.append(metrics)
        if checkpoint is not None and rank == 0:
            _save_checkpoint(Path(checkpoint), cfg, run_key, model, optimizer, schedule, generator, done)
        if on_epoch is not None and rank == 0:
            on_epoch(epoch, metrics)
    bar.close()
    return history


def _record(history: History, metrics: dict[str, float]) -> None:
    history.train_loss.append(metrics["train_loss"])
    history.train_accuracy.append(metrics["train_accuracy"])
    history.val_loss.append(metrics.get("val_loss", float("nan")))
    history.val_accuracy.append(metrics.get("val_accuracy", float("nan")))
    history.seconds.append(metrics["seconds"])


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, cfg: TrainConfig, run_key: str, model, optimizer, schedule, generator, done: list[dict]) -> None:
    """Everything a resumed run needs, as tensors and plain types (loadable with weights_only=True)."""
    state = {
        "config": asdict(cfg),
        "run_key": run_key,
        "epochs_done": len(done),
        "metrics": [dict(m) for m in done],
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    io.save_torch(path, state)


def _resume(path: Path, cfg: TrainConfig, run_key: str, model, optimizer, schedule, generator) -> list[dict]:
    """Restore the training state from `path`; return the finished epochs' metrics ([] to start afresh)."""
    if not path.exists():
        return []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"config", "model", "metrics"} <= state.keys():
            raise ValueError("not a checkpoint written by reprodl.engine.fit")
    except Exception as err:  # truncated, overwritten, another format: one clear line, not the unpickler's traceback
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({type(err).__name__}): it is cut short, corrupt, or not a checkpoint "
            "written by reprodl.engine.fit; delete it to train from the start"
        ) from None
    if state.get("config") != asdict(cfg) or state.get("run_key") != run_key:
        print(f"checkpoint {path} was written for another configuration: training from the start")
        return []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if schedule is not None:
        schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return [dict(m) for m in state["metrics"]]


def load_checkpoint_model(path: str | os.PathLike, model: nn.Module) -> int:
    """Load the weights of a checkpoint written by fit into `model`; return its finished epochs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"model", "epochs_done"} <= state.keys():
            raise ValueError("not a checkpoint written by reprodl.engine.fit")
    except FileNotFoundError:
        raise
    except Exception as err:  # as in _resume: name the file, not a pickle traceback
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({type(err).__name__}): it is cut short, corrupt, or not a checkpoint "
            "written by reprodl.engine.fit; delete it to train from the start"
        ) from None
    model.load_state_dict(state["model"])
    return int(state["epochs_done"])


# --------------------------------------------------------------------------- distributed


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_backend(device: torch.device | str) -> str:
    """The process-group backend for ranks that compute on `device`: nccl for CUDA, gloo otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(device: torch.device | str = "cpu") -> tuple[int, int]:
    """Join the process group that torchrun describes in the environment, for ranks that compute
    on `device` (a resolve_device value): nccl with that GPU (LOCAL_RANK's) for CUDA, gloo for the CPU.

    Without torchrun (no WORLD_SIZE, or 1) nothing happens and (0, 1) is returned.
    When every rank runs on this host, the ranks meet on the loopback (see _loopback_defaults),
    never on an address found by resolving the host name; what the environment sets is kept.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = distributed_backend(device)
        if backend == "nccl":
            torch.cuda.set_device(torch.device(device))
        for name, value in _loopback_defaults(os.environ, backend).items():
            os.environ.setdefault(name, value)
        dist.init_process_group(backend)
    return distributed_rank_world()


LOOPBACK = "127.0.0.1"


def _loopback_defaults(env, backend: str) -> dict[str, str]:
    """The variables that init_distributed sets where `env` leaves them unset.

    MASTER_ADDR (where env:// rendezvous, torchrun sets it): 127.0.0.1.
    GLOO_SOCKET_IFNAME, for gloo when every rank is on this host (torchrun's LOCAL_WORLD_SIZE is
    WORLD_SIZE, or the master address is a loopback one): the loopback interface. Without it gloo
    binds each rank to the address that the machine's host name resolves to, which fails, or
    picks an unreachable address, where the name does not resolve to a local one. Across hosts
    nothing is chosen: the interface that reaches the other hosts is the user's to set.
    """
    defaults = {} if "MASTER_ADDR" in env else {"MASTER_ADDR": LOOPBACK}
    master = env.get("MASTER_ADDR", LOOPBACK)
    one_host = env.get("LOCAL_WORLD_SIZE") is not None and env.get("LOCAL_WORLD_SIZE") == env.get("WORLD_SIZE")
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in env and (one_host or _is_loopback(master)):
        interface = _loopback_interface()
        if interface is not None:
            defaults["GLOO_SOCKET_IFNAME"] = interface
    return defaults


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_interface() -> str | None:
    """The loopback network interface's name: "lo" on Linux, "lo0" on macOS (None when there is none)."""
    import socket

    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):  # no if_nameindex on this platform
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


def _share_loss(criterion, out: torch.Tensor, target: torch.Tensor, batch: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(this rank's mean loss, the objective it back-propagates) for its share of a batch of `batch` rows.

    DDP averages the ranks' gradients: (1/W) sum_r grad L_r. With L_r = (W n_r / B) mean_r, where
    this rank holds n_r of the B rows and mean_r is their mean loss, the average is
    sum_r (n_r / B) grad mean_r = grad (1/B) sum_i loss_i, the gradient of the whole batch's mean
    that one process takes, however unevenly the rows are shared (for even shares the factor
    is exactly 1). A share left empty (a last batch smaller than the world) has weight 0: its
    objective is 0 * sum(out), a zero gradient that still joins DDP's all-reduce, where the mean
    of no rows would be NaN and spread to every rank.
    """
    if len(target) == 0:
        zero = out.sum() * 0.0
        return zero.detach(), zero
    loss = criterion(out, target)
    return loss, loss * (len(target) * world / batch)


def _broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each training forward, so after an epoch's last step
    every rank holds the statistics of its own share; evaluation and prediction use rank 0's,
    those of the model that rank 0 saves.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


@torch.inference_mode()
def _evaluate_shared(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, cfg: TrainConfig, rank: int, world: int) -> dict[str, float]:
    """evaluate() with the rows shared out over the ranks and the sums reduced.

    Each rank's mean is weighted by its row count, so uneven shares average exactly; a rank
    left without rows (a split smaller than the world) adds nothing and predicts nothing.
    """
    xs, ys = x[rank::world], y[rank::world]
    device = _device_of(model)
    model.eval()
    loss_sum = correct = 0.0
    if len(ys):
        outputs = predict(model, xs, cfg.eval_batch_size, cfg.channels_last)  # on the CPU
        ys = ys.cpu()
        loss_sum = float(loss_function(cfg.loss)(outputs, ys)) * len(ys)
        correct = float((outputs.argmax(1) == ys).sum()) if cfg.loss == "cross_entropy" else 0.0
    totals = torch.tensor([loss_sum, correct, float(len(ys))], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()
    return {"loss": loss_sum / count, "accuracy": correct / count if cfg.loss == "cross_entropy" else float("nan")}
