"""Stage e7_features: ResNet50 avgpool features (forward hooks) of the scenes -> data/features/e7/."""

from pathlib import Path

from common import checked_section, run, show_progress

from reprodl.experiments.e7 import check_params, extract_features


def main() -> None:
    cfg, seed = checked_section("e7", check_params)  # every check before any work
    extract_features(cfg, Path(f"data/prepared/{cfg['dataset']}"), Path("data/features/e7"), seed=seed, progress=show_progress())


if __name__ == "__main__":
    run(main)
