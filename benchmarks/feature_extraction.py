"""Benchmark: E7's ResNet50 feature extraction, our hook extractor vs a plain DataLoader loop.

Both compute the same 2,048-d global-average-pool features of the same scenes, from the same
weights (models/pretrained/resnet50.pt when the pretrain stage has run, else a seeded random
init), in this one run:

- baseline: a torchvision-style Dataset (each uint8 image -> PIL -> Resize -> ToTensor ->
  Normalize, one at a time), a DataLoader, the model in eval() with its fc replaced by an
  identity, fp32, contiguous memory, under torch.no_grad() (no inference mode, no channels-last).
- ours: reprodl.hooks.extract_features: images decoded once into one tensor and resized /
  standardised as a batch, a forward hook on `avgpool`, inference mode, channels-last, and
  bf16 autocast only when the CPU has native bf16 (AVX-512 BF16 or AMX; fp32 on AVX2-only CPUs).

Checks that the features agree (cosine >= 0.999) and that a linear head trained on each
set gives the same test mAP (within 0.5 point). Prints images/s of each and the ratio last.

    python benchmarks/feature_extraction.py --quick   # 256 + 256 scenes (< 1 minute)
    python benchmarks/feature_extraction.py           # the whole val + test splits
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from reprodl import backbones, datasets, engine, hooks
from reprodl.precision import cpu_has_native_bf16
from reprodl.experiments import e7

ROOT = Path(__file__).resolve().parents[1]


class PilScenes(torch.utils.data.Dataset):
    """Per-image decoding and transforms, as a torchvision ImageFolder pipeline does them."""

    def __init__(self, images: np.ndarray, size: int):
        self.images = images
        self.transform = transforms.Compose([
            transforms.Resize(size),
            transforms.ToTensor(),
            transforms.Normalize(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i].transpose(1, 2, 0)))


def baseline_features(model: nn.Module, images: np.ndarray, size: int, batch_size: int) -> torch.Tensor:
    model.fc = nn.Identity()  # the output is then the pooled features
    model.eval()
    loader = torch.utils.data.DataLoader(PilScenes(images, size), batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        return torch.cat([model(batch) for batch in loader])


def our_features(model: nn.Module, images: np.ndarray, size: int, batch_size: int) -> torch.Tensor:
    x = backbones.prepare_images(engine.to_tensor_images(images), size)  # (N, 3, S, S), the batch at once
    return hooks.extract_features(model, x, ["avgpool"], batch_size=batch_size, progress=False)["avgpool"]


def head_map(features: torch.Tensor, present: torch.Tensor, difficult: torch.Tensor, n_train: int) -> float:
    """Test mAP (VOC07) of a linear head trained on the first n_train rows, tested on the rest."""
    cfg = engine.TrainConfig(epochs=30, batch_size=32, lr=0.003, optimizer="adam", loss="bce_with_logits")
    split = {"train": slice(0, n_train), "val": slice(n_train, None), "test": slice(n_train, None)}  # val: curves only
    scores = e7.train_linear_head({s: features[i] for s, i in split.items()}, {s: present[i] for s, i in split.items()}, cfg, seed=0, progress=False)
    labels = {s: {"present": present[i], "difficult": difficult[i]} for s, i in split.items()}
    return e7.ap_table({**scores, "train": scores["test"]}, {**labels, "train": labels["test"]}, [str(k) for k in range(present.shape[1])])["test"]["map_voc07"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256 + 256 scenes")
    parser.add_argument("--size", type=int, default=64, help="pixels (the scenes are 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    prepared = ROOT / "data/prepared/voc2007"
    parts = [datasets.load_split(prepared, s) for s in ("val", "test")]
    n = 256 if args.quick else None
    images = np.concatenate([p.x[:n] for p in parts])
    present = torch.from_numpy(np.concatenate([p.y[:n] for p in parts]).astype(np.float32))
    difficult = torch.from_numpy(np.concatenate([p.difficult[:n] for p in parts]).astype(bool))
    n_train = len(parts[0].x[:n])

    weights_file = ROOT / "models/pretrained/resnet50.pt"
    weights = str(weights_file) if weights_file.exists() else backbones.RANDOM
    print(f"{len(images)} scenes at {args.size} px, resnet50 weights: {weights}; threads {torch.get_num_threads()}; "
          f"native bf16: {cpu_has_native_bf16()} (bf16 autocast {'on' if cpu_has_native_bf16() else 'off'})")

    timings, features = {}, {}
    for name, extract in (("baseline", baseline_features), ("ours", our_features)):
        model = backbones.load_backbone("resnet50", weights)
        start = time.perf_counter()
        features[name] = extract(model, images, args.size, args.batch_size)
        timings[name] = time.perf_counter() - start
        print(f"{name:8s}: {len(images) / timings[name]:7.1f} images/s ({timings[name]:.1f} s)")

    cosine = F.cosine_similarity(features["baseline"], features["ours"], dim=1)
    maps = {name: head_map(f, present, difficult, n_train) for name, f in features.items()}
    print(f"feature cosine similarity: min {cosine.min():.6f}, mean {cosine.mean():.6f} (need >= 0.999)")
    print(f"linear head test mAP (VOC07): baseline {maps['baseline']:.2f}, ours {maps['ours']:.2f} (need within 0.5)")
    if cosine.min() < 0.999 or abs(maps["baseline"] - maps["ours"]) > 0.5:
        raise SystemExit("features disagree")
    print(f"speedup (ours / baseline): {timings['baseline'] / timings['ours']:.2f}x")


if __name__ == "__main__":
    main()
