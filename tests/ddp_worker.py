"""Trains a tiny model with engine.fit, in one process or under torchrun; rank 0 writes the history.

    python tests/ddp_worker.py OUT.json CKPT.pt
    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT.json CKPT.pt
"""

import json
import sys
from dataclasses import asdict

import torch

from reprodl import engine, models


def main(out: str, checkpoint: str) -> None:
    rank, world = engine.init_distributed()
    g = torch.Generator().manual_seed(0)
    y = torch.arange(128) % 4
    x = torch.randn(128, 1, 6, 6, generator=g) * 0.5 + y.float().view(-1, 1, 1, 1) / 2
    model = models.build_model({"kind": "mlp", "n_inputs": 36, "hidden": 16, "n_classes": 4}, seed=0)
    cfg = engine.TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9, augment=engine.Augment(shift=1), seed=0)
    history = engine.fit(model, (x, y), (x[:40], y[:40]), cfg, progress=False, checkpoint=checkpoint)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"world": world, **asdict(history), "weights": torch.cat([p.flatten() for p in model.parameters()]).tolist()}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
