"""Stage e9: a fine-tuned ViT against frozen MobileNetV2 features on balanced fine-grained subsets."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e9 import run_e9
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e9
    with LiveTracker("plots/e9/live") as tracker:
        metrics, timings = run_e9(
            cfg,
            Path(f"data/prepared/{cfg.dataset}"),
            report_path=Path("reports/e9.md"),
            figures_dir=Path("plots/e9/figures"),
            tables_dir=Path("plots/e9/tables"),
            tracker=tracker,
            seed=params.seed,
            progress=show_progress(),
            device=device,
        )
    write_outputs("e9", metrics, timings)


if __name__ == "__main__":
    run(main)
