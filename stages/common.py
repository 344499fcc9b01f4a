"""What every stage script shares: reading params.yaml, clean errors, DVCLive tracking.

Stages are run from the repository root (dvc.yaml sets no wdir), so paths are relative to it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run stages from the repository root (dvc repro does)")
    with open(path) as f:
        return yaml.safe_load(f)


def checked_section(name: str, check_params: Callable[[dict, dict, int], dict]) -> tuple[dict, int]:
    """(validated params section `name`, seed): every check runs before the stage does any work."""
    from reprodl.params import check_data, check_seed

    params = load_params()
    seed = check_seed(params)
    return check_params(params[name], check_data(params["data"]), seed), seed


def show_progress() -> bool:
    """Progress bars unless REPRODL_PROGRESS=0 (the end-to-end test turns them off)."""
    return os.environ.get("REPRODL_PROGRESS", "1") != "0"


def run(main: Callable[[], None]) -> None:
    """Run a stage; a known bad input ends it with one clear line and exit status 2.

    Anything else is a bug and keeps its traceback.
    """
    from reprodl.datasets import DatasetError
    from reprodl.params import ParamError

    known: tuple[type[BaseException], ...] = (ParamError, DatasetError, FileNotFoundError)
    try:
        from reprodl.download import DownloadError

        known += (DownloadError,)
    except ImportError:  # pragma: no cover
        pass
    from reprodl.heap import retain_freed_memory

    retain_freed_memory()  # every stage re-allocates same-sized buffers in loops (see reprodl.heap)
    try:
        main()
    except known as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class LiveTracker:
    """Per-epoch curves and confusion matrices of several models into one DVCLive folder.

    Each model's curves are their own files (<model>/train/loss.tsv, ...) and restart at
    step 1, so models with different epoch counts share one folder.
    """

    def __init__(self, directory: str | Path):
        from dvclive import Live

        # dvcyaml=False: plots are declared in our dvc.yaml; save_dvc_exp=False: `dvc exp run` owns experiments.
        self.live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)

    def epoch(self, model: str, epoch: int, metrics: dict[str, float]) -> None:
        self.live.step = epoch
        for key, value in metrics.items():
            split, _, measure = key.partition("_")  # "val_accuracy" -> val / accuracy
            if measure and np.isfinite(value):
                self.live.log_metric(f"{model}/{split}/{measure}", value)

    def confusion(self, model: str, y_true, y_pred, labels: list[str]) -> None:
        self.live.log_sklearn_plot(
            "confusion_matrix", [labels[i] for i in y_true], [labels[i] for i in y_pred], name=f"{model}/confusion_matrix.json"
        )

    def close(self) -> None:
        self.live.end()
