"""Which arithmetic a training run or a feature extraction uses: fp32, or bf16 autocast.

bf16 autocast runs convolutions and matrix products in bfloat16 (weights and optimiser
state stay fp32). It pays only where the hardware computes bf16 natively: CPUs with
AVX-512 BF16 or AMX (e.g. AMD Zen 4, Intel Sapphire Rapids) and CUDA GPUs that support it.
On other CPUs (AVX2 only) it is emulated and several times slower than fp32.

A param takes one of PRECISIONS:
- "fp32": always fp32;
- "bf16": always bf16 autocast (slow where it is emulated);
- "auto": bf16 autocast where native, else fp32. The same params then give the same
  metrics on the same machine, but a CPU with native bf16 and one without compute
  differently; every stage that uses it records which one it used.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .config import PRECISIONS  # noqa: E402  (the allowed values live in the config)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (else autocast to bf16 only slows things down)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device | str = "cpu") -> bool:
    """Resolve a PRECISIONS value for a device: True means bf16 autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def autocast(bf16: bool, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on the device, or nothing."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
