"""Stage e3: the two- and three-layer width grids, top models re-trained, best by val -> test.

The grid's stacks run on REPRODL_WORKERS processes of one thread each (default: one per core);
under `dvc queue start -j 2` set REPRODL_WORKERS=1 so the two queued experiments share the cores.
"""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl import grid
from reprodl.engine import resolve_device
from reprodl.experiments.e3 import run_e3


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e3
    metrics = run_e3(
        cfg,
        Path(f"data/prepared/{cfg.dataset}"),
        figures_dir=Path("plots/e3/figures"),
        tables_dir=Path("plots/e3/tables"),
        report_path=Path("reports/e3.md"),
        seed=params.seed,
        workers=grid.default_workers(),
        progress=show_progress(),
        device=device,
    )
    write_outputs("e3", metrics)


if __name__ == "__main__":
    run(main)
