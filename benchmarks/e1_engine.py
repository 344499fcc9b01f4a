"""Benchmark: one epoch of the E1 ConvNet, our engine vs a standard DataLoader loop.

Both train the same model (params.yaml e1.convnet), from the same initial weights, on the
same images, with the same batch size, optimiser and learning rate, in this one run:

- baseline: the loop of pytorch/examples' mnist: a Dataset that turns each uint8 image into
  a PIL image, then transforms.ToTensor() + Normalize, a DataLoader (shuffle, batch_size),
  a contiguous fp32 model.
- ours: reprodl.engine.fit: images held as one tensor, batches as index slices of a seeded
  permutation, channels-last convolutions.

Neither augments (the baseline has no augmentation), so the ratio is the engine's alone.
Prints images/s for each, and the ratio last. --quick: the embedded training split once
(about 4,000 images); default: tiled to a full MNIST epoch (60,000 images).

    python benchmarks/e1_engine.py --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torchvision import transforms

from reprodl import datasets, engine, models
from reprodl.experiments.e1 import check_params
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the embedded training split once (< 1 minute)")
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
    base = baseline_epoch(models.build_model(spec, seed=0), images, labels, train.batch_size, train.lr, train.momentum, warmup)
    print(f"baseline (PIL Dataset + DataLoader, pytorch/examples style): {base:,.0f} images/s")
    ours = engine_epoch(models.build_model(spec, seed=0), images, labels, train.batch_size, train.lr, train.momentum, warmup)
    print(f"reprodl engine (tensors, index batches, channels-last):      {ours:,.0f} images/s")
    print(f"speed-up engine / baseline: {ours / base:.2f}x")


if __name__ == "__main__":
    main()
