"""Stage e4: manifold untangling (t-SNE / PCA maps of the test set through the E1 models)."""

from pathlib import Path

from common import checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.e4 import check_params, run_e4


def main() -> None:
    cfg, seed = checked_section("e4", check_params)  # run_e4 checks layers and perplexity against the files first
    metrics = run_e4(
        cfg,
        Path(f"data/prepared/{cfg['dataset']}"),
        models_dir=Path("models/e1"),
        plots_dir=Path("plots/e4"),
        report_path=Path("reports/e4.md"),
        seed=seed,
        progress=show_progress(),
    )
    io.write_json("metrics/e4.json", metrics)


if __name__ == "__main__":
    run(main)
