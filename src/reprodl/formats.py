"""Readers of the datasets' original on-disk formats, returning plain numpy arrays.

Keeping these free of torch lets the data-preparation stages (and their tests)
run without loading the deep-learning stack, and gives every later stage the
same compact representation: uint8 images, integer labels.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_svmlight_file
from tqdm import tqdm

__all__ = [
    "read_idx",
    "read_usps",
    "VOC_CLASSES",
    "read_voc",
    "find_voc_root",
    "read_stanford_dogs",
]

# IDX type codes (third magic byte) -> big-endian element type.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_VOC_IMAGE_SETS = ("train", "val", "trainval", "test")
_VOC_SUBFOLDERS = ("Annotations", "JPEGImages", "ImageSets/Main")


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST-style IDX file, plain or gzipped (detected from the content).

    The magic number carries the element type and the number of dimensions, so
    the same reader serves images (magic 2051 -> uint8 (N, 28, 28)) and labels
    (magic 2049 -> uint8 (N,)) of MNIST and Fashion-MNIST. The result is in
    native byte order. A wrong magic or a size that disagrees with the header
    raises ValueError, since either means the file is not what it claims.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number {data[:4].hex() or '(empty file)'} "
            f"(expected 0000 followed by a type code in {sorted(_IDX_DTYPES)} and the rank)"
        )
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(data) - header_size}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a USPS file in the LIBSVM format (``usps.bz2`` / ``usps.t.bz2``).

    These are the files torchvision's USPS uses: one ``label idx:val ...`` line
    per 16x16 digit, features in [-1, 1], labels 1..10. They are mapped to the
    same representation as the other image datasets so that stages need no
    special case: x uint8 (N, 16, 16) with ``round((v + 1) / 2 * 255)``, and
    y int64 (N,) in 0..9.
    """
    path = Path(path)
    features, labels = load_svmlight_file(str(path), n_features=256, zero_based=False)
    values = features.toarray()  # features absent from a line are 0, i.e. mid-grey
    if values.size and (values.min() < -1 - 1e-6 or values.max() > 1 + 1e-6):
        raise ValueError(
            f"{path}: USPS features must lie in [-1, 1], found [{values.min()}, {values.max()}]"
        )
    if labels.size and (
        np.any(labels != np.round(labels)) or labels.min() < 1 or labels.max() > 10
    ):
        raise ValueError(f"{path}: USPS labels must be integers 1..10, found {np.unique(labels)}")
    x = np.clip(np.rint((values + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    return x.reshape(-1, 16, 16), labels.astype(np.int64) - 1


def read_voc(
    voc_root: Path, image_set: str, image_size: int, progress: bool = True, scratch: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read one image set of PASCAL VOC 2007 as a multi-label classification dataset.

    ``voc_root`` is the folder holding ``Annotations/``, ``JPEGImages/`` and
    ``ImageSets/Main/`` (``.../VOCdevkit/VOC2007``); ``image_set`` is one of
    'train', 'val', 'trainval', 'test' and selects the ids listed in
    ``ImageSets/Main/<image_set>.txt``, in file order.

    Returns ``(x, present, difficult, ids)``:

    * ``x``: uint8 (N, 3, image_size, image_size), RGB, each image resized
      straight to the square with bilinear filtering (no crop, aspect ignored);
    * ``present``: uint8 (N, 20), 1 when the image has at least one object of
      the class (difficult or not), columns in :data:`VOC_CLASSES` order;
    * ``difficult``: uint8 (N, 20), 1 when the class is present and *all* its
      objects in the image are marked ``<difficult>1</difficult>``;
    * ``ids``: the image ids, in the same order.

    ``scratch``: a folder; when given, ``x`` is decoded into a memory-mapped ``.npy`` file
    there instead of RAM (the full set at 224 px is 1.5 GB), one image at a time.

    Both arrays are kept because the official VOC07 classification protocol
    scores an image whose class appears only as difficult objects neither as
    a positive nor as a negative: positives are ``present & ~difficult``,
    negatives ``~present``, and ``difficult`` marks the ones to ignore.
    """
    voc_root = Path(voc_root)
    if image_set not in _VOC_IMAGE_SETS:
        raise ValueError(f"image_set must be one of {_VOC_IMAGE_SETS}, got {image_set!r}")
    _check_image_size(image_size)
    ids_file = voc_root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(
            f"VOC image set list {ids_file} not found (is {voc_root} a VOC2007 root?)"
        )
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]

    x = _image_array(len(ids), image_size, scratch, f"voc_{image_set}")
    present = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.uint8)
    difficult = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.uint8)
    class_index = {name: i for i, name in enumerate(VOC_CLASSES)}
    for row, image_id in enumerate(
        tqdm(ids, desc=f"VOC2007 {image_set}", unit="img", disable=None if progress else True)
    ):
        annotation = voc_root / "Annotations" / f"{image_id}.xml"
        seen: dict[int, list[bool]] = {}  # class -> difficult flag of each object
        for obj in ET.parse(annotation).getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in class_index:
                raise ValueError(f"{annotation}: unknown VOC class {name!r}")
            flag = (obj.findtext("difficult") or "0").strip() == "1"
            seen.setdefault(class_index[name], []).append(flag)
        for column, flags in seen.items():
            present[row, column] = 1
            difficult[row, column] = all(flags)
        x[row] = _load_rgb_square(voc_root / "JPEGImages" / f"{image_id}.jpg", image_size)
    return x, present, difficult, ids


def find_voc_root(extract_dir: Path) -> Path:
    """Locate ``VOCdevkit/VOC2007`` in an extracted VOC archive.

    The official tars unpack to ``VOCdevkit/VOC2007``, but a mirror may ship the
    folder one level deeper or already unwrapped; this accepts those layouts
    rather than hard-coding one.
    """
    extract_dir = Path(extract_dir)
    candidates = [extract_dir, extract_dir / "VOCdevkit" / "VOC2007"]
    candidates += sorted(extract_dir.glob("*/VOCdevkit/VOC2007"))
    for candidate in candidates:
        if all((candidate / sub).is_dir() for sub in _VOC_SUBFOLDERS):
            return candidate
    found = sorted(p.name for p in extract_dir.iterdir()) if extract_dir.is_dir() else "nothing"
    raise FileNotFoundError(
        f"no VOC2007 folder (with Annotations/, JPEGImages/, ImageSets/Main/) under {extract_dir}; "
        f"looked for VOCdevkit/VOC2007 and */VOCdevkit/VOC2007, found: {found}"
    )


def read_stanford_dogs(
    images_root: Path, image_size: int, progress: bool = True, scratch: Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the Stanford Dogs images as a single-label classification dataset.

    ``images_root`` is the ``Images`` folder of ``images.tar``, with one folder
    per breed (``n02085620-Chihuahua/*.jpg``). Classes are the sorted folder
    names, so label numbers are the same on every machine; the returned class
    names are the part after the first '-' (``Chihuahua``, ``Shih-Tzu``).

    Returns x uint8 (N, 3, image_size, image_size) (RGB, resized straight to
    the square with bilinear filtering), y int64 (N,) and the class names.
    Images are ordered by class, then by file name. ``scratch``: as in :func:`read_voc` (3.1 GB
    at 224 px).
    """
    images_root = Path(images_root)
    _check_image_size(image_size)
    if not images_root.is_dir():
        raise FileNotFoundError(f"Stanford Dogs image folder {images_root} not found")
    folders = sorted(p for p in images_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no breed folders (like n02085620-Chihuahua) in {images_root}")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
        if not images:
            raise ValueError(f"breed folder {folder} holds no .jpg image")
        files += images
        labels += [label] * len(images)
    class_names = [folder.name.split("-", 1)[-1] for folder in folders]
    x = _image_array(len(files), image_size, scratch, "stanford_dogs")
    for i, path in enumerate(
        tqdm(files, desc="Stanford Dogs", unit="img", disable=None if progress else True)
    ):
        x[i] = _load_rgb_square(path, image_size)
    return x, np.asarray(labels, dtype=np.int64), class_names


def _image_array(n: int, size: int, scratch: Path | None, name: str) -> np.ndarray:
    """uint8 (n, 3, size, size): in RAM, or a memory-mapped .npy file in `scratch` (pages go to disk)."""
    shape = (n, 3, size, size)
    if scratch is None:
        return np.empty(shape, dtype=np.uint8)
    Path(scratch).mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(Path(scratch) / f"{name}.npy", mode="w+", dtype=np.uint8, shape=shape)


def _check_image_size(image_size: int) -> None:
    is_int = isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
    if not is_int or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")


def _load_rgb_square(path: Path, size: int) -> np.ndarray:
    """Decode to RGB (grey, CMYK and palette JPEGs exist in the wild), resize, go channels-first."""
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)

