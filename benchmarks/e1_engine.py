"""Benchmark: one epoch of the E1 ConvNet, our engine vs a standard DataLoader loop.

Both train the same model (params.yaml e1.convnet), from the same initial weights, on the
same images, with the same batch size, optimiser and learning rate, in this one run:

- baseline: the loop of pytorch/examples' mnist: a Dataset that turns each uint8 image into
  a PIL image, then transforms.ToTensor() + Normalize, a DataLoader (shuffle, batch_size),
  a contiguous fp32 model.
- ours: reprodl.engine.fit: images held as one tensor, batches as index slices of a seeded
  permutation, channels-last convolutions, freed buffers kept in the heap (reprodl.heap).

Neither augments (the baseline has no augmentation), so the ratio is the engine's alone.
Each loop runs in its own Python process, as it would for a user: the engine's heap
setting is process-wide and must not leak into the baseline's process
(`--tuned-baseline` gives the baseline that setting too, to show what it accounts for).
The two alternate for a few rounds (fresh models from the same initial weights each round),
so a slow spell on a shared machine hits both rather than one; prints images/s for each in
every round, and last the median of the per-round ratios. --quick: the embedded training
split once per round (about 4,000 images); default: tiled to a full MNIST epoch (60,000).

    python benchmarks/e1_engine.py --quick
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torchvision import transforms

from reprodl import datasets, engine, models
from reprodl.experiments.e1 import check_params
from reprodl.heap import retain_freed_memory
from reprodl.params import check_data

ROOT = Path(__file__).resolve().parents[1]


class PilMnist(torch.utils.data.Dataset):
    """Per-image decoding as torchvision's MNIST dataset does it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i, 0], mode="L")), int(self.labels[i])


def baseline_epoch(model, images, labels, batch_size, lr, momentum, warmup: int) -> float:
    loader = torch.utils.data.DataLoader(PilMnist(images, labels), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    start, seen = None, 0
    for step, (data, target) in enumerate(loader):
        if step == warmup:  # first batches build the convolution kernels: not timed
            start, seen = time.perf_counter(), 0
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        seen += len(data)
    return seen / (time.perf_counter() - start)


def engine_epoch(model, images, labels, batch_size, lr, momentum, warmup: int) -> float:
    x, y = engine.to_tensor_images(images), torch.from_numpy(labels)  # (N, 1, 28, 28), (N,)
    warm = engine.TrainConfig(epochs=1, batch_size=batch_size, lr=lr, momentum=momentum, max_batches=warmup)
    engine.fit(model, (x[: warmup * batch_size], y[: warmup * batch_size]), None, warm, progress=False)
    cfg = engine.TrainConfig(epochs=1, batch_size=batch_size, lr=lr, momentum=momentum)
    start = time.perf_counter()
    engine.fit(model, (x, y), None, cfg, progress=False)
    return len(x) / (time.perf_counter() - start)


def loop_process(tuned_heap: bool) -> ProcessPoolExecutor:
    """A new interpreter (spawned, not forked) for one of the two loops."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_start_loop_process, initargs=(tuned_heap,))


def _start_loop_process(tuned_heap: bool) -> None:
    if tuned_heap:
        retain_freed_memory()


def _measure(loop: str, spec: dict, *args) -> float:
    epoch = engine_epoch if loop == "engine" else baseline_epoch
    return epoch(models.build_model(spec, seed=0), *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the embedded training split once (< 1 minute)")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/engine pairs; the median ratio is reported")
    parser.add_argument("--tuned-baseline", action="store_true", help="apply reprodl.heap to the baseline's process too")
    parser.add_argument("--prepared", default=str(ROOT / "data/prepared/mnist"), help="prepared MNIST folder")
    args = parser.parse_args()

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = check_params(params["e1"], check_data(params["data"]), params["seed"])["convnet"]
    train = cfg["train"]
    prepared = Path(args.prepared)
    if not (prepared / "train.npz").exists():
        raise SystemExit(f"{prepared} not found: run `dvc repro prepare@mnist` first")
    split = datasets.load_split(prepared, "train")
    images, labels = split.x, split.y
    if not args.quick:  # a full MNIST epoch: 60,000 images
        reps = int(np.ceil(60_000 / len(images)))
        images, labels = np.tile(images, (reps, 1, 1, 1))[:60_000], np.tile(labels, reps)[:60_000]
    spec = {**cfg["spec"], "in_channels": 1, "image_size": 28, "n_classes": 10}
    warmup = 5
    print(f"E1 ConvNet {cfg['spec']['channels']}, hidden {cfg['spec']['hidden']}: one epoch of {len(images):,} images, "
          f"batch {train.batch_size}, SGD lr {train.lr}, momentum {train.momentum}, {torch.get_num_threads()} threads")
    ratios = []
    loop_args = (spec, images, labels, train.batch_size, train.lr, train.momentum, warmup)
    with loop_process(args.tuned_baseline) as baseline_process, loop_process(True) as engine_process:
        for r in range(1, args.rounds + 1):
            base = baseline_process.submit(_measure, "baseline", *loop_args).result()
            ours = engine_process.submit(_measure, "engine", *loop_args).result()
            ratios.append(ours / base)
            print(f"round {r}: baseline (PIL Dataset + DataLoader, pytorch/examples style) {base:,.0f} images/s; "
                  f"reprodl engine (tensors, index batches, channels-last) {ours:,.0f} images/s; ratio {ours / base:.2f}x")
    print(f"speed-up engine / baseline (median of {len(ratios)} rounds): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
