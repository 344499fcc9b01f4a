"""Stage pretrain: the embedded profile's pretrained backbones (resnet50, resnet18) -> models/pretrained/."""

from pathlib import Path

from common import load_params, run, show_progress

from reprodl import io
from reprodl.experiments.pretrain import check_params, run_pretrain
from reprodl.params import check_data, check_seed


def main() -> None:
    params = load_params()
    seed = check_seed(params)
    cfg = check_params(params["pretrain"], check_data(params["data"]), seed)  # every check before any work
    metrics = run_pretrain(cfg, Path(f"data/prepared/{cfg['dataset']}"), Path("models/pretrained"), seed=seed, progress=show_progress())
    io.write_json("metrics/pretrain.json", metrics)


if __name__ == "__main__":
    run(main)
