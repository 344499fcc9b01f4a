"""Stage pretrain: the embedded profile's pretrained backbones (resnet50, resnet18) -> models/pretrained/."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.experiments.pretrain import run_pretrain


def main() -> None:
    params = load_config()  # every section checked before any work
    cfg = params.pretrain
    metrics = run_pretrain(cfg, Path(f"data/prepared/{cfg.dataset}"), Path("models/pretrained"), seed=params.seed, progress=show_progress())
    write_outputs("pretrain", metrics)


if __name__ == "__main__":
    run(main)
