"""Stage e7_features: ResNet50 avgpool features (forward hooks) of the scenes -> data/features/e7/."""

from pathlib import Path

from common import load_params, run, show_progress

from reprodl.experiments.e7 import check_params, extract_features
from reprodl.params import check_data, check_seed


def main() -> None:
    params = load_params()
    seed = check_seed(params)
    cfg = check_params(params["e7"], check_data(params["data"]), seed)  # every check before any work
    extract_features(cfg, Path(f"data/prepared/{cfg['dataset']}"), Path("data/features/e7"), seed=seed, progress=show_progress())


if __name__ == "__main__":
    run(main)
