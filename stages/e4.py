"""Stage e4: manifold untangling (t-SNE / PCA maps of the test set through the E1 models)."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.experiments.e4 import run_e4


def main() -> None:
    params = load_config()  # every section checked before any work; run_e4 checks layers and perplexity against the files first
    cfg = params.e4
    metrics = run_e4(
        cfg,
        Path(f"data/prepared/{cfg.dataset}"),
        models_dir=Path("models/e1"),
        figures_dir=Path("plots/e4/figures"),
        tables_dir=Path("plots/e4/tables"),
        report_path=Path("reports/e4.md"),
        seed=params.seed,
        progress=show_progress(),
    )
    write_outputs("e4", metrics)


if __name__ == "__main__":
    run(main)
