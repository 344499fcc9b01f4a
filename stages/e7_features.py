"""Stage e7_features: ResNet50 features of the scenes at e7.layer (forward hooks) -> data/features/e7/."""

from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl.engine import resolve_device
from reprodl.experiments.e7 import FEATURE_KINDS, extract_features


def main() -> None:
    params = load_config()  # every section checked before any work
    device = resolve_device(params.device)  # before any work: device: cuda without a GPU stops here
    cfg = params.e7
    info = extract_features(cfg, Path(f"data/prepared/{cfg.dataset}"), Path("data/features/e7"), seed=params.seed, progress=show_progress(), device=device)
    write_outputs("e7_features", timings={kind: {"seconds": info[kind]["seconds"]} for kind in FEATURE_KINDS})


if __name__ == "__main__":
    run(main)
