"""Benchmark: the E2 grid, stacked trainer (reprodl.grid) vs one model at a time with a DataLoader.

Both deliver the same grid (params.yaml e2.grid: 384 models on full-size shapes: 63,000 x 784
synthetic images, 80% train / 20% val, val loss and accuracy after every epoch), in this one run:

- baseline: the reference's loop, one nn.Sequential at a time: a torch DataLoader over a
  TensorDataset (shuffle=True), SGD, cross-entropy, `loss.item()` per batch; every model
  trained for its own epoch count (10 + 20 + 50 + 100 epochs for each batch, lr, hidden).
- stacked: per batch size, the 16 (lr, hidden) models in one MLPStack, one run to the largest
  epoch count (epoch counts nest), val evaluated every epoch for all models at once.

Each side's step time is measured per batch size (and hidden width for the baseline) over a
fixed wall-time slice, then scaled to whole epochs: wall time per model-epoch of the grid =
(time to deliver the grid) / (sum of every model's epochs). Prints both, the projected
full-size grid time of the stacked trainer, the embedded grid's measured time, and the ratio.

The limit: the stacked trainer's own matrix products (per batch size: the step's addmm / bmm /
baddbmm shapes, and the val pass's) on pre-made tensors at the same threads (timing.gemm_work),
timed in turns with the trainer (medians of 5 turns). The trainer's FLOPs in those products per
second of its wall time, over that limit, is the fraction printed, with a verdict on the target
(20x, or within 30% of the GEMM limit). The pipeline trains each stack on one thread
(reprodl.grid.fit_stacks), so run it with OMP_NUM_THREADS=1. --quick: shorter slices.

    OMP_NUM_THREADS=1 python benchmarks/grid_trainer.py --quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from reprodl import grid
from timing import (Gemm, Limit, gemm_peak, gemm_work, interleaved_seconds_per_call, machine_line, print_record,
                    report_limit, seconds_per_call)  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES, N_INPUTS, N_CLASSES = 63_000, 784, 10
TARGET, FRACTION_TARGET = 20.0, 0.70  # the ratio, or the stacked trainer within 30% of the machine's GEMM limit
EVAL_CHUNK = 1024  # rows per chunk of MLPStack.logits


def _layers(stack: grid.MLPStack) -> list[tuple[int, int]]:
    """(out, in) of every batched layer after the first: the padded hidden layers, then the logits."""
    sizes = [*stack.padded, stack.n_classes]
    return [(sizes[i + 1], sizes[i]) for i in range(stack.depth)]


def step_gemms(stack: grid.MLPStack, batch: int) -> list[Gemm]:
    """The matrix products of one MLPStack.step on `batch` rows, as reprodl.grid runs them."""
    units, inputs, m = stack.w1.shape[0], stack.w1.shape[1], stack.n_models
    gemms = [Gemm(units, batch, inputs, b_t=True)]  # addmm(b1, w1, x.T)
    gemms += [Gemm(out, batch, inp, batch=m) for out, inp in _layers(stack)]  # baddbmm(b, w, h)
    for out, inp in reversed(_layers(stack)):
        gemms.append(Gemm(inp, batch, out, batch=m, a_t=True))  # bmm(w.T, g): the input's gradient
        gemms.append(Gemm(out, inp, batch, batch=m, b_t=True, accumulate=True))  # w.baddbmm_(g, h.T)
    gemms.append(Gemm(units, inputs, batch, accumulate=True))  # w1.addmm_(g1, x)
    return gemms


def eval_gemms(stack: grid.MLPStack, n_rows: int) -> list[Gemm]:
    """The matrix products of one MLPStack.evaluate on n_rows rows (chunks of EVAL_CHUNK)."""
    units, inputs, m = stack.w1.shape[0], stack.w1.shape[1], stack.n_models
    full, rest = divmod(n_rows, EVAL_CHUNK)
    gemms = []
    for rows, count in ((EVAL_CHUNK, full), (rest, 1)):
        if rows and count:
            gemms.append(Gemm(units, rows, inputs, b_t=True, count=count))
            gemms += [Gemm(out, rows, inp, batch=m, count=count) for out, inp in _layers(stack)]
    return gemms


def baseline_times(x, y, x_val, y_val, batch: int, hidden: int, lr: float, seconds: float) -> tuple[float, float]:
    """(seconds per training step, seconds per val pass) of the reference loop."""
    model = nn.Sequential(nn.Linear(N_INPUTS, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        loss.item()

    val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_val, y_val), batch_size=1000)

    def validate():
        with torch.no_grad():
            for xb, yb in val_loader:
                out = model(xb)
                F.cross_entropy(out, yb).item()
                (out.argmax(1) == yb).sum().item()

    return seconds_per_call(step, seconds, warmup=3, min_calls=3, rounds=3), seconds_per_call(validate, 0.0, warmup=1, min_calls=3, rounds=3)


def stacked_times(x, y, x_val, y_val, batch: int, specs: list[grid.ModelSpec], seconds: float) -> tuple[float, float, dict]:
    """(seconds per training step of the whole stack, seconds per val pass of the whole stack,
    the limit: {"step": Limit, "val": Limit} of the same GEMMs alone)."""
    stack = grid.MLPStack(specs, N_INPUTS, N_CLASSES)
    onehot = F.one_hot(y, N_CLASSES).float()
    order = torch.randperm(len(x))
    x_epoch, onehot_epoch = x[order], onehot[order]
    position = 0

    def step():
        nonlocal position
        if position + batch > len(x):
            position = 0
        stack.step(x_epoch[position : position + batch], onehot_epoch[position : position + batch])
        position += batch

    limit_step, limit_val = gemm_work(step_gemms(stack, batch)), gemm_work(eval_gemms(stack, len(x_val)))
    steps = interleaved_seconds_per_call({"ours": step, "limit": limit_step.step}, 2 * seconds, rounds=5, warmup=3, min_calls=3)
    vals = interleaved_seconds_per_call({"ours": lambda: stack.evaluate(x_val, y_val), "limit": limit_val.step}, 0.0, rounds=3)
    return steps["ours"], vals["ours"], {"step": limit_step.at(steps["limit"]), "val": limit_val.at(vals["limit"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timing slices (< 1 minute)")
    parser.add_argument("--seconds", type=float, help="timing slice per batch size (default 0.3 with --quick, else 2)")
    parser.add_argument("--images", type=int, default=N_IMAGES, help=f"images in all (default {N_IMAGES:,}, the full size)")
    args = parser.parse_args(argv)
    slice_seconds = args.seconds if args.seconds is not None else 0.3 if args.quick else 2.0
    threads = torch.get_num_threads()
    print(machine_line(threads))

    g = yaml.safe_load((ROOT / "params.yaml").read_text())["e2"]["grid"]
    torch.manual_seed(0)
    x = torch.rand(args.images, N_INPUTS)  # (N, D): content does not change the timing
    y = torch.randint(0, N_CLASSES, (args.images,))
    n_val = args.images // 5
    x_train, y_train, x_val, y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    n_train = len(x_train)
    epochs_per_triple = sum(g["epochs"])  # the grid trains each (batch, lr, hidden) once per epoch count
    model_epochs = len(g["batch"]) * len(g["lr"]) * len(g["hidden"]) * epochs_per_triple
    print(f"E2 grid on {'full-size' if args.images == N_IMAGES else 'reduced'} shapes: {n_train:,} train + {n_val:,} val images x {N_INPUTS}, "
          f"{len(g['batch']) * len(g['lr']) * len(g['hidden']) * len(g['epochs'])} models, {model_epochs:,} model-epochs; "
          f"{torch.get_num_threads()} thread(s)")

    specs = [grid.ModelSpec((h,), lr, 0) for lr in g["lr"] for h in g["hidden"]]
    baseline_total, stacked_total, stack_seconds = 0.0, 0.0, []
    flops_total, limit_total = 0.0, 0.0  # the stacked trainer's GEMM FLOPs over the grid; the GEMMs' time alone
    for batch in g["batch"]:
        steps = -(-n_train // batch)
        base_epoch = 0.0  # seconds for one epoch of every (lr, hidden) model, one at a time
        for hidden in g["hidden"]:
            step, val = baseline_times(x_train, y_train, x_val, y_val, batch, hidden, g["lr"][0], slice_seconds / len(g["hidden"]))
            base_epoch += len(g["lr"]) * (steps * step + val)  # the lr does not change the time
        step, val, limit = stacked_times(x_train, y_train, x_val, y_val, batch, specs, slice_seconds)
        stack_epoch = steps * step + val
        epoch_flops = steps * limit["step"].flops + limit["val"].flops
        limit_epoch = steps * limit["step"].seconds + limit["val"].seconds
        baseline_total += base_epoch * epochs_per_triple
        stacked_total += stack_epoch * max(g["epochs"])
        stack_seconds.append(stack_epoch * max(g["epochs"]))
        flops_total += epoch_flops * max(g["epochs"])
        limit_total += limit_epoch * max(g["epochs"])
        print(f"batch {batch:>3}: one epoch of {len(specs)} models: baseline {base_epoch:7.2f} s, stacked {stack_epoch:6.2f} s; "
              f"stacked {epoch_flops / stack_epoch / 1e9:5.2f} GFLOP/s, its GEMMs alone {epoch_flops / limit_epoch / 1e9:5.2f} "
              f"({limit_epoch / stack_epoch:.0%})")

    two_workers = max(sum(stack_seconds[0::2]), sum(stack_seconds[1::2]))  # stacks dealt out in order to 2 processes
    print(f"baseline, one model at a time: {baseline_total / 60:8.1f} min for the grid, {baseline_total / model_epochs * 1e3:8.1f} ms per model-epoch")
    print(f"stacked trainer, one process:  {stacked_total / 60:8.1f} min for the grid, {stacked_total / model_epochs * 1e3:8.1f} ms per model-epoch")
    print(f"projected full-size 384-model grid, stacked: {stacked_total / 60:.1f} min on one core, about {two_workers / 60:.1f} min on 2 worker processes")
    metrics, timings = ROOT / "metrics/e2.json", ROOT / "timings/e2.json"
    if metrics.exists() and timings.exists():
        n_models = json.loads(metrics.read_text())["e2"]["n_models"]
        seconds = json.loads(timings.read_text())["e2"]["seconds"]
        print(f"embedded grid ({n_models} models, last `dvc repro e2`, timings/e2.json): {seconds:.1f} s")
    ratio = baseline_total / stacked_total
    print(f"speed-up per model-epoch, stacked / baseline: {ratio:.1f}x")
    limit = Limit(f"the stacked trainer's GEMMs alone, same shapes per batch size, weighted as the grid runs them "
                  f"(float32, {threads} thread(s))", flops_total, limit_total)
    result = report_limit(flops_total / stacked_total, limit, peak=gemm_peak(threads=threads, seconds=slice_seconds),
                          ratio=ratio, target=TARGET, fraction_target=FRACTION_TARGET)
    print_record("grid_trainer", ratio=ratio, target=f">= {TARGET:g}x, or >= {FRACTION_TARGET:.0%} of the GEMM limit",
                 threads=threads, precision="fp32", limit=result, slice_seconds=slice_seconds)


if __name__ == "__main__":
    main()
