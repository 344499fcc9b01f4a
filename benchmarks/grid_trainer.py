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
full-size grid time of the stacked trainer, the embedded grid's measured time, and the ratio
last. One thread (set OMP_NUM_THREADS=1 on a shared machine). --quick: shorter slices.

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
from timing import cpu_name, seconds_per_call  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES, N_INPUTS, N_CLASSES = 63_000, 784, 10


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

    return seconds_per_call(step, seconds, warmup=3, min_calls=3), seconds_per_call(validate, 0.0, warmup=1, min_calls=3)


def stacked_times(x, y, x_val, y_val, batch: int, specs: list[grid.ModelSpec], seconds: float) -> tuple[float, float]:
    """(seconds per training step of the whole stack, seconds per val pass of the whole stack)."""
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

    return seconds_per_call(step, seconds, warmup=3, min_calls=3), seconds_per_call(lambda: stack.evaluate(x_val, y_val), 0.0, warmup=1, min_calls=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timing slices (< 1 minute)")
    args = parser.parse_args()
    slice_seconds = 0.3 if args.quick else 2.0
    print(f"CPU: {cpu_name()}; {torch.get_num_threads()} torch threads")

    g = yaml.safe_load((ROOT / "params.yaml").read_text())["e2"]["grid"]
    torch.manual_seed(0)
    x = torch.rand(N_IMAGES, N_INPUTS)  # (N, D): content does not change the timing
    y = torch.randint(0, N_CLASSES, (N_IMAGES,))
    n_val = N_IMAGES // 5
    x_train, y_train, x_val, y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    n_train = len(x_train)
    epochs_per_triple = sum(g["epochs"])  # the grid trains each (batch, lr, hidden) once per epoch count
    model_epochs = len(g["batch"]) * len(g["lr"]) * len(g["hidden"]) * epochs_per_triple
    print(f"E2 grid on full-size shapes: {n_train:,} train + {n_val:,} val images x {N_INPUTS}, "
          f"{len(g['batch']) * len(g['lr']) * len(g['hidden']) * len(g['epochs'])} models, {model_epochs:,} model-epochs; "
          f"{torch.get_num_threads()} thread(s)")

    specs = [grid.ModelSpec((h,), lr, 0) for lr in g["lr"] for h in g["hidden"]]
    baseline_total, stacked_total, stack_seconds = 0.0, 0.0, []
    for batch in g["batch"]:
        steps = -(-n_train // batch)
        base_epoch = 0.0  # seconds for one epoch of every (lr, hidden) model, one at a time
        for hidden in g["hidden"]:
            step, val = baseline_times(x_train, y_train, x_val, y_val, batch, hidden, g["lr"][0], slice_seconds / len(g["hidden"]))
            base_epoch += len(g["lr"]) * (steps * step + val)  # the lr does not change the time
        step, val = stacked_times(x_train, y_train, x_val, y_val, batch, specs, slice_seconds)
        stack_epoch = steps * step + val
        baseline_total += base_epoch * epochs_per_triple
        stacked_total += stack_epoch * max(g["epochs"])
        stack_seconds.append(stack_epoch * max(g["epochs"]))
        print(f"batch {batch:>3}: one epoch of {len(specs)} models: baseline {base_epoch:7.2f} s, stacked {stack_epoch:6.2f} s")

    two_workers = max(sum(stack_seconds[0::2]), sum(stack_seconds[1::2]))  # stacks dealt out in order to 2 processes
    print(f"baseline, one model at a time: {baseline_total / 60:8.1f} min for the grid, {baseline_total / model_epochs * 1e3:8.1f} ms per model-epoch")
    print(f"stacked trainer, one process:  {stacked_total / 60:8.1f} min for the grid, {stacked_total / model_epochs * 1e3:8.1f} ms per model-epoch")
    print(f"projected full-size 384-model grid, stacked: {stacked_total / 60:.1f} min on one core, about {two_workers / 60:.1f} min on 2 worker processes")
    metrics, timings = ROOT / "metrics/e2.json", ROOT / "timings/e2.json"
    if metrics.exists() and timings.exists():
        n_models = json.loads(metrics.read_text())["e2"]["n_models"]
        seconds = json.loads(timings.read_text())["e2"]["seconds"]
        print(f"embedded grid ({n_models} models, last `dvc repro e2`, timings/e2.json): {seconds:.1f} s")
    print(f"speed-up per model-epoch, stacked / baseline: {baseline_total / stacked_total:.1f}x")


if __name__ == "__main__":
    main()
