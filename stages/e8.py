"""Stage e8: ResNet-18 on MNIST three ways (scratch, pretrained all trained, pretrained layer4 + fc)."""

from pathlib import Path

from common import LiveTracker, checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.e8 import check_params, run_e8


def main() -> None:
    cfg, seed = checked_section("e8", check_params)  # every check before any work
    tracker = LiveTracker("plots/e8/live")
    metrics = run_e8(
        cfg,
        Path(f"data/prepared/{cfg['dataset']}"),
        report_path=Path("reports/e8.md"),
        summary_path=Path("plots/e8/layer_summary.txt"),
        tracker=tracker,
        seed=seed,
        progress=show_progress(),
    )
    tracker.close()
    io.write_json("metrics/e8.json", metrics)


if __name__ == "__main__":
    run(main)
