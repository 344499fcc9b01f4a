"""The embedded profile's stand-in for ImageNet pretraining.

Trains torchvision's resnet50 / resnet18 (exactly the modules E7 and E8 load) on a source
task that shares no image with their targets, and saves each as a weights file that
reprodl.backbones.load_backbone reads like a downloaded one.

Source: the *train split only* of the colour digits (data/prepared/stanford_dogs in the
embedded profile), 10-way classification of RGB digits on random colours. Its split is the
MNIST split (same images, seed and fractions), so its train split holds only MNIST train
digits: no val or test digit of E8 (MNIST) and no digit of E7's val or test scenes (composed
from the MNIST val / test digits) is ever seen in pretraining. It is RGB like the scenes, and
a different task (one centred digit, one label) from E7's multi-label scenes. USPS (sklearn's
8x8 digits, other writers) is the other allowed source: fully disjoint, but 1,437 grey 8x8
images make weaker features.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import backbones, datasets, engine
from ..params import ParamError, check_dataset_name, check_train, get, non_empty_list, one_of, positive_int

SOURCES = ("stanford_dogs", "usps")  # the targets (mnist, voc2007) and their digits are never a source


def check_params(section: Mapping, data: Mapping, seed: int) -> dict:
    """The `pretrain` section -> {"dataset", "image_size", "max_images", "archs", per-arch TrainConfig}."""
    dataset = get(section, "dataset", "pretrain")
    if dataset not in SOURCES:
        raise ParamError(
            "pretrain.dataset",
            f"must be one of {', '.join(SOURCES)} (a source that shares no image with the targets mnist and voc2007); got {dataset!r}",
        )
    out: dict[str, Any] = {
        "dataset": check_dataset_name(dataset, "pretrain.dataset", data, task="multiclass"),
        "image_size": positive_int(get(section, "image_size", "pretrain"), "pretrain.image_size"),
        "archs": [],
    }
    max_images = get(section, "max_images", "pretrain", None)
    out["max_images"] = None if max_images is None else positive_int(max_images, "pretrain.max_images")
    for i, arch in enumerate(non_empty_list(get(section, "archs", "pretrain"), "pretrain.archs")):
        one_of(arch, f"pretrain.archs[{i}]", backbones.ARCHS)
        out["archs"].append(arch)
        out[arch] = check_train(get(section, arch, "pretrain"), f"pretrain.{arch}", seed)
    return out


def source_images(
    prepared_dir: Path, image_size: int, max_images: int | None, seed: int, split_name: str = "train",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of the source as RGB (N, 3, size, size) standardised images and labels (N,)."""
    split = datasets.load_split(prepared_dir, split_name)
    keep = datasets.subsample(split.y, max_images, seed)
    x = engine.to_tensor_images(split.x[keep])  # (N, C, h, w) in [0, 1]
    if x.shape[1] == 1:  # grey digits (USPS): the same image in R, G and B
        x = x.expand(-1, 3, -1, -1)
    return backbones.prepare_images(x, image_size), torch.from_numpy(split.y[keep])


def run_pretrain(cfg: dict, prepared_dir: Path, models_dir: Path, *, seed: int = 0, progress: bool = True) -> dict:
    """Train every arch on the source; save models_dir/<arch>.pt; return the metrics tree."""
    x, y = source_images(Path(prepared_dir), cfg["image_size"], cfg["max_images"], seed)
    # The source's val split: a check that pretraining learned the source task (never a target image).
    val = source_images(Path(prepared_dir), cfg["image_size"], None, seed, "val")
    n_classes = len(datasets.load_meta(prepared_dir)["classes"])
    results: dict[str, dict] = {}
    for arch in cfg["archs"]:
        model = backbones.build_backbone(arch, n_classes, seed=seed, zero_init_residual=True)
        start = time.perf_counter()
        history = engine.fit(model, (x, y), val, cfg[arch], progress=progress, desc=f"pretrain {arch}")
        seconds = time.perf_counter() - start
        source = f"pretrain stage: {arch} trained on the train split of {cfg['dataset']} at {cfg['image_size']} px ({len(x)} images)"
        backbones.save_backbone(Path(models_dir) / f"{arch}.pt", arch, model, source)
        results[arch] = {
            "n_images": len(x), "seconds": round(seconds, 2),
            "train": {"accuracy": history.train_accuracy[-1], "loss": history.train_loss[-1]},
            "val": {"accuracy": history.val_accuracy[-1], "loss": history.val_loss[-1]},
        }
        print(f"pretrain {arch}: source train accuracy {history.train_accuracy[-1]:.4f} (last epoch, {len(x)} images), "
              f"val accuracy {history.val_accuracy[-1]:.4f} ({len(val[0])} images), {seconds:.1f} s")
    return {"pretrain": results}
