"""Stage e1: MNIST baselines (logistic regression, MLPs, ConvNet, perceptron)."""

from pathlib import Path

from common import LiveTracker, checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.e1 import check_params, run_e1


def main() -> None:
    cfg, seed = checked_section("e1", check_params)  # every check before any work
    tracker = LiveTracker("plots/e1/live")
    metrics = run_e1(
        cfg,
        f"data/prepared/{cfg['dataset']}",
        models_dir=Path("models/e1"),
        grid_path="plots/e1/first_train_images.png",
        report_path="reports/e1.md",
        tracker=tracker,
        seed=seed,
        progress=show_progress(),
    )
    tracker.close()
    io.write_json("metrics/e1.json", metrics)


if __name__ == "__main__":
    run(main)
