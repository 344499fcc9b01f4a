"""Stage pretrain@<arch>: one of the embedded profile's pretrained backbones -> models/pretrained/<arch>.pt."""

import sys
from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.pretrain import run_pretrain


def main() -> None:
    arch = sys.argv[1]
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.pretrain
    metrics = run_pretrain(
        cfg, Path(f"data/prepared/{cfg.dataset}"), Path("models/pretrained"), archs=[arch], seed=params.seed, progress=show_progress(), device=device
    )
    write_outputs(f"pretrain_{arch}", metrics)


if __name__ == "__main__":
    run(main)
