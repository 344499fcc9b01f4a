"""Shared test set-up: helpers in tests/ importable (fakes.py), one small prepared MNIST."""

import sys
from dataclasses import dataclass
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


@dataclass
class Reproductions:
    first: Path  # embedded, `dvc repro` (tests/test_pipeline.py works in it afterwards)
    second: Path  # embedded, `dvc repro -f`, another fresh copy: its metrics must equal first's
    full: Path  # the README's full-profile `dvc exp run` against a local mirror (tests/test_full_profile.py)


@pytest.fixture(scope="session")
def reproductions(tmp_path_factory) -> Reproductions:
    """Three shrunk copies of the repository, each reproduced from scratch, side by side.

    Side by side because a shrunk stage is mostly single-threaded start-up: on two cores the
    three take far less than one after another. The full-profile copy reads a local HTTP
    mirror (tests/full_mirror.py) and weights seeded where torch hub and Hugging Face look.
    """
    import fakes
    import full_mirror
    import yaml
    from copies import ROOT, run_side_by_side, shrunk_copy, stage_env

    first = shrunk_copy(tmp_path_factory.mktemp("repo"))
    second = shrunk_copy(tmp_path_factory.mktemp("repo_again"))
    mirror, caches = tmp_path_factory.mktemp("mirror"), tmp_path_factory.mktemp("caches")
    full_mirror.seed_weight_caches(caches / "torch", caches / "hf")
    full_params = yaml.safe_load((ROOT / "tests" / "e2e_full_params.yaml").read_text())
    full_env = {**stage_env(), "TORCH_HOME": str(caches / "torch"), "HF_HOME": str(caches / "hf"), "HF_HUB_OFFLINE": "1",
                "REPRODL_WORKERS": "1"}  # E2/E3 in one process: the three runs already share the two cores
    with fakes.serve_directory(mirror) as base_url:
        full = shrunk_copy(tmp_path_factory.mktemp("full_repo"), full_params, sources=full_mirror.build_mirror(mirror, base_url))
        run_side_by_side([
            (["dvc", "repro"], first, None),
            (["dvc", "repro", "-f"], second, None),
            (full_mirror.full_profile_command(ROOT / "README.md"), full, full_env),
        ])
    return Reproductions(first, second, full)
