"""Stage e2: the 384-model shallow grid search (batch x epochs x lr x hidden), stacked.

The grid's stacks run on REPRODL_WORKERS processes of one thread each (default: one per core);
under `dvc queue start -j 2` set REPRODL_WORKERS=1 so the two queued experiments share the cores.
"""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl import grid
from reprodl.engine import resolve_device
from reprodl.experiments.e2 import run_e2


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e2
    metrics = run_e2(
        cfg,
        Path(f"data/prepared/{cfg.dataset}"),
        table_path=Path("plots/e2/tables/results.csv"),
        figures_dir=Path("plots/e2/figures"),
        report_path=Path("reports/e2.md"),
        seed=params.seed,
        workers=grid.default_workers(),
        progress=show_progress(),
        device=device,
    )
    write_outputs("e2", metrics)


if __name__ == "__main__":
    run(main)
