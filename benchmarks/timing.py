"""What the benchmark scripts share: timing a step, and naming the CPU a figure was measured on."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def seconds_per_call(step, seconds: float, warmup: int = 1, min_calls: int = 2) -> float:
    """Seconds per call of step(), over at least `seconds` (and `min_calls` calls) after a warm-up."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), with the architecture and logical CPU count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({platform.machine()}, {os.cpu_count()} logical CPUs)"
