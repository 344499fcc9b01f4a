"""Image splits held as uint8 and made model input one batch at a time.

    x = Images(torch.from_numpy(split.x), size=224)  # (N, 3, h, w) uint8: 1 byte a pixel
    engine.fit(model, (x, y), ...)                    # each batch: float, resized, standardised

A split converted whole to float32 and resized takes 4 x (size / h)^2 times its uint8 bytes:
all of MNIST upsampled to 224 px is 13 GiB of float32 (E8's full profile), all of Stanford
Dogs at 224 px 11.5 GiB (E9's). `Images` keeps the prepared uint8 pixels and converts only the
rows a batch draws, so the RAM a split costs is its prepared size (see `reprodl memory-plan`).

Indexing an `Images` gives the rows as another `Images` (uint8, no conversion), the way
indexing a tensor gives a tensor; `model_input` turns either into the float tensor a model
reads. The conversion is row-wise, so a batch converted alone equals the same rows of the
split converted whole (tested bit for bit): results do not depend on which way was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], same shape."""
    return x.float().div_(255.0)


def prepare_images(
    x: torch.Tensor, size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """Images in [0, 1] (N, C, h, w) -> (N, C, size, size), standardised with the channel
    statistics the pretrained weights expect (ImageNet's by default; grey images: their mean)."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean_t, std_t = torch.tensor(mean, device=x.device), torch.tensor(std, device=x.device)
    if x.shape[1] == 1:
        mean_t, std_t = mean_t.mean(0, keepdim=True), std_t.mean(0, keepdim=True)
    return (x - mean_t.view(1, -1, 1, 1)) / std_t.view(1, -1, 1, 1)


@dataclass(frozen=True)
class Images:
    """uint8 images (N, C, h, w) and how a batch of them becomes model input: to [0, 1] float32,
    then, when `size` is set, resized to (size, size) and standardised with `mean` / `std`."""

    pixels: torch.Tensor  # (N, C, h, w) uint8
    size: int | None = None  # pixels, square; None: [0, 1] floats at the stored size, not standardised
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        if self.pixels.dtype != torch.uint8 or self.pixels.dim() != 4:
            raise ValueError(f"Images holds uint8 (N, C, H, W) pixels, got {self.pixels.dtype} {tuple(self.pixels.shape)}")

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index) -> Images:
        """The rows `index` picks (an int keeps its row axis), still uint8."""
        rows = self.pixels[index]
        return replace(self, pixels=rows.unsqueeze(0) if rows.dim() == 3 else rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The model input's shape: (N, C, S, S)."""
        n, c, h, w = self.pixels.shape
        return (n, c, h, w) if self.size is None else (n, c, self.size, self.size)

    @property
    def device(self) -> torch.device:
        return self.pixels.device

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def dim(self) -> int:
        return 4

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Images:
        return replace(self, pixels=self.pixels.to(device, non_blocking=non_blocking))

    def tensor(self) -> torch.Tensor:
        """Every row as model input: float32 (N, C, S, S)."""
        x = to_unit_float(self.pixels)
        return x if self.size is None else prepare_images(x, self.size, self.mean, self.std)


def model_input(x: torch.Tensor | Images) -> torch.Tensor:
    """The float tensor a model reads for rows `x`: a tensor as it is, an Images' rows converted."""
    return x.tensor() if isinstance(x, Images) else x


def nbytes(x: torch.Tensor | Images) -> int:
    return x.nbytes if isinstance(x, Images) else x.numel() * x.element_size()
