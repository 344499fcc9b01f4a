"""The E1 engine benchmark's two loops: the same training, two ways (speed is the script's business)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms

from reprodl import datasets, engine

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("e1_engine", ROOT / "benchmarks" / "e1_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPEC = {"kind": "convnet", "channels": [4, 8], "kernel": 5, "hidden": 16, "dropout": 0.25, "in_channels": 1, "image_size": 28, "n_classes": 10}
TRAIN = engine.TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="onecycle",
                           augment=engine.Augment(shift=2, rotate=10, scale=0.1))


def test_both_loops_train_the_same_model_from_the_same_weights(prepared_mnist, monkeypatch):
    bench = load_benchmark()
    monkeypatch.setattr(bench, "WARMUP_BATCHES", 0)  # look at the weights before any step
    split = datasets.load_split(prepared_mnist, "train")  # 240 images
    baseline = bench.BaselineLoop(SPEC, split.x, split.y, TRAIN)
    ours = bench.EngineLoop(SPEC, split.x, split.y, TRAIN)
    start = {n: p.detach().clone() for n, p in ours.model.named_parameters()}
    assert [(n, p.shape) for n, p in baseline.model.named_parameters()] == [(n, p.shape) for n, p in start.items()]
    assert all(torch.equal(p, start[n]) for n, p in baseline.model.named_parameters())
    for loop in (baseline, ours):
        images, seconds = loop.run(3)
        assert images == 3 * TRAIN.batch_size and seconds > 0
        assert any(not torch.equal(p, start[n]) for n, p in loop.model.named_parameters()), "it trained"


def test_the_baseline_jitters_each_image_as_the_engine_is_configured_to():
    bench = load_benchmark()
    images, labels = np.zeros((4, 1, 28, 28), np.uint8), np.arange(4)
    affine = bench.PilMnist(images, labels, TRAIN.augment).transform.transforms[0]
    assert isinstance(affine, transforms.RandomAffine)
    assert affine.degrees == [-10.0, 10.0] and affine.translate == (2 / 28, 2 / 28) and affine.scale == (0.9, 1.1)
    plain = bench.PilMnist(images, labels, engine.Augment()).transform.transforms
    assert not any(isinstance(t, transforms.RandomAffine) for t in plain), "no augmentation: pytorch/examples' transforms"


def test_the_baseline_loader_restarts_when_the_epoch_runs_out(prepared_mnist):
    bench = load_benchmark()
    split = datasets.load_split(prepared_mnist, "train")
    small = replace(TRAIN, batch_size=100, augment=engine.Augment())  # 3 batches an epoch, 5 of them warm-up
    images, _ = bench.BaselineLoop(SPEC, split.x, split.y, small).run(4)
    assert images > 0
