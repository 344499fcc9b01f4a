"""Figures shared by experiments. Every figure is written atomically (reprodl.io)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here or in CI

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from . import io


def save_image_grid(images: np.ndarray, path: str | Path, columns: int = 20, upscale: int = 1) -> None:
    """uint8 images (N, C, H, W) -> one PNG grid, `columns` images per row."""
    grid = make_grid(torch.from_numpy(images), nrow=columns, padding=2, pad_value=128)  # (C, H', W')
    array = grid.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(array)
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    with io.atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
