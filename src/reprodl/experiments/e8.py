"""E8. ResNet-18 on MNIST, three ways.

torchvision's resnet18 with a 1-channel first convolution (pretrained: the RGB filters summed)
and a 10-class head, MNIST resized up, Adam, cross-entropy:

- scratch:           random init, every layer trained;
- pretrained_all:    pretrained weights, every layer trained;
- pretrained_layer4: pretrained weights, only layer4 and fc trained (the rest frozen).

Best by val accuracy -> its test accuracy. A torchinfo layer table with the parameter count
(11,175,370 at 1 channel / 10 classes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Protocol

import torch
import torch.nn as nn
from torchinfo import summary

from .. import backbones, datasets, engine, io, models
from ..params import ParamError, check_dataset_name, check_train, get, non_empty_list, one_of, positive_int
from ..tables import format_table

VARIANTS = ("scratch", "pretrained_all", "pretrained_layer4")
TRAINED_WHEN_FROZEN = ("layer4", "fc")  # the modules pretrained_layer4 trains
REFERENCE_VAL = {"scratch": 0.9909, "pretrained_all": 0.9874, "pretrained_layer4": 0.9157}  # catalogue, full MNIST at 224 px
REFERENCE_TEST = 0.9924
N_PARAMS = 11_175_370


class Tracker(Protocol):
    def epoch(self, model: str, epoch: int, metrics: dict[str, float]) -> None: ...

    def confusion(self, model: str, y_true, y_pred, labels: list[str]) -> None: ...


def check_params(e8: Mapping, data: Mapping, seed: int) -> dict:
    """The `e8` section -> plain values and the engine's TrainConfig."""
    variants = non_empty_list(get(e8, "variants", "e8"), "e8.variants")
    for i, v in enumerate(variants):
        one_of(v, f"e8.variants[{i}]", VARIANTS)
    weights = get(e8, "weights", "e8")
    if not isinstance(weights, str) or not weights:
        raise ParamError("e8.weights", f"must be {backbones.HUB!r}, {backbones.RANDOM!r} or the path of a weights file, got {weights!r}")
    max_images = get(e8, "max_train_images", "e8", None)
    return {
        "dataset": check_dataset_name(get(e8, "dataset", "e8"), "e8.dataset", data, task="multiclass"),
        "arch": one_of(get(e8, "arch", "e8"), "e8.arch", ("resnet18",)),
        "weights": weights,
        "image_size": positive_int(get(e8, "image_size", "e8"), "e8.image_size"),
        "max_train_images": None if max_images is None else positive_int(max_images, "e8.max_train_images"),
        "variants": list(dict.fromkeys(variants)),
        "train": check_train(get(e8, "train", "e8"), "e8.train", seed),
    }


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


def run_e8(cfg: dict, prepared_dir: Path, *, report_path: Path, summary_path: Path, tracker: Tracker | None = None, seed: int = 0, progress: bool = True) -> dict:
    prepared_dir = Path(prepared_dir)
    meta = datasets.load_meta(prepared_dir)
    classes = list(meta["classes"])
    tensors = {}
    for split in datasets.SPLITS:
        sp = datasets.load_split(prepared_dir, split)
        keep = datasets.subsample(sp.y, cfg["max_train_images"] if split == "train" else None, seed)
        x = backbones.prepare_images(engine.to_tensor_images(sp.x[keep]), cfg["image_size"])  # (N, 1, S, S)
        tensors[split] = (x, torch.from_numpy(sp.y[keep]))
    results: dict[str, Any] = {}
    table = None
    for variant in cfg["variants"]:
        model = build_variant(variant, cfg["arch"], cfg["weights"], len(classes), seed)
        n_params, n_trainable = models.count_parameters(model), count_trainable(model)
        print(f"e8 {variant}: {n_params:,} parameters, {n_trainable:,} trained")
        if table is None:
            table = str(summary(model, input_size=(1, 1, cfg["image_size"], cfg["image_size"]), verbose=0, col_names=("output_size", "num_params"), depth=3))
            io.write_text(summary_path, table + "\n")
        on_epoch = (lambda epoch, m, v=variant: tracker.epoch(v, epoch, m)) if tracker else None
        start = time.perf_counter()
        engine.fit(model, tensors["train"], tensors["val"], cfg["train"], on_epoch=on_epoch, progress=progress, desc=f"e8 {variant}")
        seconds = time.perf_counter() - start
        results[variant] = {"n_params": n_params, "n_trainable": n_trainable, "seconds": round(seconds, 2)}
        for split, (x, y) in tensors.items():
            results[variant][split] = engine.evaluate(model, x, y, "cross_entropy")
        if tracker:
            y_pred = engine.predict(model, tensors["test"][0]).argmax(1).numpy()
            tracker.confusion(variant, tensors["test"][1].numpy(), y_pred, classes)
        print(f"e8 {variant}: val {results[variant]['val']['accuracy']:.4f}, test {results[variant]['test']['accuracy']:.4f} ({seconds:.1f} s)")
    best = max(cfg["variants"], key=lambda v: results[v]["val"]["accuracy"])
    results["best"] = {"val": {"accuracy": results[best]["val"]["accuracy"]}, "test": {"accuracy": results[best]["test"]["accuracy"]}}
    io.write_text(report_path, e8_report(meta, cfg, results, best, table or ""))
    return {"e8": results}


def e8_report(meta: dict, cfg: dict, results: dict, best: str, table: str) -> str:
    rows = [
        (v, f"{results[v]['n_params']:,}", f"{results[v]['n_trainable']:,}", f"{results[v]['train']['accuracy']:.4f}",
         f"{results[v]['val']['accuracy']:.4f}", f"{results[v]['test']['accuracy']:.4f}", f"{REFERENCE_VAL[v]:.4f}", f"{results[v]['seconds']:.1f}")
        for v in cfg["variants"]
    ]
    n_params = results[cfg["variants"][0]]["n_params"]
    sizes = meta["sizes"]
    parts = [
        "# E8. ResNet-18 on MNIST, three ways",
        "",
        f"Data: {meta['source']} ({meta['profile']} profile), resized to {cfg['image_size']} px; train "
        f"{cfg['max_train_images'] or sizes['train']:,} of {sizes['train']:,}, val {sizes['val']:,}, test {sizes['test']:,}. "
        f"Pretrained weights: `{cfg['weights']}` (first convolution: RGB filters summed). Training: `{cfg['train']}`.",
        "",
        format_table(rows, ("variant", "parameters", "trained", "train acc", "val acc", "test acc", "reference val (full, 224 px)", "seconds")),
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
