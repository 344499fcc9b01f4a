"""Benchmark: one epoch of the E1 ConvNet, our engine vs a standard DataLoader loop.

Both train the E1 ConvNet as params.yaml (e1.convnet) configures it: the same model, initial
weights, images, batch size, optimiser (SGD, momentum, weight decay) and learning-rate
schedule, in this one run:

- baseline: the loop of pytorch/examples' mnist: a Dataset that turns each uint8 image into
  a PIL image, then torchvision transforms per image (RandomAffine for the configured
  jitter, ToTensor, Normalize), a DataLoader (shuffle, batch_size, no worker processes, as
  that example runs on a CPU), a contiguous fp32 model.
- ours: reprodl.engine.fit: images held as one tensor, batches as index slices of a seeded
  permutation, the jitter drawn per image but applied to the whole batch in one grid_sample,
  channels-last convolutions, freed buffers kept in the heap (reprodl.heap), and the
  configured precision (e1.convnet.precision: auto means bf16 autocast on a CPU with native
  bf16, fp32 elsewhere; `--precision` overrides it).

Two settings, each one epoch of 60,000 images (the prepared training split tiled to full MNIST
size): "no augmentation" (pytorch/examples' loop as it is), then "as configured"
(e1.convnet.augment on both sides), whose ratio is printed last. --quick: the first 250 batches
of each.

Each loop lives in its own Python process, as it would for a user: the engine's heap
setting is process-wide and must not leak into the baseline's process (`--tuned-baseline`
gives the baseline that setting too, to show what it accounts for). The epoch is cut into
chunks of `--chunk` batches and the two loops take turns chunk by chunk (who goes first
alternates), so that the slow spells of a shared machine, which here move the speed of the
same code by up to 50% from one minute to the next, hit both loops alike. The engine runs
each chunk as one `engine.fit` call (max_batches=chunk); the baseline resumes its
DataLoader. Printed per setting: images/s of each over the whole epoch, and the median of
the per-chunk ratios, the measurement of record.

The limit: after each chunk, the main process times the ConvNet's own two convolutions and two
linear layers alone, forward and backward, on pre-made tensors of a batch's shape, channels-last,
in the engine's precision (timing.layer_work), while both loops wait. Printed: the fraction of
that throughput the engine's whole training step reaches (medians over the chunks), the
baseline's, and a verdict on the 3x target: our slack or the hardware.

    python benchmarks/e1_engine.py --quick   # 250 batches (16,000 images) per setting, under a minute
    python benchmarks/e1_engine.py           # a full MNIST epoch, 60,000 images per setting
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from reprodl import datasets, engine, models
from reprodl.config import load_params
from reprodl.experiments.e1 import training_jobs
from reprodl.heap import retain_freed_memory
from reprodl.precision import PRECISIONS, use_bf16
from timing import Work, layer_work, machine_line, print_record, report_limit, seconds_per_call  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
WARMUP_BATCHES = 5  # the first batches build the convolution kernels: not timed
QUICK_BATCHES = 250  # --quick: 16,000 images per setting
TARGET = 3.0  # engine / baseline, as configured
LIMIT_CALLS = 5  # training steps of the layers alone timed after each chunk
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pytorch/examples' Normalize


class PilMnist(torch.utils.data.Dataset):
    """Per-image decoding and transforms, as torchvision's MNIST dataset and pytorch/examples do it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: engine.Augment):
        self.images, self.labels = images, labels
        per_image = []
        if augment.active:  # the engine's jitter, the torchvision way: one PIL affine warp per image
            side = images.shape[-1]
            per_image.append(transforms.RandomAffine(
                degrees=augment.rotate,
                translate=(augment.shift / side, augment.shift / side),
                scale=(1 - augment.scale, 1 + augment.scale),
                interpolation=transforms.InterpolationMode.BILINEAR,
            ))
        self.transform = transforms.Compose([*per_image, transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i, 0], mode="L")), int(self.labels[i])


class BaselineLoop:
    """pytorch/examples' train loop, run a chunk of batches at a time."""

    def __init__(self, spec: dict, images: np.ndarray, labels: np.ndarray, train: engine.TrainConfig):
        self.model = models.build_model(spec, seed=0)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
        self.loader = torch.utils.data.DataLoader(
            PilMnist(images, labels, train.augment), batch_size=train.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        # Room for the warm-up and one restart of the loader (the rates themselves do not change the speed).
        self.schedule = engine.make_schedule(train.schedule, self.optimizer, train.lr, 2 * len(self.loader) + WARMUP_BATCHES)
        self.batches = iter(self.loader)
        self.model.train()
        if WARMUP_BATCHES:
            self.run(WARMUP_BATCHES)

    def run(self, n_batches: int) -> tuple[int, float]:
        start, seen = time.perf_counter(), 0
        for _ in range(n_batches):
            data, target = next(self.batches, (None, None))
            if data is None:  # the warm-up batches came out of this epoch: start the next one
                self.batches = iter(self.loader)
                data, target = next(self.batches)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(data), target)
            loss.backward()
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
            seen += len(data)
        return seen, time.perf_counter() - start


class EngineLoop:
    """reprodl.engine.fit on the images as one tensor, a chunk of batches per call."""

    def __init__(self, spec: dict, images: np.ndarray, labels: np.ndarray, train: engine.TrainConfig):
        self.x, self.y = engine.to_tensor_images(images), torch.from_numpy(labels)  # (N, 1, 28, 28), (N,)
        self.model = models.build_model(spec, seed=0)
        self.train = replace(train, epochs=1)
        self.calls = 0
        if WARMUP_BATCHES:
            self.run(WARMUP_BATCHES)

    def run(self, n_batches: int) -> tuple[int, float]:
        self.calls += 1  # each call draws its own permutation
        cfg = replace(self.train, max_batches=n_batches, seed=self.train.seed + self.calls)
        start = time.perf_counter()
        engine.fit(self.model, (self.x, self.y), None, cfg, progress=False)
        return n_batches * cfg.batch_size, time.perf_counter() - start


_LOOP: BaselineLoop | EngineLoop | None = None  # the one loop of this worker process


def _start_process(tuned_heap: bool) -> None:
    if tuned_heap:
        retain_freed_memory()


def _build(kind: str, *args) -> None:
    global _LOOP
    _LOOP = (EngineLoop if kind == "engine" else BaselineLoop)(*args)


def _run(n_batches: int) -> tuple[int, float]:
    assert _LOOP is not None
    return _LOOP.run(n_batches)


def loop_process(tuned_heap: bool) -> ProcessPoolExecutor:
    """A new interpreter (spawned, not forked) for one of the two loops."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_start_process, initargs=(tuned_heap,))


def compare(name: str, processes: dict[str, ProcessPoolExecutor], loop_args: tuple, n_batches: int, chunk: int,
            verbose: bool = False, limit: Work | None = None) -> dict[str, float]:
    """One epoch of both loops, chunk by chunk in turns (and the limit after each chunk); prints
    and returns the medians over the chunks: ratio, images/s of each, the limit's FLOP/s."""
    for kind, process in processes.items():
        process.submit(_build, kind, *loop_args).result()
    totals = {kind: [0, 0.0] for kind in processes}
    speeds: dict[str, list[float]] = {"baseline": [], "engine": [], "limit": []}
    ratios = []
    done, turn = 0, 0
    if limit is not None:
        limit.step()  # warm-up
    while done < n_batches:
        n = min(chunk, n_batches - done)
        order = list(processes) if turn % 2 == 0 else list(reversed(processes))
        speed = {}
        for kind in order:
            seen, seconds = processes[kind].submit(_run, n).result()
            totals[kind][0] += seen
            totals[kind][1] += seconds
            speed[kind] = seen / seconds
            speeds[kind].append(speed[kind])
        ratios.append(speed["engine"] / speed["baseline"])
        if limit is not None:
            speeds["limit"].append(limit.flops / seconds_per_call(limit.step, 0.0, warmup=0, min_calls=LIMIT_CALLS))
        if verbose:
            print(f"  chunk {turn + 1} ({order[0]} first): baseline {speed['baseline']:,.0f}, engine {speed['engine']:,.0f} images/s, {ratios[-1]:.2f}x")
        done, turn = done + n, turn + 1
    base, ours = (totals[k][0] / totals[k][1] for k in ("baseline", "engine"))
    median = statistics.median(ratios)
    print(f"{name}: baseline {base:,.0f} images/s, engine {ours:,.0f} images/s; "
          f"chunk ratios {min(ratios):.2f}x-{max(ratios):.2f}x over {len(ratios)} chunks, median {median:.2f}x")
    return {"ratio": median, **{k: statistics.median(v) for k, v in speeds.items() if v}}


def limit_work(spec: dict, train: engine.TrainConfig) -> Work:
    """The ConvNet's convolutions and linear layers of one training step, alone (timing.layer_work)."""
    model = models.build_model(spec, seed=0).to(memory_format=torch.channels_last)
    x = torch.zeros(1, spec["in_channels"], spec["image_size"], spec["image_size"]).contiguous(memory_format=torch.channels_last)

    def one_step():  # one image, forward and backward: the layers and their shapes
        F.cross_entropy(model(x), torch.zeros(1, dtype=torch.long)).backward()

    dtype = torch.bfloat16 if use_bf16(train.precision) else torch.float32
    return layer_work(model, one_step, batch=train.batch_size, dtype=dtype, channels_last=train.channels_last, train=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_BATCHES} batches of the epoch per setting (under a minute)")
    parser.add_argument("--chunk", type=int, default=25, help="batches per turn of each loop")
    parser.add_argument("--precision", choices=PRECISIONS, help="override e1.convnet.precision for the engine")
    parser.add_argument("--verbose", action="store_true", help="print every chunk's speeds")
    parser.add_argument("--tuned-baseline", action="store_true", help="apply reprodl.heap to the baseline's process too")
    parser.add_argument("--prepared", default=str(ROOT / "data/prepared/mnist"), help="prepared MNIST folder")
    parser.add_argument("--batches", type=int, help="batches per setting (default: the epoch, or --quick's)")
    parser.add_argument("--images", type=int, default=60_000, help="the epoch's images, tiled from the prepared split (default: full MNIST)")
    args = parser.parse_args(argv)

    params = load_params(ROOT / "params.yaml")
    # The ConvNet exactly as stage e1 builds it: its model spec and the engine's TrainConfig.
    _, spec, train = training_jobs(params.e1.model_copy(update={"models": ["convnet"]}), 784, 10, (1, 28, 28), params.seed)[0]
    train = train if args.precision is None else replace(train, precision=args.precision)
    prepared = Path(args.prepared)
    if not (prepared / "train.npz").exists():
        raise SystemExit(f"{prepared} not found: run `dvc repro prepare@mnist` first")
    split = datasets.load_split(prepared, "train")
    # The training set at full MNIST size (60,000 images, 47 MB as uint8), tiled from the prepared
    # split: what one MNIST epoch reads. --quick trains the first 250 batches of that epoch.
    n_images = args.images
    reps = -(-n_images // len(split.x))
    images, labels = np.tile(split.x, (reps, 1, 1, 1))[:n_images], np.tile(split.y, reps)[:n_images]
    n_batches = args.batches or (QUICK_BATCHES if args.quick else len(images) // train.batch_size)
    precision = "bf16 autocast" if use_bf16(train.precision) else "fp32"
    threads = torch.get_num_threads()
    print(machine_line(threads))
    print(f"E1 ConvNet {spec['channels']}, hidden {spec['hidden']}, dropout {spec['dropout']}: "
          f"{n_batches} batches of {train.batch_size} ({n_batches * train.batch_size:,} images) per setting, SGD lr {train.lr} "
          f"({train.schedule}), momentum {train.momentum}, weight decay {train.weight_decay}; {torch.get_num_threads()} threads; "
          f"engine precision {train.precision} -> {precision}, baseline fp32")
    with loop_process(args.tuned_baseline) as baseline_process, loop_process(True) as engine_process:
        processes = {"baseline": baseline_process, "engine": engine_process}
        plain = replace(train, augment=engine.Augment())
        limit = limit_work(spec, train)
        flops_per_image = limit.flops / train.batch_size
        plain_result = compare("no augmentation", processes, (spec, images, labels, plain), n_batches, args.chunk, args.verbose, limit)
        print(f"  no augmentation: engine at {flops_per_image * plain_result['engine'] / plain_result['limit']:.0%} of the limit, "
              f"baseline at {flops_per_image * plain_result['baseline'] / plain_result['limit']:.0%}")
        a = train.augment
        name = f"as configured (augment: shift {a.shift:g} px, rotate {a.rotate:g} deg, scale {a.scale:g})" if a.active else "as configured (no augmentation)"
        result = compare(name, processes, (spec, images, labels, train), n_batches, args.chunk, args.verbose, limit)
    median = result["ratio"]
    what = f"the first {n_batches} batches of an epoch" if n_batches < len(images) // train.batch_size else "one epoch"
    print(f"speed-up engine / baseline, {what} of the E1 ConvNet as configured (median of chunk ratios): {median:.2f}x")
    verdict = report_limit(flops_per_image * result["engine"], limit.at(limit.flops / result["limit"]),
                           baseline_rate=flops_per_image * result["baseline"], ratio=median, target=TARGET)
    print_record("e1_engine", ratio=median, target=f">= {TARGET:g}x", threads=threads, precision="bf16" if use_bf16(train.precision) else "fp32",
                 limit=verdict, batches=n_batches, no_augmentation_ratio=round(plain_result["ratio"], 3))


if __name__ == "__main__":
    main()
