"""Keep freed tensor memory in the process instead of handing it back to the OS.

A training step frees and re-allocates the same activation buffers every batch. With
glibc's defaults, blocks over 128 KiB are mmap'ed and munmap'ed one by one (and the heap
top is trimmed), so every step page-faults its buffers in again: about 900 faults per E1
ConvNet step on the 2-core CI machine, 15-25% of the step's time. Raising the mmap and
trim thresholds lets glibc reuse the blocks. The price: the process keeps its peak heap
until it exits, which a stage does anyway.

`retain_freed_memory()` is idempotent; the engine, the feature extractor and the stage
runner call it. Elsewhere than Linux/glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for this setting (64-bit)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Apply the thresholds once per process; True if glibc accepted them."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl and others have no mallopt
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
            )
    return _applied
