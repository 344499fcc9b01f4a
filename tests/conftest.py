"""Shared test set-up: helpers in tests/ importable (fakes.py), one small prepared MNIST."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reprodl import datasets  # noqa: E402  (after the path set-up above)


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory) -> Path:
    """A data/prepared-like folder holding the embedded MNIST shrunk to 300 images (240 / 30 / 30)."""
    root = tmp_path_factory.mktemp("small_mnist")
    datasets.fetch("mnist", "embedded", root / "raw" / "mnist")
    datasets.prepare(
        "mnist", "embedded", root / "raw" / "mnist", root / "prepared" / "mnist", fractions=(0.8, 0.1, 0.1), seed=0, max_images=300
    )
    return root / "prepared"


@pytest.fixture(scope="session")
def prepared_mnist(prepared_root) -> Path:
    return prepared_root / "mnist"


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA: where torch sees none they are skipped, and say why."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here: torch.cuda.is_available() is False (the gpu tests run where there is one)")
    for item in gpu:
        item.add_marker(skip)
