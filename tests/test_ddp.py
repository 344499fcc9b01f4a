"""fit under torchrun with 2 CPU processes (gloo) matches one process; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("ddp_worker.py")


def run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_processes_train_like_one(tmp_path):
    run([sys.executable, str(WORKER), "one.json", "one.pt"], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), "two.json", "two.pt"], tmp_path)
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one["world"] == 1 and two["world"] == 2
    # Same batches, each split over 2 ranks, gradients averaged: equal up to float summation order.
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(one[key], two[key], rtol=1e-4, atol=1e-5), key
    assert np.allclose(one["weights"], two["weights"], atol=1e-4)
    assert (tmp_path / "two.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no stray temporary files
