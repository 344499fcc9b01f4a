"""Stage e7_finetune: ResNet50 with a new last layer, every layer trained, checkpointed each epoch.

Resumes from models/e7/checkpoint.pt after an interruption. Runs unchanged under
`torchrun --nproc_per_node N stages/e7_finetune.py` (DDP; only rank 0 writes files).
"""

import contextlib
from pathlib import Path

from common import load_config, run, show_progress, write_outputs

from reprodl import engine
from reprodl.experiments.e7 import finetune, save_finetune_scores
from reprodl.tracking import LiveTracker


def main() -> None:
    params = load_config()  # every section checked before any work, on every rank
    device = engine.resolve_device(params.device)  # before any work; under torchrun, LOCAL_RANK's GPU
    cfg = params.e7
    rank, _ = engine.init_distributed(device)  # nccl on CUDA, gloo on the CPU
    with LiveTracker("plots/e7_finetune/live") if rank == 0 else contextlib.nullcontext() as tracker:
        scores, info = finetune(
            cfg, Path(f"data/prepared/{cfg.dataset}"), Path("models/e7/checkpoint.pt"), seed=params.seed, tracker=tracker, progress=show_progress(),
            device=device,
        )
    if rank == 0:
        save_finetune_scores(Path("data/e7/finetune_scores.npz"), scores, info)
        write_outputs("e7_finetune", timings={"finetune_seconds": info["seconds"]})


if __name__ == "__main__":
    run(main)
