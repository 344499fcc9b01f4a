"""Small stand-ins for the real dataset files and hosts, for tests that must run offline.

Every ``write_*`` function writes one file in the genuine on-disk format of a
dataset (same magic numbers, archive layout, XML schema) into ``folder`` and
returns its md5, so a test can serve it with :func:`serve_directory` and run the
very code path the full profile uses, without the network and in milliseconds.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image

# PASCAL VOC stand-in: image id -> objects as (class name, difficult flag), in the real id style.
# It covers the cases the difficult convention must get right: a class present only as
# difficult objects (000012 car, 000016 tvmonitor), and a class with one difficult and one
# non-difficult object (000005 chair, 000009 person).
VOC_FAKE_ANNOTATIONS: dict[str, list[tuple[str, int]]] = {
    "000005": [("chair", 0), ("chair", 1)],
    "000007": [("car", 0)],
    "000009": [("horse", 0), ("person", 0), ("person", 1)],
    "000012": [("car", 1)],
    "000016": [("bicycle", 0), ("tvmonitor", 1), ("tvmonitor", 1)],
    "000017": [("aeroplane", 0), ("person", 0)],
}
VOC_FAKE_SPLITS: dict[str, list[str]] = {
    "train": ["000005", "000009"],
    "val": ["000007", "000012"],
    "trainval": ["000005", "000007", "000009", "000012"],
    "test": ["000016", "000017"],
}
# Sizes vary (landscape and portrait, ~40x30) so that resizing to a square is exercised.
_VOC_SIZES = [(40, 30), (30, 40), (44, 33), (40, 30), (36, 48), (40, 30)]

# Stanford Dogs stand-in, deliberately not in sorted order; 'Shih-Tzu' has a '-' of its own.
DOGS_FAKE_BREEDS: tuple[str, ...] = (
    "n02086240-Shih-Tzu",
    "n02085620-Chihuahua",
    "n02085782-Japanese_spaniel",
)

EVIL_TAR_KINDS: tuple[str, ...] = (
    "parent",
    "absolute",
    "symlink_absolute",
    "symlink_parent",
    "symlink_chain",
    "hardlink",
)
EVIL_ZIP_KINDS: tuple[str, ...] = ("parent", "absolute", "symlink")

# Fixed timestamps (Nov 2007) so that every fake file, and hence its md5, is reproducible.
_TAR_MTIME = 1_194_307_200
_ZIP_TIME = (2007, 11, 6, 0, 0, 0)


def md5_of(path: Path) -> str:
    """The md5 the download code must find; computed independently of reprodl."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def fake_image_color(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour per fake image, so that a reader's output can be traced back."""
    return (20 + 37 * index) % 256, (200 - 53 * index) % 256, (90 + 71 * index) % 256


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A plain-colour JPEG (plain so that JPEG loss stays within a few levels)."""
    image = Image.new("RGB", size, color).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_idx_images(folder: Path, name: str, images: np.ndarray) -> str:
    """A gzipped IDX image file as MNIST ships it (magic 2051, N x rows x cols uint8)."""
    images = np.asarray(images, dtype=np.uint8)
    n, rows, cols = images.shape
    header = np.array([2051, n, rows, cols], dtype=">u4").tobytes()
    return _write(folder, name, gzip.compress(header + images.tobytes(), mtime=0))


def write_idx_labels(folder: Path, name: str, labels: np.ndarray) -> str:
    """A gzipped IDX label file as MNIST ships it (magic 2049, N uint8)."""
    labels = np.asarray(labels, dtype=np.uint8)
    header = np.array([2049, labels.shape[0]], dtype=">u4").tobytes()
    return _write(folder, name, gzip.compress(header + labels.tobytes(), mtime=0))


def write_usps_bz2(folder: Path, name: str, x: np.ndarray, y: Sequence[int]) -> str:
    """A bz2 LIBSVM file like usps.bz2: ``label 1:v1 ... 256:v256`` with v in [-1, 1], labels 1..10."""
    x = np.asarray(x, dtype=np.float64).reshape(len(y), 256)
    lines = [
        f"{int(label)} " + " ".join(f"{i}:{v:.6g}" for i, v in enumerate(row, start=1))
        for label, row in zip(y, x)
    ]
    return _write(folder, name, bz2.compress(("\n".join(lines) + "\n").encode()))


def voc_annotation_xml(image_id: str, size: tuple[int, int], objects: Sequence[tuple[str, int]]) -> bytes:
    """An annotation in the VOC2007 XML schema (the fields a real file has, boxes included)."""
    width, height = size
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "The VOC2007 Database"
    ET.SubElement(source, "annotation").text = "PASCAL VOC2007"
    size_el = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size_el, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for k, (name, difficult) in enumerate(objects):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult)
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", 1 + k), ("ymin", 1 + k), ("xmax", width - k), ("ymax", height - k)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root)


def write_voc_tar(
    folder: Path,
    name: str = "VOCtrainval_06-Nov-2007.tar",
    image_sets: Sequence[str] = ("train", "val", "trainval"),
) -> str:
    """A VOC2007-like tar: VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}.

    The default mirrors VOCtrainval_06-Nov-2007.tar; ``image_sets=('test',)``
    gives the VOCtest one. Image k of :data:`VOC_FAKE_ANNOTATIONS` is filled
    with ``fake_image_color(k)``.
    """
    root = "VOCdevkit/VOC2007"
    wanted = {image_id for image_set in image_sets for image_id in VOC_FAKE_SPLITS[image_set]}
    files: dict[str, bytes] = {}
    for k, (image_id, objects) in enumerate(VOC_FAKE_ANNOTATIONS.items()):
        if image_id in wanted:
            size = _VOC_SIZES[k]
            files[f"{root}/Annotations/{image_id}.xml"] = voc_annotation_xml(image_id, size, objects)
            files[f"{root}/JPEGImages/{image_id}.jpg"] = jpeg_bytes(fake_image_color(k), size)
    for image_set in image_sets:
        files[f"{root}/ImageSets/Main/{image_set}.txt"] = "".join(
            f"{image_id}\n" for image_id in VOC_FAKE_SPLITS[image_set]
        ).encode()
    return write_tar(folder, name, files)


def write_dogs_tar(
    folder: Path, name: str = "images.tar", breeds: Sequence[str] = DOGS_FAKE_BREEDS, per_breed: int = 3
) -> str:
    """A Stanford-Dogs-like images.tar: Images/<wnid>-<Breed>/<wnid>_<k>.jpg.

    Image j of breed b (in the order given) is filled with
    ``fake_image_color(b * per_breed + j)``; the last image of the first breed
    is a greyscale JPEG, as a few real ones are.
    """
    files: dict[str, bytes] = {}
    for b, breed in enumerate(breeds):
        wnid = breed.split("-", 1)[0]
        for j in range(per_breed):
            grey = b == 0 and j == per_breed - 1
            data = jpeg_bytes(fake_image_color(b * per_breed + j), (40 + 4 * j, 30), "L" if grey else "RGB")
            files[f"Images/{breed}/{wnid}_{j + 1}.jpg"] = data
    return write_tar(folder, name, files)


def write_tar(folder: Path, name: str, files: Mapping[str, bytes]) -> str:
    """A tar of regular files, compressed according to the name (.tar, .tar.gz/.tgz, .tar.bz2)."""

    def add_members(tar: tarfile.TarFile) -> None:
        for member, data in files.items():
            _add_tar_bytes(tar, member, data)

    return _write_tar(folder, name, add_members)


def write_zip(folder: Path, name: str, files: Mapping[str, bytes]) -> str:
    """A deflated zip of regular files."""
    path = Path(folder) / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(zipfile.ZipInfo(member, _ZIP_TIME), data)
    return md5_of(path)


def write_evil_tar(folder: Path, name: str, kind: str) -> str:
    """A tar with one harmless file followed by one member that escapes the extraction folder.

    Kinds (see :data:`EVIL_TAR_KINDS`): '../escape.txt', '/abs.txt', a symlink
    to '/etc', a symlink to '../..', a symlink chain ('loop -> .' then
    'out -> loop/..') that only resolving links can catch, and a hard link to
    '../escape.txt'.
    """

    def add_members(tar: tarfile.TarFile) -> None:
        _add_tar_bytes(tar, "good/ok.txt", b"harmless\n")
        if kind == "parent":
            _add_tar_bytes(tar, "../escape.txt", b"escaped\n")
        elif kind == "absolute":
            _add_tar_bytes(tar, "/abs.txt", b"escaped\n")
        elif kind == "symlink_absolute":
            _add_tar_link(tar, "good/etc", "/etc", tarfile.SYMTYPE)
        elif kind == "symlink_parent":
            _add_tar_link(tar, "good/up", "../..", tarfile.SYMTYPE)
        elif kind == "symlink_chain":
            _add_tar_link(tar, "loop", ".", tarfile.SYMTYPE)
            _add_tar_link(tar, "out", "loop/..", tarfile.SYMTYPE)
        elif kind == "hardlink":
            _add_tar_link(tar, "good/hard", "../escape.txt", tarfile.LNKTYPE)
        else:
            raise ValueError(f"unknown evil tar kind {kind!r}; expected one of {EVIL_TAR_KINDS}")

    return _write_tar(folder, name, add_members)


def write_evil_zip(folder: Path, name: str, kind: str) -> str:
    """A zip with one harmless file followed by '../escape.txt', '/abs.txt' or a symlink to '/etc'."""
    path = Path(folder) / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("good/ok.txt", _ZIP_TIME), b"harmless\n")
        if kind == "parent":
            zf.writestr(zipfile.ZipInfo("../escape.txt", _ZIP_TIME), b"escaped\n")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo("/abs.txt", _ZIP_TIME), b"escaped\n")
        elif kind == "symlink":
            info = zipfile.ZipInfo("good/etc", _ZIP_TIME)
            info.create_system = 3  # unix, so that the mode bits below are honoured
            info.external_attr = 0o120777 << 16  # S_IFLNK | rwxrwxrwx
            zf.writestr(info, "/etc")
        else:
            raise ValueError(f"unknown evil zip kind {kind!r}; expected one of {EVIL_ZIP_KINDS}")
    return md5_of(path)


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve(handler_class: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run an HTTP server on 127.0.0.1 (free port) in a daemon thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    # A short poll interval makes shutdown() return quickly, which keeps the tests fast.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_directory(path: Path) -> Iterator[str]:
    """Serve the files of ``path`` over HTTP on 127.0.0.1, quietly; yields the base URL."""
    with serve(functools.partial(_QuietFileHandler, directory=str(path))) as base_url:
        yield base_url


def unreachable_url() -> str:
    """An http URL on 127.0.0.1 whose port was free a moment ago, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mirror"


@contextlib.contextmanager
def stalled_url() -> Iterator[str]:
    """An http URL that accepts connections but never answers: a hung host, for timeout tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes the handshake; nobody ever reads or replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mirror"


def _write(folder: Path, name: str, data: bytes) -> str:
    path = Path(folder) / name
    path.write_bytes(data)
    return md5_of(path)


def _write_tar(folder: Path, name: str, add_members: Callable[[tarfile.TarFile], None]) -> str:
    """Build the tar in memory and compress it without timestamps, so equal input gives equal md5."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_members(tar)
    data = buffer.getvalue()
    if name.endswith((".tar.gz", ".tgz")):
        data = gzip.compress(data, mtime=0)
    elif name.endswith(".tar.bz2"):
        data = bz2.compress(data)
    return _write(folder, name, data)


def _add_tar_bytes(tar: tarfile.TarFile, member: str, data: bytes) -> None:
    info = tarfile.TarInfo(member)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = _TAR_MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_tar_link(tar: tarfile.TarFile, member: str, target: str, link_type: bytes) -> None:
    info = tarfile.TarInfo(member)
    info.type = link_type
    info.linkname = target
    info.mtime = _TAR_MTIME
    tar.addfile(info)
