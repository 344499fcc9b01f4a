"""Stage e7_finetune: ResNet50 with a new last layer, every layer trained, checkpointed each epoch.

Resumes from models/e7/checkpoint.pt after an interruption. Runs unchanged under
`torchrun --nproc_per_node N stages/e7_finetune.py` (DDP; only rank 0 writes files).
"""

from pathlib import Path

from common import LiveTracker, checked_section, run, show_progress

from reprodl import engine, io
from reprodl.experiments.e7 import check_params, finetune


def main() -> None:
    cfg, seed = checked_section("e7", check_params)  # every check before any work
    rank, _ = engine.init_distributed()
    tracker = LiveTracker("plots/e7/live") if rank == 0 else None
    scores, info = finetune(
        cfg, Path(f"data/prepared/{cfg['dataset']}"), Path("models/e7/checkpoint.pt"), seed=seed, tracker=tracker, progress=show_progress()
    )
    if rank == 0:
        tracker.close()
        arrays = {split: v.numpy() for split, v in scores.items()}
        io.save_npz("data/e7/finetune_scores.npz", **arrays, train_index=info["train_index"].numpy(), seconds=info["seconds"])


if __name__ == "__main__":
    run(main)
