"""The embedded profile's stand-in for ImageNet pretraining.

Trains torchvision's resnet50 / resnet18 (exactly the modules E7 and E8 load) and timm's
MobileNetV2 and small ViT (E9's) on a source task that shares no image with their targets,
and saves each as a weights file that reprodl.backbones reads like a downloaded one (timm's
through timm's own pretrained-file path). One arch per DVC stage (pretrain@<arch>), so
retraining E9's ViT does not re-run E7 and E8.

The source is pretrain.dataset, one of config.PRETRAIN_SOURCES (params.yaml is checked
against that list). Embedded default: the *train split only* of the colour digits
(data/prepared/colour_digits), 10-way classification of RGB digits on random colours. Its split is the
MNIST split (same images, seed and fractions), so its train split holds only MNIST train
digits: no val or test digit of E8 (MNIST) and no digit of E7's val or test scenes (composed
from the MNIST val / test digits) is ever seen in pretraining. It is RGB like the scenes, and
a different task (one centred digit, one label) from E7's multi-label scenes. sklearn_digits
(8x8 digits, other writers) is the other embedded source: fully disjoint, but 1,437 grey 8x8
images make weaker features.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import backbones, datasets, engine
from ..config import ParamError, Pretrain
from ..images import Images, model_input


CONVERT_ROWS = 256  # images converted at once: 154 MB of float32 at 224 px


def source_images(
    prepared_dir: Path, image_size: int, max_images: int | None, seed: int, split_name: str = "train", arch: str = "resnet50",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of the source as RGB (N, 3, size, size) images standardised as `arch` expects, and labels (N,).

    Converted CONVERT_ROWS images at a time: a full-profile source (Stanford Dogs at 224 px,
    resized to pretrain.image_size) is never float32 at its stored size as a whole split."""
    split = datasets.load_split(prepared_dir, split_name)
    keep = datasets.subsample(split.y, max_images, seed)
    pixels = torch.from_numpy(split.x[keep])  # (N, C, h, w) uint8
    if pixels.shape[1] == 1:  # grey digits (USPS): the same image in R, G and B
        pixels = pixels.expand(-1, 3, -1, -1)
    images = Images(pixels, image_size, *backbones.input_stats(arch))
    x = torch.cat([model_input(images[i : i + CONVERT_ROWS]) for i in range(0, len(images), CONVERT_ROWS)])
    return x, torch.from_numpy(split.y[keep])


def run_pretrain(
    cfg: Pretrain, prepared_dir: Path, models_dir: Path, *, archs: list[str] | None = None, seed: int = 0, progress: bool = True,
    device: torch.device | str = "cpu",
) -> dict:
    """Train `archs` (default: every arch of cfg.archs) on the source; save models_dir/<arch>.pt; return the metrics tree.

    {"pretrain": {arch: {"n_images", "precision", "device", "seconds", "train": {"accuracy", "loss"}, "val": {...}}}}
    (train: the last epoch's running figures, augmented; val: the source's val split after training).
    """
    prepared_dir = Path(prepared_dir)
    for arch in archs or []:
        if arch not in cfg.archs:
            raise ParamError("pretrain.archs", f"does not list {arch!r} ({', '.join(cfg.archs)})")
    jobs = {arch: engine.train_config(getattr(cfg, arch), seed=seed) for arch in archs or cfg.archs}  # config guarantees each block
    n_classes = len(datasets.load_meta(prepared_dir)["classes"])
    results: dict[str, dict] = {}
    for arch, train_cfg in jobs.items():
        x, y = source_images(prepared_dir, cfg.image_size, cfg.max_images, seed, arch=arch)
        # The source's val split: a check that pretraining learned the source task (never a target image).
        val = source_images(prepared_dir, cfg.image_size, None, seed, "val", arch=arch)
        model = backbones.build_backbone(arch, n_classes, seed=seed, zero_init_residual=True, image_size=cfg.image_size)
        start = time.perf_counter()
        history = engine.fit(model, (x, y), val, train_cfg, progress=progress, desc=f"pretrain {arch}", device=device)
        seconds = time.perf_counter() - start
        source = f"pretrain stage: {arch} trained on the train split of {cfg.dataset} at {cfg.image_size} px ({len(x)} images)"
        backbones.save_backbone(Path(models_dir) / f"{arch}.pt", arch, model, source)
        results[arch] = {
            "n_images": len(x), "precision": history.precision, "device": history.device, "seconds": round(seconds, 2),
            "train": {"accuracy": history.train_accuracy[-1], "loss": history.train_loss[-1]},
            "val": {"accuracy": history.val_accuracy[-1], "loss": history.val_loss[-1]},
        }
        print(f"pretrain {arch}: source train accuracy {history.train_accuracy[-1]:.4f} (last epoch, {len(x)} images), "
              f"val accuracy {history.val_accuracy[-1]:.4f} ({len(val[0])} images), {seconds:.1f} s, {history.precision}")
    return {"pretrain": results}
