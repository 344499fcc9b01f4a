"""Trains tiny models with engine.fit, in one process or under torchrun; rank 0 writes the results.

    python tests/ddp_worker.py OUT.json SCENARIO [SCENARIO ...] [--checkpoint-dir DIR] [--fail-after K]
    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT.json SCENARIO ...

Every scenario trains the same MLP on the same batches; tests/test_ddp.py compares one process
with two. --fail-after K makes rank 0 raise after epoch K (a run killed mid-way, to resume).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from reprodl import engine, models


class Interrupt(Exception):
    pass


# name -> (train size, val size, TrainConfig): the shares of a batch over 2 ranks are
SCENARIOS = {
    # even: 16 = 8 + 8 in every batch
    "even": (128, 40, engine.TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9, augment=engine.Augment(shift=1), seed=0)),
    # uneven: 5 = 3 + 2, the last batch (128 = 25 * 5 + 3) 2 + 1; val 41 = 21 + 20; a per-step schedule
    "uneven": (128, 41, engine.TrainConfig(
        epochs=2, batch_size=5, lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="onecycle", augment=engine.Augment(shift=1), seed=1,
    )),
    # last batch of 1 (129 = 8 * 16 + 1): rank 1's share is empty; val of 1 row: rank 1 scores nothing
    "last1": (129, 1, engine.TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9, augment=engine.Augment(shift=1), seed=2)),
}


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = torch.randn(n, 1, 6, 6, generator=g) * 0.5 + y.float().view(-1, 1, 1, 1) / 2
    return x, y


def train(name: str, checkpoint: str | None, fail_after: int | None) -> dict:
    n, n_val, cfg = SCENARIOS[name]
    x, y = data(n)
    model = models.build_model({"kind": "mlp", "n_inputs": 36, "hidden": 16, "n_classes": 4}, seed=0)

    def on_epoch(epoch: int, metrics: dict) -> None:
        if epoch == fail_after:
            raise Interrupt(f"stopped after epoch {epoch}")

    history = engine.fit(model, (x, y), (x[:n_val], y[:n_val]), cfg, on_epoch=on_epoch, progress=False, checkpoint=checkpoint)
    return {**asdict(history), "weights": torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--fail-after", type=int)
    args = parser.parse_args()
    rank, world = engine.init_distributed()
    results = {
        name: train(name, str(Path(args.checkpoint_dir) / f"{name}.pt") if args.checkpoint_dir else None, args.fail_after)
        for name in args.scenarios
    }
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump({"world": world, "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME"), **results}, f)


if __name__ == "__main__":
    main()
