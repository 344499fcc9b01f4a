"""Synthetic stand-ins built from real digits, for the embedded profile.

- digit scenes: the multi-label VOC2007 stand-in. 1-3 real MNIST digits, each rescaled and
  tinted, pasted on a noisy RGB canvas; the label is the set of digits present. A digit
  drawn smaller than `difficult_below` pixels is "difficult", like VOC's small or occluded
  objects, and is ignored by the VOC07 evaluation when it is its class's only instance.
- colour digits: the Stanford Dogs stand-in, a balanced multi-class RGB image set.

Both are pure functions of (digits, labels, seed): the same seed gives the same images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def make_digit_scenes(
    digits: np.ndarray,
    labels: np.ndarray,
    n_scenes: int,
    *,
    canvas: int = 64,
    min_digits: int = 1,
    max_digits: int = 3,
    min_size: int = 14,
    max_size: int = 36,
    difficult_below: int = 16,
    n_classes: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose multi-label scenes from `digits` (N, 1, 28, 28) uint8 with labels (N,).

    Returns x uint8 (S, 3, canvas, canvas), present uint8 (S, K), difficult uint8 (S, K);
    difficult[s, k] = 1 when every instance of class k in scene s is difficult.
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if not 0 < min_size <= max_size <= canvas:
        raise ValueError(f"need 0 < min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")
    rng = np.random.default_rng(seed)
    x = np.empty((n_scenes, 3, canvas, canvas), dtype=np.uint8)
    present = np.zeros((n_scenes, n_classes), dtype=np.uint8)
    easy = np.zeros((n_scenes, n_classes), dtype=np.uint8)  # class has a non-difficult instance
    glyphs = torch.from_numpy(digits.astype(np.float32) / 255.0)  # (N, 1, 28, 28)
    for s in range(n_scenes):
        # Dark, slightly noisy background of a random hue: colour is a nuisance, shape is the signal.
        background = rng.uniform(0.0, 0.25, size=(3, 1, 1)) + rng.normal(0, 0.03, size=(3, canvas, canvas))
        scene = np.clip(background, 0, 1).astype(np.float32)
        for _ in range(rng.integers(min_digits, max_digits + 1)):
            i = rng.integers(len(digits))
            size = int(rng.integers(min_size, max_size + 1))
            glyph = F.interpolate(glyphs[i : i + 1], size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
            top, left = rng.integers(0, canvas - size + 1, size=2)
            colour = rng.uniform(0.5, 1.0, size=(3, 1, 1)).astype(np.float32)
            patch = scene[:, top : top + size, left : left + size]
            np.maximum(patch, glyph[None] * colour, out=patch)  # digits drawn over one another, like occlusion
            k = int(labels[i])
            present[s, k] = 1
            easy[s, k] |= size >= difficult_below
        x[s] = np.round(scene * 255).astype(np.uint8)
    difficult = present & (1 - easy)
    return x, present, difficult


def make_colour_digits(digits: np.ndarray, *, size: int = 32, seed: int = 0) -> np.ndarray:
    """RGB versions of (N, 1, 28, 28) digits: random foreground and background colours, resized.

    Returns uint8 (N, 3, size, size).
    """
    rng = np.random.default_rng(seed)
    n = len(digits)
    glyphs = torch.from_numpy(digits.astype(np.float32) / 255.0)
    glyphs = F.interpolate(glyphs, size=(size, size), mode="bilinear", align_corners=False).numpy()  # (N, 1, S, S)
    fg = rng.uniform(0.4, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0.0, 0.35, size=(n, 3, 1, 1)).astype(np.float32)
    rgb = bg * (1 - glyphs) + fg * glyphs
    return np.round(rgb * 255).astype(np.uint8)


def pair_class_names(n_classes: int) -> list[str]:
    """The digit-pair classes: "00", "01", ... (class k shows digit k // 10, then digit k % 10)."""
    return [f"{k // 10}{k % 10}" for k in range(n_classes)]


def make_digit_pairs(
    digits: np.ndarray, labels: np.ndarray, n_classes: int, per_class: int, *, size: int = 32, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-digit numbers: per_class images of each class 0..n_classes-1, class k drawn as digit
    k // 10 beside digit k % 10, each a random digit of that label from `digits` (N, 1, 28, 28).

    Fine-grained on purpose: classes share digits ("12", "21", "13"), as dog breeds share
    features, and order matters. Each image has its own background and ink colours and each
    digit its own height; returns x uint8 (n_classes * per_class, 3, size, size), y int64, sorted
    by class.
    """
    if not 1 <= n_classes <= 100:
        raise ValueError(f"need 1 <= n_classes <= 100 (two digits), got {n_classes}")
    rng = np.random.default_rng(seed)
    glyph = size // 2  # each digit fills half the width
    glyphs = torch.from_numpy(digits.astype(np.float32) / 255.0)
    glyphs = F.interpolate(glyphs, size=(glyph, glyph), mode="bilinear", align_corners=False, antialias=True)[:, 0].numpy()
    by_label = [np.flatnonzero(labels == d) for d in range(10)]
    missing = [d for d in range(10) if len(by_label[d]) == 0 and any(d in (k // 10, k % 10) for k in range(n_classes))]
    if missing:
        raise ValueError(f"no digit of label(s) {missing} to draw from")
    n = n_classes * per_class
    y = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    ink = np.zeros((n, size, size), dtype=np.float32)
    for place, wanted in enumerate((y // 10, y % 10)):  # the left digit, then the right one
        chosen = np.empty(n, dtype=np.int64)
        for d in np.unique(wanted):
            rows = np.flatnonzero(wanted == d)
            chosen[rows] = by_label[d][rng.integers(0, len(by_label[d]), size=len(rows))]
        lefts = rng.integers(0, 3, size=n) + (0 if place == 0 else size - glyph - 2)  # a 0-2 px jitter from the edge
        tops = rng.integers(0, size - glyph + 1, size=n)
        for i in range(n):
            patch = ink[i, tops[i] : tops[i] + glyph, lefts[i] : lefts[i] + glyph]
            np.maximum(patch, glyphs[chosen[i]], out=patch)
    fg = rng.uniform(0.4, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0.0, 0.35, size=(n, 3, 1, 1)).astype(np.float32)
    rgb = bg * (1 - ink[:, None]) + fg * ink[:, None]
    return np.round(rgb * 255).astype(np.uint8), y
