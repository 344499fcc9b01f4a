"""What every stage script shares: the validated config, clean errors, metrics and timings.

Stages are run from the repository root (dvc.yaml sets no wdir), so paths are relative to it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

STARTED = time.perf_counter()  # this module is a stage's first import: its wall time starts here
PARAMS_FILE = Path("params.yaml")
SOURCES_FILE = Path("sources.yaml")


def load_config():
    """Every section of params.yaml, validated at once (config.ConfigError when any key is bad)."""
    from reprodl.config import load_params

    return load_params(PARAMS_FILE)


def show_progress() -> bool:
    """Progress bars unless REPRODL_PROGRESS=0 (the end-to-end test turns them off)."""
    return os.environ.get("REPRODL_PROGRESS", "1") != "0"


def split_timings(tree: Any) -> tuple[Any, Any]:
    """(tree without its "seconds" entries, the "seconds" entries in the same nesting).

    Wall times differ on every run; kept out of metrics/, `dvc metrics diff` of two runs with
    the same params on the same machine prints nothing.
    """
    if not isinstance(tree, dict):
        return tree, None
    kept, times = {}, {}
    for key, value in tree.items():
        if key == "seconds" or key.endswith("_seconds"):
            times[key] = value
            continue
        value, sub = split_timings(value)
        kept[key] = value
        if sub:
            times[key] = sub
    return kept, times


def write_outputs(stage: str, metrics: dict | None = None, timings: dict | None = None) -> None:
    """metrics/<stage>.json (headline numbers) and timings/<stage>.json (wall seconds)."""
    from reprodl import io

    found: dict = {}
    if metrics is not None:
        metrics, found = split_timings(metrics)
        io.write_json(f"metrics/{stage}.json", metrics)
    io.write_json(f"timings/{stage}.json", {"stage_seconds": round(time.perf_counter() - STARTED, 2), **(found or {}), **(timings or {})})


def run(main: Callable[[], None]) -> None:
    """Run a stage; a known bad input ends it with one clear line per problem and exit status 2.

    Anything else is a bug and keeps its traceback.
    """
    from reprodl.config import ConfigError, ParamError
    from reprodl.datasets import DatasetError
    from reprodl.download import DownloadError
    from reprodl.heap import retain_freed_memory

    retain_freed_memory()  # every stage re-allocates same-sized buffers in loops (see reprodl.heap)
    try:
        main()
    except ConfigError as err:
        print("\n".join(err.lines), file=sys.stderr)
        sys.exit(2)
    except ParamError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    except (DatasetError, DownloadError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
