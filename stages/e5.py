"""Stage e5: autoencoder compression (MLP autoencoders, bottleneck sizes x MSE / BCE loss)."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e5 import run_e5
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work; run_e5 checks bottlenecks and the splits' sizes first
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e5
    with LiveTracker("plots/e5/live") as tracker:
        metrics = run_e5(
            cfg,
            Path("data/prepared"),
            models_dir=Path("models/e5"),
            figures_dir=Path("plots/e5/figures"),
            tables_dir=Path("plots/e5/tables"),
            report_path=Path("reports/e5.md"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
            device=device,
        )
    write_outputs("e5", metrics)


if __name__ == "__main__":
    run(main)
