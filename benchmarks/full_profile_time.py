"""The full profile's heavy stages (E7, E8, E9 at 224 px): time on this machine, extrapolated.

For each stage's network at the full profile's size, this run measures the images per second of
this machine (inference, or a training step: forward, backward and Adam's update) on a small
batch, in fp32 (the training stages' precision; bf16 where native would be faster for E7's
features), and counts the forward FLOPs of one image with torch.utils.flop_counter. Then it
multiplies by the images and passes the stage makes with the full-profile values of params.yaml's
comments (the images per split from reprodl.datasets.memory_plan):

- this CPU: images / measured images per second (measured here, extrapolated by counts);
- one GPU: FLOPs / an assumed sustained rate (ASSUMED_GPU_FLOPS, bf16): an estimate, not a
  measurement; no GPU has been lent to this project.

Training counts 3x the forward FLOPs (forward, backward for inputs and for weights). The weights
are random (no download): the time does not depend on their values.

    python benchmarks/full_profile_time.py          # about a minute
    python benchmarks/full_profile_time.py --quick  # shorter measurements (make bench)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from reprodl import backbones, datasets
from reprodl.config import load_params
from timing import machine_line, seconds_per_call

SIZE = 224  # the full profile's e7 / e8 / e9 image size
# One data-centre GPU (H100/H200 class) in bf16 on these mid-sized convnets: about what ResNet-50
# training at ~3,000 images/s is (3,000 x 24.5 GFLOP), a few percent of the dense bf16 peak
# (989 TFLOP/s). An assumption, not a measurement: data loading and small layers may well cut it.
ASSUMED_GPU_FLOPS = 70e12


@dataclass
class Work:
    stage: str
    what: str
    arch: str
    channels: int
    n_classes: int
    train: bool
    images: int  # images x passes


def full_profile_work(data) -> list[Work]:
    """The heavy work of E7, E8 and E9 with the full-profile values of params.yaml's comments."""
    plan = {n: datasets.memory_plan(n, SIZE, data.split.fractions, fine_grained_fractions=data.fine_grained_split.fractions)
            for n in ("voc2007", "mnist")}
    voc, mnist = plan["voc2007"].images, plan["mnist"].images
    voc_all = sum(voc.values())
    # E9: subsets [13, 28] of 150 images per class, split 84 / 28 / 38 per class (e9's defaults).
    classes, per_class = 13 + 28, {"train": 84, "val": 28, "test": 38}
    vit_epochs, e7_epochs, e8_epochs = 5, 20, 5
    return [
        Work("e7_features", "pretrained + random features, every image", "resnet50", 3, 1000, False, 2 * voc_all),
        Work("e7_finetune", f"{e7_epochs} epochs of the train split", "resnet50", 3, 20, True, e7_epochs * voc["train"]),
        Work("e7_finetune", "val each epoch, then every split scored", "resnet50", 3, 20, False, e7_epochs * voc["val"] + voc_all),
        Work("e8", f"3 variants x {e8_epochs} epochs of the train split", "resnet18", 1, 10, True, 3 * e8_epochs * mnist["train"]),
        Work("e8", "3 variants: val each epoch, then test", "resnet18", 1, 10, False, 3 * (e8_epochs * mnist["val"] + mnist["test"])),
        Work("e9", "MobileNetV2 features of both subsets", "mobilenetv2_100", 3, 13, False, classes * sum(per_class.values())),
        Work("e9", f"ViT-B/16: {vit_epochs} epochs of both subsets' train", "vit_base_patch16_224.augreg_in21k", 3, 28, True,
             vit_epochs * classes * per_class["train"]),
        Work("e9", "ViT-B/16: val each epoch, then test", "vit_base_patch16_224.augreg_in21k", 3, 28, False,
             classes * (vit_epochs * per_class["val"] + per_class["test"])),
    ]


def build(work: Work) -> nn.Module:
    if work.arch in backbones.TIMM_SPECS:
        return backbones.load_timm_backbone(work.arch, "none", work.n_classes, image_size=SIZE)
    model = backbones.build_backbone(work.arch, work.n_classes, seed=0)
    return backbones.grey_stem(model) if work.channels == 1 else model


def images_per_second(model: nn.Module, work: Work, batch: int, seconds: float) -> float:
    x = torch.randn(batch, work.channels, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    if not work.train:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)
    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        y = torch.randint(0, work.n_classes, (batch,))

        def step():
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return batch / seconds_per_call(step, seconds=seconds, warmup=1, min_calls=2)


def forward_flops(model: nn.Module, work: Work) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(torch.randn(1, work.channels, SIZE, SIZE))
    return counter.get_total_flops()


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="time each network for 0.3 s instead of 2 s (a smoke check)")
    args = parser.parse_args(argv)
    data = load_params("params.yaml").data
    print(machine_line(torch.get_num_threads()))
    rows, cpu_total, gpu_total, cache = [], 0.0, 0.0, {}
    for work in full_profile_work(data):
        key = (work.arch, work.channels, work.n_classes, work.train)
        if key not in cache:
            model = build(work)
            cache[key] = (images_per_second(model, work, batch=8 if work.train else 16, seconds=0.3 if args.quick else 2.0), forward_flops(model, work))
        rate, flops = cache[key]
        passes = 3 if work.train else 1
        cpu, gpu = work.images / rate, work.images * passes * flops / ASSUMED_GPU_FLOPS
        cpu_total, gpu_total = cpu_total + cpu, gpu_total + gpu
        rows.append(f"| {work.stage} | {work.what} | {work.arch} | {work.images:,} | {passes * flops / 1e9:.1f} | {rate:.1f} | "
                    f"{_hours(cpu)} | {_hours(gpu)} |")
    print(f"\nFull profile at {SIZE} px, fp32 on this CPU (measured images/s, extrapolated by counts); one GPU: "
          f"FLOPs / {ASSUMED_GPU_FLOPS / 1e12:.0f} TFLOP/s sustained, an estimate, not measured.\n")
    print("| stage | work | network | images x passes | GFLOP per image | this CPU, images/s | this CPU | one GPU (estimate) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"| all | | | | | | **{_hours(cpu_total)}** | **{_hours(gpu_total)}** |")


if __name__ == "__main__":
    main()
