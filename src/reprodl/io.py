"""Atomic writes: a reader (or a killed run) never sees a half-written output."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    The temporary file lives in the same folder so that os.replace is atomic. The
    suffix is kept because some writers (np.savez, matplotlib) pick a format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """A table as CSV, one dict per row (the first row's keys are the header)."""
    import csv
    import io as _io

    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


NPZ_CHUNK_BYTES = 2**20  # save_npz copies and compresses at most this much of an array at a time


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Compressed .npz (what np.savez_compressed writes; np.load reads it), written atomically
    and NPZ_CHUNK_BYTES at a time: an array is never copied whole, and an array-like that copies
    rows out on slicing (datasets' rows of a memory-mapped file) is read in chunks too.

    The same arrays give the same bytes (the members' time stamp is fixed; np.savez stamps the
    current time), so a re-run that prepares the same data leaves DVC nothing to re-run downstream."""
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            member_info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member_info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member_info, "w", force_zip64=True) as member:
                _write_npy(member, array)


def _write_npy(out, array) -> None:
    """The .npy format (header 1.0), C order, rows copied NPZ_CHUNK_BYTES at a time."""
    if not hasattr(array, "shape"):  # a Python scalar or list
        array = np.asarray(array)
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    if not shape:
        out.write(np.ascontiguousarray(array).tobytes())
        return
    row_bytes = dtype.itemsize * math.prod(shape[1:])
    rows = max(1, NPZ_CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, shape[0], rows):
        out.write(np.ascontiguousarray(array[start : start + rows], dtype=dtype).data)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save, written atomically, the same bytes for the same object.

    Saved through a file object: given a path, torch names the archive's top folder after the
    file, and atomic_path's temporary name is random, so every run would differ in its bytes
    (and in its DVC hash) though not in its tensors.
    """
    import torch  # only the stages that save models pay torch's import

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically and close it (figures pile up in memory otherwise)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
