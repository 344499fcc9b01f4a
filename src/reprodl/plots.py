"""Figures shared by experiments. Every figure is written atomically (reprodl.io)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here or in CI

import numpy as np
from PIL import Image

from . import io


def tile_images(images: np.ndarray, columns: int, padding: int = 2, pad_value: int = 128) -> np.ndarray:
    """uint8 images (N, C, H, W) -> one (H', W', C) array, `columns` per row, `padding` px between.

    The layout of torchvision's make_grid, in numpy: importing torchvision costs the stages that
    only draw a grid about 3 s each (it imports torch._dynamo).
    """
    n, c, h, w = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)  # ceil
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), pad_value, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[top : top + h, left : left + w] = image.transpose(1, 2, 0)  # (H, W, C)
    return grid


def save_image_grid(images: np.ndarray, path: str | Path, columns: int = 20, upscale: int = 1) -> None:
    """uint8 images (N, C, H, W) -> one PNG grid, `columns` images per row."""
    array = tile_images(images, columns)
    if array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(array)
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    with io.atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def draw_embedding(ax, points: np.ndarray, labels: np.ndarray, ellipses=(), title: str = "") -> None:
    """A 2-D map (N, 2) coloured by class, with each class's ellipse (E4, E5) drawn over it.

    `ellipses`: objects with label, center, semi_axes (major, minor) and angle (degrees),
    as reprodl.manifold.best_ellipses makes them.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    colours = plt.get_cmap("tab10")
    ax.scatter(points[:, 0], points[:, 1], c=[colours(int(c) % 10) for c in labels], s=4, linewidths=0)
    for e in ellipses:
        colour = colours(e.label % 10)
        ax.add_patch(Ellipse(e.center, 2 * e.semi_axes[0], 2 * e.semi_axes[1], angle=e.angle, fill=False, lw=1.5, color=colour))
        ax.annotate(str(e.label), e.center, color=colour, fontsize=9, weight="bold", ha="center", va="center")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save_embedding_grid(panels: list[list[dict | None]], path: str | Path, panel_size: float = 3.2) -> None:
    """Rows of 2-D maps in one PNG; each panel is draw_embedding's keyword arguments (None: blank)."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panels), max(len(row) for row in panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel_size * n_cols, panel_size * n_rows), squeeze=False)
    for r, row in enumerate(panels):
        for c in range(n_cols):
            panel = row[c] if c < len(row) else None
            if panel is None:
                axes[r, c].axis("off")
            else:
                draw_embedding(axes[r, c], **panel)
    fig.tight_layout()
    io.save_figure(fig, path)


def save_image_rows(rows: list[tuple[str, np.ndarray]], path: str | Path, cell: float = 0.6) -> None:
    """Labelled rows of small grey images in [0, 1]: rows of (label, images (n, h, w)).

    Every image fills one square cell whatever its size, so a row of 4 x 4 codes lines up
    with a row of 28 x 28 digits.
    """
    import matplotlib.pyplot as plt

    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(cell * n_cols + 1.5, cell * len(rows) + 0.3), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        for i, image in enumerate(images):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", extent=(i * 1.1, i * 1.1 + 1, 0, 1))
        ax.set_facecolor("0.5")  # the gaps between images
        ax.set_xlim(0, n_cols * 1.1 - 0.1)
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    io.save_figure(fig, path)


def scatter_grid(table, params, measure: str, path: str | Path, log_x=()) -> None:
    """`measure` against each of `params` (rows), coloured by each other param (columns):
    len(params) x (len(params) - 1) panels, e.g. E2's 4 x 3 figure. `table`: a DataFrame."""
    import matplotlib.pyplot as plt

    n = len(params)
    fig, axes = plt.subplots(n, n - 1, figsize=(4.2 * (n - 1), 3.2 * n), squeeze=False)
    for i, x in enumerate(params):
        for j, colour in enumerate(p for p in params if p != x):
            ax = axes[i, j]
            values = sorted(table[colour].unique())
            # Colour by rank, not value: the grids are geometric (lr 1e-4..0.1).
            rank = table[colour].map({v: k for k, v in enumerate(values)})
            points = ax.scatter(table[x], table[measure], c=rank, cmap="viridis", s=12, alpha=0.8)
            if x in log_x:
                ax.set_xscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel(measure)
            bar = fig.colorbar(points, ax=ax, ticks=range(len(values)))
            bar.ax.set_yticklabels([f"{v:g}" for v in values])
            bar.set_label(colour)
    fig.tight_layout()
    io.save_figure(fig, path)


def correlation_heatmap(corr, path: str | Path, title: str = "") -> None:
    """A correlation matrix (a square DataFrame) as an annotated heatmap in [-1, 1]."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(corr) + 2, 1.0 * len(corr) + 1.5))
    image = ax.imshow(corr.to_numpy(), cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(corr)), corr.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(corr)), corr.index)
    for i in range(len(corr)):
        for j in range(len(corr)):
            ax.text(j, i, f"{corr.iat[i, j]:+.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    io.save_figure(fig, path)


def loss_curves(curves: dict, path: str | Path, title: str = "") -> None:
    """{label: (train losses, val losses)} per epoch: train solid, val dashed, one colour per label."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(curves), 2)))
    for colour, (label, (train, val)) in zip(colours, curves.items()):
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, np.array(train, dtype=float), color=colour, label=label)
        ax.plot(epochs, np.array(val, dtype=float), color=colour, linestyle="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    io.save_figure(fig, path)


def accuracy_heatmap(table, path: str | Path, title: str = "") -> None:
    """A 2-D grid of accuracies (a DataFrame: rows and columns are the two grid axes), annotated."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 * len(table.columns) + 2.5, 0.8 * len(table) + 1.5))
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis")
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns])
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    ax.set_xlabel(table.columns.name or "")
    ax.set_ylabel(table.index.name or "")
    for i in range(len(table.index)):
        for j in range(len(table.columns)):
            ax.text(j, i, f"{table.iat[i, j]:.3f}", ha="center", va="center", fontsize=8, color="white")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    io.save_figure(fig, path)
