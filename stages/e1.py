"""Stage e1: MNIST baselines (logistic regression, MLPs, ConvNet, perceptron)."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e1 import run_e1
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e1
    with LiveTracker("plots/e1/live") as tracker:
        metrics = run_e1(
            cfg,
            Path(f"data/prepared/{cfg.dataset}"),
            models_dir=Path("models/e1"),
            grid_path=Path("plots/e1/figures/first_train_images.png"),
            table_path=Path("plots/e1/tables/results.csv"),
            report_path=Path("reports/e1.md"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
            device=device,
        )
    write_outputs("e1", metrics)


if __name__ == "__main__":
    run(main)
