"""Stage e5: autoencoder compression (MLP autoencoders, bottleneck sizes x MSE / BCE loss)."""

from pathlib import Path

from common import LiveTracker, checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.e5 import check_params, run_e5


def main() -> None:
    cfg, seed = checked_section("e5", check_params)  # run_e5 checks the splits' sizes first
    tracker = LiveTracker("plots/e5/live")
    metrics = run_e5(
        cfg,
        Path("data/prepared"),
        models_dir=Path("models/e5"),
        plots_dir=Path("plots/e5"),
        report_path=Path("reports/e5.md"),
        tracker=tracker,
        seed=seed,
        progress=show_progress(),
    )
    tracker.close()
    io.write_json("metrics/e5.json", metrics)


if __name__ == "__main__":
    run(main)
