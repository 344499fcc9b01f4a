"""Stage e2: the 384-model shallow grid search (batch x epochs x lr x hidden), stacked.

The grid's stacks run on REPRODL_WORKERS processes of one thread each (default: one per core);
under `dvc queue start -j 2` set REPRODL_WORKERS=1 so the two queued experiments share the cores.
"""

from pathlib import Path

from common import checked_section, run, show_progress

from reprodl import grid, io
from reprodl.experiments.e2 import check_params, run_e2


def main() -> None:
    cfg, seed = checked_section("e2", check_params)  # every check before any work
    metrics = run_e2(
        cfg,
        Path(f"data/prepared/{cfg['dataset']}"),
        table_path=Path("plots/e2/results.csv"),
        figures_dir=Path("plots/e2"),
        report_path=Path("reports/e2.md"),
        workers=grid.default_workers(),
        progress=show_progress(),
    )
    io.write_json("metrics/e2.json", metrics)


if __name__ == "__main__":
    run(main)
