"""Where per-epoch curves and confusion matrices go: the one Tracker of the pipeline.

Experiments take any object with the Tracker methods (tests pass a recorder); stages pass a
LiveTracker, which writes DVCLive files that dvc.yaml declares as plot directories.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, Sequence


class Tracker(Protocol):
    def epoch(self, model: str, epoch: int, metrics: dict[str, float]) -> None: ...

    def confusion(self, model: str, y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> None: ...


class LiveTracker:
    """Per-epoch curves and confusion matrices of several models into one DVCLive folder.

    Each model's curves are their own files (<dir>/plots/metrics/<model>/<split>/<measure>.tsv)
    and restart at step 1, so models with different epoch counts share one folder; dvc.yaml
    declares the folder, not the files, so a sweep over a list param leaves no dangling plot.
    """

    def __init__(self, directory: str | Path):
        from dvclive import Live

        # dvcyaml=False: plots are declared in our dvc.yaml; save_dvc_exp=False: `dvc exp run` owns experiments.
        self.live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)

    def epoch(self, model: str, epoch: int, metrics: dict[str, float]) -> None:
        self.live.step = epoch
        for key, value in metrics.items():
            split, _, measure = key.partition("_")  # "val_accuracy" -> val / accuracy
            if measure and math.isfinite(value):
                self.live.log_metric(f"{model}/{split}/{measure}", value)

    def confusion(self, model: str, y_true, y_pred, labels: list[str]) -> None:
        self.live.log_sklearn_plot(
            "confusion_matrix", [labels[i] for i in y_true], [labels[i] for i in y_pred], name=f"{model}/confusion_matrix.json"
        )

    def close(self) -> None:
        self.live.end()

    def __enter__(self) -> "LiveTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
