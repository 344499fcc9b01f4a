"""Stage e3: the two- and three-layer width grids, top models re-trained, best by val -> test.

The grid's stacks run on REPRODL_WORKERS processes of one thread each (default: one per core);
under `dvc queue start -j 2` set REPRODL_WORKERS=1 so the two queued experiments share the cores.
"""

from pathlib import Path

from common import checked_section, run, show_progress

from reprodl import grid, io
from reprodl.experiments.e3 import check_params, run_e3


def main() -> None:
    cfg, seed = checked_section("e3", check_params)  # every check before any work
    metrics = run_e3(
        cfg,
        Path(f"data/prepared/{cfg['dataset']}"),
        figures_dir=Path("plots/e3"),
        report_path=Path("reports/e3.md"),
        workers=grid.default_workers(),
        progress=show_progress(),
    )
    io.write_json("metrics/e3.json", metrics)


if __name__ == "__main__":
    run(main)
