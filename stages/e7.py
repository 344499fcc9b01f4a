"""Stage e7: linear heads on the cached features, AP / mAP of every model, the report."""

from pathlib import Path

from common import LiveTracker, load_params, run, show_progress

from reprodl import io
from reprodl.experiments.e7 import check_params, run_heads
from reprodl.params import check_data, check_seed


def main() -> None:
    params = load_params()
    seed = check_seed(params)
    data = check_data(params["data"])
    cfg = check_params(params["e7"], data, seed)  # every check before any work
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
        profile=data["profile"],
    )
    tracker.close()
    io.write_json("metrics/e7.json", metrics)


if __name__ == "__main__":
    run(main)
