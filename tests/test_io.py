"""reprodl.io: atomic, chunked, reproducible .npz files."""

from __future__ import annotations

import time

import numpy as np

from reprodl import io


def test_save_npz_round_trips_every_dtype_and_shape_in_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "NPZ_CHUNK_BYTES", 100)  # many chunks, and rows wider than a chunk
    arrays = {
        "x": np.arange(2 * 3 * 20 * 20, dtype=np.uint8).reshape(2 * 3, 1, 20, 20),
        "y": np.arange(6, dtype=np.int64),
        "f": np.linspace(0, 1, 7, dtype=np.float32)[::2],  # not contiguous
        "empty": np.zeros((0, 4), dtype=np.uint8),
        "scalar": np.array(3.5),
        "flags": np.eye(3, dtype=bool),
    }
    io.save_npz(tmp_path / "a.npz", **arrays)
    time.sleep(2.1)  # zip time stamps have a 2 s resolution
    io.save_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = io.load_npz(tmp_path / "a.npz")
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    np.savez_compressed(tmp_path / "numpy.npz", **arrays)  # the same content as numpy's own writer
    with np.load(tmp_path / "numpy.npz") as theirs:
        for name in arrays:
            np.testing.assert_array_equal(theirs[name], loaded[name])
