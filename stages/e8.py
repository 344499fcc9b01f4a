"""Stage e8: ResNet-18 on MNIST three ways (scratch, pretrained all trained, pretrained layer4 + fc)."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e8 import run_e8
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e8
    with LiveTracker("plots/e8/live") as tracker:
        metrics = run_e8(
            cfg,
            Path(f"data/prepared/{cfg.dataset}"),
            report_path=Path("reports/e8.md"),
            summary_path=Path("plots/e8/tables/layer_summary.txt"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
            device=device,
        )
    write_outputs("e8", metrics)


if __name__ == "__main__":
    run(main)
