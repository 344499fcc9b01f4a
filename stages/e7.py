"""Stage e7: linear heads on the cached features, AP / mAP of every model, the report."""

from pathlib import Path

from common import LiveTracker, checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.e7 import check_params, run_heads


def main() -> None:
    cfg, seed = checked_section("e7", check_params)  # every check before any work
    tracker = LiveTracker("plots/e7/heads_live")
    metrics = run_heads(
        cfg,
        Path(f"data/prepared/{cfg['dataset']}"),
        Path("data/features/e7"),
        Path("data/e7/finetune_scores.npz"),
        report_path=Path("reports/e7.md"),
        figure_path=Path("plots/e7/ap_per_class.png"),
        tracker=tracker,
        seed=seed,
        progress=show_progress(),
    )
    tracker.close()
    io.write_json("metrics/e7.json", metrics)


if __name__ == "__main__":
    run(main)
