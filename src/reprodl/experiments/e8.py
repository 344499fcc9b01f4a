"""E8. ResNet-18 on MNIST, three ways.

torchvision's resnet18 with a 1-channel first convolution (pretrained: the RGB filters summed)
and a 10-class head, MNIST resized up, Adam, cross-entropy:

- scratch:           random init, every layer trained;
- pretrained_all:    pretrained weights, every layer trained;
- pretrained_layer4: pretrained weights, only layer4 and fc trained (the rest frozen).

Best by val accuracy -> its test accuracy. A torchinfo layer table with the parameter count
(11,175,370 at 1 channel / 10 classes).

`run_e8(cfg, ...)` takes the `e8` section (config.E8) and the seed; a weights file that does
not exist is a config.ParamError naming e8.weights, raised before any work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torchinfo import summary

from .. import backbones, datasets, engine, io, models
from ..images import Images
from ..config import E8
from ..references import E8_N_PARAMS as N_PARAMS, E8_TEST as REFERENCE_TEST, E8_VAL as REFERENCE_VAL  # the catalogue's numbers, shared with the study page
from ..tables import format_table
from ..tracking import Tracker

VARIANTS = ("scratch", "pretrained_all", "pretrained_layer4")
TRAINED_WHEN_FROZEN = ("layer4", "fc")  # the modules pretrained_layer4 trains


def build_variant(variant: str, arch: str, weights: str, n_classes: int, seed: int) -> nn.Module:
    """resnet18 with a 1-channel stem and an n_classes head; frozen layers for pretrained_layer4."""
    model = backbones.load_backbone(arch, backbones.RANDOM if variant == "scratch" else weights, key="e8.weights", arch_key="e8.arch", seed=seed)
    if variant == "scratch":  # a fresh 1-channel convolution, torchvision's init
        torch.manual_seed(seed)
        old = model.conv1
        model.conv1 = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    else:  # pretrained filters carried over: RGB summed
        backbones.grey_stem(model)
    backbones.replace_head(model, n_classes, seed)
    if variant == "pretrained_layer4":
        for name, p in model.named_parameters():
            p.requires_grad = name.split(".")[0] in TRAINED_WHEN_FROZEN
    return model


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_e8(
    cfg: E8, prepared_dir: Path, *, report_path: Path, summary_path: Path, tracker: Tracker | None = None, seed: int = 0, progress: bool = True,
    device: torch.device | str = "cpu",
) -> dict:
    """Train every variant of cfg.variants; the metrics tree, the report and the layer summary.

    {"e8": {"n_params", variant: {"n_trainable", "precision", "device", "seconds", "train"/"val"/"test": {"accuracy"}},
    "best": {"variant", "val": {"accuracy"}, "test": {"accuracy"}}}}
    """
    if any(v != "scratch" for v in cfg.variants):  # before any work
        backbones.check_weights(cfg.weights, "e8.weights")
    train_cfg = engine.train_config(cfg.train, seed=seed)
    prepared_dir = Path(prepared_dir)
    meta = datasets.load_meta(prepared_dir)
    classes = list(meta["classes"])
    tensors = {}
    for split in datasets.SPLITS:
        sp = datasets.load_split(prepared_dir, split)
        keep = datasets.subsample(sp.y, cfg.max_train_images if split == "train" else None, seed)
        x = Images(torch.from_numpy(sp.x[keep]), cfg.image_size)  # (N, 1, 28, 28) uint8; each batch (B, 1, S, S) float
        tensors[split] = (x, torch.from_numpy(sp.y[keep]))
    results: dict[str, Any] = {}
    n_params = None
    table = None
    for variant in cfg.variants:
        model = build_variant(variant, cfg.arch, cfg.weights, len(classes), seed)
        n_params, n_trainable = models.count_parameters(model), count_trainable(model)
        print(f"e8 {variant}: {n_params:,} parameters, {n_trainable:,} trained")
        if table is None:
            table = str(summary(model, input_size=(1, 1, cfg.image_size, cfg.image_size), verbose=0, col_names=("output_size", "num_params"), depth=3))
            io.write_text(summary_path, table + "\n")
        on_epoch = (lambda epoch, m, v=variant: tracker.epoch(v, epoch, m)) if tracker else None
        start = time.perf_counter()
        history = engine.fit(model, tensors["train"], tensors["val"], train_cfg, on_epoch=on_epoch, progress=progress, desc=f"e8 {variant}", device=device)
        seconds = time.perf_counter() - start
        results[variant] = {"n_trainable": n_trainable, "precision": history.precision, "device": history.device, "seconds": round(seconds, 2)}
        for split, (x, y) in tensors.items():
            results[variant][split] = {"accuracy": engine.evaluate(model, x, y, train_cfg.loss)["accuracy"]}
        if tracker:
            y_pred = engine.predict(model, tensors["test"][0]).argmax(1).numpy()
            tracker.confusion(variant, tensors["test"][1].numpy(), y_pred, classes)
        print(f"e8 {variant}: val {results[variant]['val']['accuracy']:.4f}, test {results[variant]['test']['accuracy']:.4f} ({seconds:.1f} s)")
    best = max(cfg.variants, key=lambda v: results[v]["val"]["accuracy"])
    results["best"] = {"variant": best, "val": {"accuracy": results[best]["val"]["accuracy"]}, "test": {"accuracy": results[best]["test"]["accuracy"]}}
    io.write_text(report_path, e8_report(meta, cfg, train_cfg, n_params, results, best, table or ""))
    return {"e8": {"n_params": n_params, **results}}


def e8_report(meta: dict, cfg: E8, train_cfg: engine.TrainConfig, n_params: int, results: dict, best: str, table: str) -> str:
    rows = [
        (v, f"{n_params:,}", f"{results[v]['n_trainable']:,}", f"{results[v]['train']['accuracy']:.4f}",
         f"{results[v]['val']['accuracy']:.4f}", f"{results[v]['test']['accuracy']:.4f}", f"{REFERENCE_VAL[v]:.4f}",
         results[v]["precision"], f"{results[v]['seconds']:.1f}")
        for v in cfg.variants
    ]
    sizes = meta["sizes"]
    parts = [
        "# E8. ResNet-18 on MNIST, three ways",
        "",
        f"Data: {meta['source']} ({meta['profile']} profile), resized to {cfg.image_size} px; train "
        f"{min(cfg.max_train_images or sizes['train'], sizes['train']):,} of {sizes['train']:,}, val {sizes['val']:,}, test {sizes['test']:,}. "
        f"Pretrained weights: `{cfg.weights}` (first convolution: RGB filters summed). Training: `{train_cfg}`.",
        "",
        format_table(rows, ("variant", "parameters", "trained", "train acc", "val acc", "test acc", "reference val (full, 224 px)", "precision", "seconds")),
        "",
        f"Best by val: **{best}**, test accuracy {results['best']['test']['accuracy']:.4f} (reference: {REFERENCE_TEST:.4f}).",
        f"Parameters: {n_params:,} (reference {N_PARAMS:,}: {'matches' if n_params == N_PARAMS else 'DIFFERS'}).",
        "",
        "## Layer summary (torchinfo)",
        "",
        "```",
        table,
        "```",
    ]
    return "\n".join(parts) + "\n"
