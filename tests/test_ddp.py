"""fit under torchrun with 2 CPU processes (gloo on 127.0.0.1) trains like one process; only rank 0 writes.

One process and two run the same scenarios (tests/ddp_worker.py): shares of every batch even,
uneven (a batch of 5 on 2 ranks), and a last batch of 1 sample (rank 1's share empty); a run
killed after its first epoch resumes under DDP; the e7_finetune stage runs under torchrun.
Every torchrun process goes through tests/rank_writes.py, which logs each file it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from configs import raw_params
from helpers import write_tiny_scenes

from reprodl import engine, io

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
RANK_WRITES = Path(__file__).with_name("rank_writes.py")
SCENARIOS = ("even", "uneven", "last1")
# --local-addr: torchrun's store and MASTER_ADDR on the loopback, never the host name.
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1", "--nproc_per_node", "2")


def run(cmd: list[str], cwd: Path, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REPRODL_PROGRESS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert (result.returncode == 0) == ok, f"exit {result.returncode}\n" + result.stdout[-3000:] + result.stderr[-3000:]
    return result


def torchrun(script: Path, args: list[str], cwd: Path, logs: Path, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 script args` in cwd, each rank's writes logged to logs/rank<r>.log."""
    logs.mkdir(exist_ok=True)
    return run([sys.executable, *TORCHRUN, str(RANK_WRITES), str(logs), str(script), *args], cwd, ok, timeout)


def writes(logs: Path, rank: int) -> list[str]:
    """What rank wrote under the working directory: "event path" lines."""
    path = logs / f"rank{rank}.log"
    assert path.exists(), f"rank {rank} did not run under {RANK_WRITES.name}"
    return path.read_text().splitlines()


def assert_same_training(one: dict, two: dict) -> None:
    # Same batches, each split over 2 ranks, gradients combined: equal up to float summation order.
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(one[key], two[key], rtol=1e-4, atol=1e-5), (key, one[key], two[key])
    assert np.all(np.isfinite(two["weights"]))
    assert np.allclose(one["weights"], two["weights"], atol=1e-4), np.abs(np.subtract(one["weights"], two["weights"])).max()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every scenario in one process and under torchrun with 2 (checkpointing as it goes)."""
    one_dir, two_dir = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    logs = tmp_path_factory.mktemp("two_logs")
    run([sys.executable, str(WORKER), "out.json", *SCENARIOS, "--checkpoint-dir", "."], one_dir)
    torchrun(WORKER, ["out.json", *SCENARIOS, "--checkpoint-dir", "."], two_dir, logs)
    one, two = (json.loads((d / "out.json").read_text()) for d in (one_dir, two_dir))
    return {"one": one, "two": two, "two_dir": two_dir, "logs": logs}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_processes_train_like_one(runs, scenario):
    assert runs["one"]["world"] == 1 and runs["two"]["world"] == 2
    assert_same_training(runs["one"][scenario], runs["two"][scenario])


def test_only_rank_0_writes(runs):
    two_dir, logs = runs["two_dir"], runs["logs"]
    assert writes(logs, 1) == [], "rank 1 wrote files"
    written = {line.split(" ", 1)[1] for line in writes(logs, 0)}
    assert {"out.json", *(f"{name}.pt" for name in SCENARIOS)} <= written
    assert sorted(p.name for p in two_dir.iterdir()) == sorted(["out.json", *(f"{name}.pt" for name in SCENARIOS)])  # no stray temporary files
    for name in SCENARIOS:
        assert torch.load(two_dir / f"{name}.pt", weights_only=True)["epochs_done"] == len(runs["two"][name]["train_loss"])


def test_gloo_binds_the_loopback_interface(runs):
    assert runs["two"]["gloo_socket_ifname"] == os.environ.get("GLOO_SOCKET_IFNAME", engine._loopback_interface())


def test_a_run_killed_under_ddp_resumes_under_ddp_like_an_uninterrupted_one(runs, tmp_path):
    logs = tmp_path / "logs"
    killed = torchrun(WORKER, ["out.json", "uneven", "--checkpoint-dir", ".", "--fail-after", "1"], tmp_path, logs, ok=False)
    assert "Interrupt: stopped after epoch 1" in killed.stdout + killed.stderr  # rank 0 stopped, not a crash elsewhere
    assert not (tmp_path / "out.json").exists()
    assert torch.load(tmp_path / "uneven.pt", weights_only=True)["epochs_done"] == 1
    torchrun(WORKER, ["out.json", "uneven", "--checkpoint-dir", "."], tmp_path, logs)
    resumed = json.loads((tmp_path / "out.json").read_text())["uneven"]
    assert len(resumed["train_loss"]) == 2  # epoch 1 restored, epoch 2 trained
    assert_same_training(runs["one"]["uneven"], resumed)
    assert writes(logs, 1) == []


def test_loopback_defaults_only_fill_what_the_environment_leaves_unset():
    lo = engine._loopback_interface()
    one_host = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    assert engine._loopback_defaults(one_host, "gloo") == {"MASTER_ADDR": "127.0.0.1", **({"GLOO_SOCKET_IFNAME": lo} if lo else {})}
    assert engine._loopback_defaults({**one_host, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "eth0"}, "gloo") == {}
    assert engine._loopback_defaults(one_host, "nccl") == {"MASTER_ADDR": "127.0.0.1"}
    # Two hosts (ranks elsewhere): gloo must reach them, not the loopback.
    assert engine._loopback_defaults({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1"}, "gloo") == {}


@pytest.mark.slow
def test_e7_finetune_stage_under_torchrun_writes_its_outputs_from_rank_0_only(tmp_path):
    repo, logs = tmp_path / "repo", tmp_path / "logs"
    sizes = {"train": 18, "val": 5, "test": 4}
    write_tiny_scenes(repo / "data/prepared/digit_scenes", sizes)
    # resnet18 at 32 px, random init; batches of 7 from 18 scenes: shares 4 + 3, 4 + 3, 2 + 2 (BatchNorm needs 2 a rank).
    params = raw_params({
        "e7.dataset": "digit_scenes", "e7.arch": "resnet18", "e7.weights": "none", "e7.image_size": 32,
        "e7.finetune.epochs": 2, "e7.finetune.batch_size": 7, "e7.finetune.max_train_images": None, "e7.finetune.precision": "fp32",
    })
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    torchrun(ROOT / "stages" / "e7_finetune.py", [], repo, logs, timeout=400)
    assert writes(logs, 1) == [], "rank 1 wrote files"
    outputs = ["data/e7/finetune_scores.npz", "models/e7/checkpoint.pt", "timings/e7_finetune.json"]
    written = {line.split(" ", 1)[1] for line in writes(logs, 0)}
    assert set(outputs) <= written
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    made = [f for f in files if not f.startswith(("data/prepared/", "plots/e7_finetune/live/")) and f != "params.yaml"]
    assert made == sorted(outputs), "each output once, no stray temporary files"
    assert any(f.startswith("plots/e7_finetune/live/") for f in files), "rank 0's DVCLive curves"
    scores = io.load_npz(repo / "data/e7/finetune_scores.npz")
    assert {split: scores[split].shape for split in ("train", "val", "test")} == {s: (n, 3) for s, n in sizes.items()}
    assert all(np.isfinite(scores[split]).all() for split in ("train", "val", "test"))
    assert torch.load(repo / "models/e7/checkpoint.pt", weights_only=True)["epochs_done"] == 2


def test_the_write_log_sees_every_kind_of_write(tmp_path):
    """The check behind "only rank 0 writes" sees writes, atomic renames, new folders and deletions."""
    logs, work = tmp_path / "logs", tmp_path / "work"
    logs.mkdir(), work.mkdir()
    (work / "old.txt").write_text("x")
    script = tmp_path / "writer.py"
    script.write_text(
        "import os, tempfile, numpy as np\n"
        "open('plain.txt', 'w').write('a')\n"
        "os.mkdir('sub')\n"
        "fd, tmp = tempfile.mkstemp(dir='sub'); os.close(fd); os.replace(tmp, 'sub/atomic.bin')\n"
        "np.save('array.npy', np.zeros(2))\n"
        "os.remove('old.txt')\n"
        "open('plain.txt').read()  # reading is not writing\n"
        "open(os.path.join(os.path.dirname(os.getcwd()), 'outside.txt'), 'w').write('b')  # outside the working directory\n"
    )
    run([sys.executable, str(RANK_WRITES), str(logs), str(script)], work)
    paths = {line.split(" ", 1)[1] for line in writes(logs, 0)}
    assert {"plain.txt", "sub", "sub/atomic.bin", "array.npy", "old.txt"} <= paths
    assert not any(p.startswith("..") for p in paths)
