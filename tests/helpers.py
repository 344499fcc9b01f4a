"""What several test files share: a tracker that records, metric trees flattened, tiny scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprodl import io


class RecordingTracker:
    """A reprodl.tracking.Tracker that keeps what it is given."""

    def __init__(self):
        self.epochs: list[tuple[str, int, dict]] = []  # (model, epoch, metrics)
        self.confusions: list[tuple[str, int, list[str]]] = []  # (model, images, labels)

    def epoch(self, model, epoch, metrics):
        self.epochs.append((model, epoch, metrics))

    def confusion(self, model, y_true, y_pred, labels):
        self.confusions.append((model, len(y_true), labels))


def flat(tree) -> dict:
    """A metrics tree as {"dotted.key": value}, one entry per leaf."""
    if not isinstance(tree, dict):
        return {"": tree}
    return {f"{key}.{sub}" if sub else key: value for key, branch in tree.items() for sub, value in flat(branch).items()}


def write_tiny_scenes(prepared: Path, sizes: dict[str, int], difficult_first: bool = False) -> Path:
    """A prepared multi-label set in the real format: 3x32x32 scenes, 3 classes, a bright patch per class.

    difficult_first: the first scene of each split has one of its classes marked difficult.
    """
    rng = np.random.default_rng(0)
    for split, n in sizes.items():
        present = (rng.random((n, 3)) < 0.5).astype(np.uint8)
        present[present.sum(1) == 0, 0] = 1
        x = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.uint8)
        for k in range(3):
            x[present[:, k] == 1, k, 8 * k : 8 * k + 8, 8:24] = 255
        difficult = np.zeros_like(present)
        if difficult_first:
            difficult[0, np.argmax(present[0])] = 1
        io.save_npz(prepared / f"{split}.npz", x=x, y=present, difficult=difficult)
    io.write_json(prepared / "meta.json", {"name": "digit_scenes", "profile": "embedded", "source": "test scenes", "task": "multilabel",
                                           "classes": ["a", "b", "c"], "image_shape": [3, 32, 32], "sizes": sizes})
    return prepared
