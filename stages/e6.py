"""Stage e6: the course's experiments on reprodl.numpy_nn, a NumPy library with hand-written backprop."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.experiments.e6 import run_e6
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work
    with LiveTracker("plots/e6/live") as tracker:
        metrics = run_e6(
            params.e6,
            Path("data/prepared"),  # the image tasks read data/prepared/<dataset>
            figures_dir=Path("plots/e6/figures"),
            report_path=Path("reports/e6.md"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
        )
    write_outputs("e6", metrics)


if __name__ == "__main__":
    run(main)
