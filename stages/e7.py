"""Stage e7: linear heads on the cached features, AP / mAP of every model, the report."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e7 import run_heads
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e7
    with LiveTracker("plots/e7/live") as tracker:
        metrics = run_heads(
            cfg,
            Path(f"data/prepared/{cfg.dataset}"),
            Path("data/features/e7"),
            Path("data/e7/finetune_scores.npz"),
            report_path=Path("reports/e7.md"),
            figure_path=Path("plots/e7/figures/ap_per_class.png"),
            table_path=Path("plots/e7/tables/ap_per_class.csv"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
            device=device,
        )
    write_outputs("e7", metrics)


if __name__ == "__main__":
    run(main)
