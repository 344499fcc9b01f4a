"""A trainer that fits many small ReLU MLPs at once (the E2 and E3 grid searches).

The models of one stack see the same batches (one seeded permutation per epoch, the one
reprodl.engine.fit draws) and differ in their hidden widths and learning rates. One SGD step
trains all of them with a handful of tensor operations instead of a loop over models:

- Layer 1 is one matrix for every model, their hidden units side by side: W1 (U, D), U the
  sum of the models' first widths. The input batch is shared, so the forward pass is one
  GEMM W1 x^T and the weight gradient another, dZ x, with no padding at all.
- Deeper layers are stacked per model and padded to the widest: W (M, H_out, H_in), applied
  with bmm. Padding starts at zero and provably stays zero: a padded unit has zero weights
  into it and a zero bias, so its pre-activation is 0 and ReLU(0) = 0 sends nothing on; its
  gradient is masked by ReLU'(0) = 0, so its incoming weights never move; its outgoing
  weights see a zero activation, so their gradient x^T dz is zero too (tests/test_grid.py).
- Each model's learning rate is a tensor (M, 1, 1) that scales its gradient at the logits:
  backprop is linear in it, so every weight gradient below arrives already scaled by lr / B
  and the update is one in-place addmm per layer.

The backward pass is written out (cross-entropy over a ReLU MLP: a dozen lines) rather than
left to autograd: with batches of 4 images a step is dominated by per-operation overhead.
No operation mixes two models (GEMM columns, bmm batches and softmax rows are independent),
so a model that blows up (inf/NaN) cannot touch the others; at the end of the epoch where its
loss stops being finite it is marked diverged and silenced (weights and learning rate zeroed).

Result: the same weights as training each model alone with nn.Sequential + torch.optim.SGD
(reprodl.engine.fit) from the same initial weights and batch order, up to float rounding
(tests/test_grid.py checks 1e-5). Epoch counts nest: nothing in a step depends on the total
number of epochs (constant learning rate), so one run to the largest count, evaluated at each
smaller count, gives every epoch count of a grid.

Devices: `fit_stack(..., device=...)` moves the stack's weights and the data there (the data
whole when it fits, see engine.place); the batch order is drawn on the CPU, so it is the same
on every device. On a GPU the stacks run one after another in one process (fit_stacks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import engine, models
from .heap import retain_freed_memory

# relu's own backward: grad where the activation is > 0, else 0 (also 0 where it is NaN).
_relu_backward = torch.ops.aten.threshold_backward


@dataclass(frozen=True)
class ModelSpec:
    """One model of a stack: hidden widths (one entry per hidden layer) and learning rate."""

    widths: tuple[int, ...]
    lr: float
    init_seed: int  # torch.manual_seed(init_seed), then reprodl.models.mlp: its initial weights


@dataclass
class StackResult:
    """Per-model, per-epoch results of one stack; row m is specs[m]."""

    specs: list[ModelSpec]
    train_loss: np.ndarray  # (M, E) mean training loss over each epoch's batches
    val_loss: np.ndarray  # (M, E)
    val_accuracy: np.ndarray  # (M, E)
    diverged_epoch: np.ndarray  # (M,) the epoch whose loss first was not finite; 0: never
    seconds: np.ndarray  # (E,) wall time of the whole stack from the start to the end of each epoch
    snapshots: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # epoch -> {"test_accuracy": (M,), ...}
    device: str = "cpu"  # where the stack trained: cpu or cuda (engine.device_name)


class MLPStack:
    """The weights of M ReLU MLPs of equal depth, D inputs, K classes, laid out for one step each."""

    def __init__(self, specs: Sequence[ModelSpec], n_inputs: int, n_classes: int):
        depths = {len(s.widths) for s in specs}
        if not specs or len(depths) != 1:
            raise ValueError(f"a stack needs models of one depth, got hidden widths {[s.widths for s in specs]}")
        self.specs = list(specs)
        self.n_models, self.n_classes = len(specs), n_classes
        self.depth = depths.pop()
        # Padded size of each hidden layer: the widest model's.
        self.padded = [max(s.widths[layer] for s in specs) for layer in range(self.depth)]
        first = [s.widths[0] for s in specs]
        self.offsets = np.concatenate([[0], np.cumsum(first)])  # model m's layer-1 units: offsets[m]:offsets[m+1]
        units = int(self.offsets[-1])
        p1 = self.padded[0]
        # pad_index: padded slot (m, j) -> its layer-1 unit, or `units` (a zero column) past model m's width.
        pad_index = torch.full((self.n_models, p1), units, dtype=torch.long)
        for m, width in enumerate(first):
            pad_index[m, :width] = torch.arange(self.offsets[m], self.offsets[m] + width)
        self.pad_index = pad_index.flatten()  # (M * P1,)
        self.unpad_index = torch.cat([m * p1 + torch.arange(width) for m, width in enumerate(first)])  # (U,)

        # nn.Linear's layout (out, in); activations are feature-major, (units, batch): with
        # 10 classes, (M, K, P) @ (M, P, B) runs several times faster than (M, B, P) @ (M, P, K).
        self.w1 = torch.zeros(units, n_inputs)  # (U, D)
        self.b1 = torch.zeros(units, 1)  # (U, 1)
        self.ws = [torch.zeros(self.n_models, self.padded[i], self.padded[i - 1]) for i in range(1, self.depth)]  # (M, P_out, P_in)
        self.bs = [torch.zeros(self.n_models, self.padded[i], 1) for i in range(1, self.depth)]  # (M, P_out, 1)
        self.w_out = torch.zeros(self.n_models, n_classes, self.padded[-1])  # (M, K, P_L)
        self.b_out = torch.zeros(self.n_models, n_classes, 1)  # (M, K, 1)
        for m, spec in enumerate(specs):
            model = models.build_model({"kind": "mlp", "n_inputs": n_inputs, "hidden": list(spec.widths), "n_classes": n_classes}, seed=spec.init_seed)
            self.load_model_state(m, model.state_dict())
        self.lr = torch.tensor([s.lr for s in specs], dtype=torch.float32).view(-1, 1, 1)  # (M, 1, 1)

    @torch.no_grad()
    def to(self, device: torch.device | str) -> "MLPStack":
        """Every weight, learning rate and index moved to `device` (in place); returns self."""
        for name in ("w1", "b1", "w_out", "b_out", "lr", "pad_index", "unpad_index"):
            setattr(self, name, getattr(self, name).to(device))
        self.ws = [w.to(device) for w in self.ws]
        self.bs = [b.to(device) for b in self.bs]
        return self

    # ------------------------------------------------------------------ weights in and out

    @torch.no_grad()
    def load_model_state(self, m: int, state: dict[str, torch.Tensor]) -> None:
        """Copy one model's weights (reprodl.models.mlp's state_dict) into slot m."""
        widths = self.specs[m].widths
        rows = slice(int(self.offsets[m]), int(self.offsets[m + 1]))
        self.w1[rows] = state["fc1.weight"]
        self.b1[rows, 0] = state["fc1.bias"]
        for i in range(1, self.depth):
            self.ws[i - 1][m, : widths[i], : widths[i - 1]] = state[f"fc{i + 1}.weight"]
            self.bs[i - 1][m, : widths[i], 0] = state[f"fc{i + 1}.bias"]
        self.w_out[m, :, : widths[-1]] = state["logits.weight"]
        self.b_out[m, :, 0] = state["logits.bias"]

    def model_state(self, m: int) -> dict[str, torch.Tensor]:
        """Model m's weights as the state_dict of reprodl.models.mlp."""
        widths = self.specs[m].widths
        rows = slice(int(self.offsets[m]), int(self.offsets[m + 1]))
        state = {"fc1.weight": self.w1[rows].clone(), "fc1.bias": self.b1[rows, 0].clone()}
        for i in range(1, self.depth):
            state[f"fc{i + 1}.weight"] = self.ws[i - 1][m, : widths[i], : widths[i - 1]].clone()
            state[f"fc{i + 1}.bias"] = self.bs[i - 1][m, : widths[i], 0].clone()
        state["logits.weight"] = self.w_out[m, :, : widths[-1]].clone()
        state["logits.bias"] = self.b_out[m, :, 0].clone()
        return state

    def padding_is_zero(self) -> bool:
        """True when every padded weight and bias is exactly zero (the invariant of the layout)."""
        for m, spec in enumerate(self.specs):
            w = spec.widths
            for i in range(1, self.depth):
                if self.ws[i - 1][m, w[i] :].any() or self.ws[i - 1][m, :, w[i - 1] :].any() or self.bs[i - 1][m, w[i] :].any():
                    return False
            if self.w_out[m, :, w[-1] :].any():
                return False
        return True

    @torch.no_grad()
    def silence(self, mask: torch.Tensor) -> None:
        """Zero the weights and learning rate of the models in `mask` (M,) bool: a diverged
        model then computes zeros instead of inf/NaN for the rest of the run."""
        for m in torch.nonzero(mask).flatten().tolist():
            rows = slice(int(self.offsets[m]), int(self.offsets[m + 1]))
            self.w1[rows] = 0
            self.b1[rows] = 0
            for w, b in zip(self.ws, self.bs):
                w[m] = 0
                b[m] = 0
            self.w_out[m] = 0
            self.b_out[m] = 0
            self.lr[m] = 0

    # ------------------------------------------------------------------ compute

    def _first_layer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> layer-1 activations, ragged (U, B) and padded per model (M, P1, B)."""
        a1 = torch.addmm(self.b1, self.w1, x.T).relu_()  # (U, B)
        padded = F.pad(a1, (0, 0, 0, 1)).index_select(0, self.pad_index)  # (M * P1, B); slots past a width read the zero row
        return a1, padded.view(self.n_models, self.padded[0], len(x))

    @torch.no_grad()
    def logits(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Every model's logits for x (N, D): (M, N, K)."""
        out = []
        for start in range(0, len(x), chunk):
            _, h = self._first_layer(x[start : start + chunk])
            for w, b in zip(self.ws, self.bs):
                h = torch.baddbmm(b, w, h).relu_()
            out.append(torch.baddbmm(self.b_out, self.w_out, h))  # (M, K, chunk)
        return torch.cat(out, 2).transpose(1, 2)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy and accuracy of every model on (x, y): two (M,) tensors."""
        logits = self.logits(x)  # (M, N, K)
        m, n, k = logits.shape
        loss = F.cross_entropy(logits.reshape(m * n, k), y.repeat(m), reduction="none").view(m, n).mean(1)
        accuracy = (logits.argmax(2) == y).float().mean(1)
        return loss, accuracy

    @torch.no_grad()
    def step(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """One SGD step of every model on the batch x (B, D), onehot (B, K); returns each
        model's summed loss on the batch (M,), taken before the step."""
        batch = len(x)
        target = onehot.T  # (K, B)
        a1, h = self._first_layer(x)  # (U, B), (M, P1, B)
        acts = [h]
        for w, b in zip(self.ws, self.bs):
            h = torch.baddbmm(b, w, h).relu_()  # (M, P_i, B)
            acts.append(h)
        logp = torch.baddbmm(self.b_out, self.w_out, h).log_softmax(1)  # (M, K, B)
        loss_sum = -(logp * target).sum((1, 2))  # (M,)
        # d(mean loss)/d(logits) = (softmax - onehot) / B, times each model's lr: every
        # gradient below is then the update itself.
        g = logp.exp_().sub_(target).mul_(self.lr / batch)  # (M, K, B)
        grad_h = torch.bmm(self.w_out.transpose(1, 2), g)  # (M, P_L, B), with the weights before this step
        self.w_out.baddbmm_(g, acts[-1].transpose(1, 2), alpha=-1)
        self.b_out.sub_(g.sum(2, keepdim=True))
        for i in reversed(range(len(self.ws))):
            g = _relu_backward(grad_h, acts[i + 1], 0)  # (M, P_out, B)
            grad_h = torch.bmm(self.ws[i].transpose(1, 2), g)  # (M, P_in, B)
            self.ws[i].baddbmm_(g, acts[i].transpose(1, 2), alpha=-1)
            self.bs[i].sub_(g.sum(2, keepdim=True))
        grad_a1 = grad_h.view(-1, batch).index_select(0, self.unpad_index)  # (U, B): padded slots dropped
        g1 = _relu_backward(grad_a1, a1, 0)  # (U, B)
        self.w1.addmm_(g1, x, alpha=-1)
        self.b1.sub_(g1.sum(1, keepdim=True))
        return loss_sum


def fit_stack(
    specs: Sequence[ModelSpec],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    n_classes: int | None = None,
    snapshot_epochs: Sequence[int] = (),
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    progress: bool = True,
    desc: str = "stack",
    on_epoch: Callable[[int, StackResult], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[StackResult, MLPStack]:
    """Train every model of `specs` with plain SGD (constant lr, cross-entropy) for `epochs`.

    train/val: x (N, D) float, y (N,) class indices. The batch order is engine.fit's: one
    generator seeded with `seed`, a fresh permutation per epoch, batches as its slices.
    Val loss and accuracy are taken after every epoch; `eval_sets` ({"test": (x, y)}) after
    the epochs in `snapshot_epochs` only. Returns the results and the trained stack (on `device`).
    """
    retain_freed_memory()  # see reprodl.heap
    x_train, y_train = train
    n = len(x_train)
    n_classes = n_classes or int(max(y_train.max(), val[1].max())) + 1
    if n == 0:
        raise ValueError("the training split is empty")
    device = torch.device(device)
    stack = MLPStack(specs, x_train.shape[1], n_classes).to(device)
    onehot = F.one_hot(y_train, n_classes).float()  # (N, K)
    x_train, onehot = engine.place((x_train, onehot), device)
    val = engine.place(tuple(val), device)
    eval_sets = {name: engine.place(tuple(pair), device) for name, pair in (eval_sets or {}).items()}
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(n / batch_size)
    shape = (len(specs), epochs)
    result = StackResult(
        list(specs), np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan),
        np.zeros(len(specs), dtype=np.int64), np.zeros(epochs), device=engine.device_name(device),
    )
    alive = torch.ones(len(specs), dtype=torch.bool)
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=None if progress else True, leave=False, unit="epoch")
    for epoch in bar:
        order = torch.randperm(n, generator=generator).to(x_train.device)  # drawn on the CPU: the same order on every device
        x_epoch, onehot_epoch = x_train[order].to(device), onehot[order].to(device)  # one gather per epoch; batches are then views
        loss_sum = torch.zeros(len(specs), device=device)
        for s in range(steps):
            rows = slice(s * batch_size, (s + 1) * batch_size)
            loss_sum += stack.step(x_epoch[rows], onehot_epoch[rows])
        loss_sum = loss_sum.cpu()
        val_loss, val_accuracy = (t.cpu() for t in stack.evaluate(*(t.to(device) for t in val)))
        blown = alive & ~(torch.isfinite(loss_sum) & torch.isfinite(val_loss))
        if blown.any():
            stack.silence(blown)
            result.diverged_epoch[blown.numpy()] = epoch
            alive &= ~blown
        keep = alive.numpy()
        result.train_loss[keep, epoch - 1] = (loss_sum / n).numpy()[keep]
        result.val_loss[keep, epoch - 1] = val_loss.numpy()[keep]
        result.val_accuracy[keep, epoch - 1] = val_accuracy.numpy()[keep]
        if epoch in snapshot_epochs:
            result.snapshots[epoch] = {}
            for name, (x, y) in eval_sets.items():
                loss, accuracy = (t.cpu() for t in stack.evaluate(x.to(device), y.to(device)))
                result.snapshots[epoch][f"{name}_loss"] = np.where(keep, loss.numpy(), np.nan)
                result.snapshots[epoch][f"{name}_accuracy"] = np.where(keep, accuracy.numpy(), np.nan)
        result.seconds[epoch - 1] = time.perf_counter() - start
        if keep.any():
            bar.set_postfix(best_val_accuracy=f"{np.nanmax(result.val_accuracy[:, epoch - 1]):.4f}")
        if on_epoch is not None:
            on_epoch(epoch, result)
    bar.close()
    return result, stack


def _fit_stack_job(job: dict) -> StackResult:
    # One core per worker: the workers are the parallelism. The one-worker path runs here in
    # the caller's process (a stage, pytest): give its thread count back afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_stack(**job)[0]
    finally:
        torch.set_num_threads(previous)


def fit_stacks(jobs: Sequence[dict], workers: int = 1) -> list[StackResult]:
    """fit_stack(**job) for every job, on `workers` processes of one thread each (results
    in job order, identical for any number of workers: each stack runs whole in one process).

    Order jobs longest first: the pool hands them out in order. Processes rather than threads
    because a small-batch step is mostly Python and op dispatch, which holds the GIL; spawn
    rather than fork because OpenMP's thread pool does not survive a fork. Jobs on a GPU
    (a job's "device") run in this process, one after another: they share the one device.
    """
    if any(torch.device(job.get("device", "cpu")).type != "cpu" for job in jobs):
        workers = 1
    if workers <= 1 or len(jobs) <= 1:
        return [_fit_stack_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_fit_stack_job, jobs))


def default_workers() -> int:
    """Worker processes for fit_stacks: REPRODL_WORKERS if set (e.g. 1 under `dvc queue start
    -j 2`, where the queue's own jobs use the cores), else one per CPU core."""
    import os

    value = os.environ.get("REPRODL_WORKERS")
    if value is None:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"REPRODL_WORKERS must be an integer >= 1, got {value!r}")
    return int(value)
