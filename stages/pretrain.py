"""Stage pretrain: the embedded profile's pretrained backbones (resnet50, resnet18) -> models/pretrained/."""

from pathlib import Path

from common import checked_section, run, show_progress

from reprodl import io
from reprodl.experiments.pretrain import check_params, run_pretrain


def main() -> None:
    cfg, seed = checked_section("pretrain", check_params)  # every check before any work
    metrics = run_pretrain(cfg, Path(f"data/prepared/{cfg['dataset']}"), Path("models/pretrained"), seed=seed, progress=show_progress())
    io.write_json("metrics/pretrain.json", metrics)


if __name__ == "__main__":
    run(main)
