"""Shrunk copies of the repository for the end-to-end tests, and running commands in them.

A copy holds the repository's sources (no outputs), params.yaml with tests/e2e_params.yaml (and
any extra overrides) merged over it, and is a git repository of its own, committed once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage_env() -> dict[str, str]:
    # DVC_GLOBAL_CONFIG_DIR: hard-linked DVC caches (tests/dvc_config/config says why)
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "REPRODL_PROGRESS": "0",
            "DVC_GLOBAL_CONFIG_DIR": str(ROOT / "tests" / "dvc_config")}


def run(cmd: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env or stage_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def wait_for_queue(repo: Path, timeout: float = 240) -> str:
    """Poll `dvc queue status` until nothing is queued or running; its last output (no "Failed")."""
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], repo).stdout
        if ("Queued" not in status and "Running" not in status) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert "Queued" not in status and "Running" not in status, f"the queue did not finish in {timeout:.0f} s:\n{status}"
    assert "Failed" not in status, status
    return status


def run_side_by_side(jobs: list[tuple[list[str], Path, dict[str, str] | None]], timeout: float = 900) -> None:
    """Start every (cmd, cwd, env or None) at once, wait for all; each must succeed."""
    started = [
        (cmd, cwd, subprocess.Popen(cmd, cwd=cwd, env=env or stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for cmd, cwd, env in jobs
    ]
    try:
        for cmd, cwd, process in started:
            output, _ = process.communicate(timeout=timeout)
            assert process.returncode == 0, f"{' '.join(cmd)} in {cwd} failed:\n{output[-6000:]}"
    finally:
        for _, _, process in started:
            if process.poll() is None:
                process.kill()


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "--allow-empty", "-qm", message], repo)


def shrunk_copy(repo: Path, extra: dict | None = None, sources: dict | None = None) -> Path:
    """Copy the repository's sources (tracked and new, not ignored; no outputs) into `repo`,
    merge tests/e2e_params.yaml (then `extra`) over params.yaml, replace sources.yaml by
    `sources` when given, and commit it as a new git repo."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    skip = ("data/", "models/", "metrics/", "plots/", "reports/", "dvc.lock")  # outputs: the copy makes its own
    for rel in listed.stdout.splitlines():
        src = ROOT / rel
        if rel.startswith(skip) or not src.is_file():
            continue
        dst = repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    params = deep_merge(yaml.safe_load((repo / "params.yaml").read_text()), yaml.safe_load((ROOT / "tests" / "e2e_params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, extra or {}), sort_keys=False))
    if sources is not None:
        (repo / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))
    run(["git", "init", "-q"], repo)
    commit(repo, "shrunk copy")
    return repo


def metrics_of(repo: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((repo / "metrics").glob("*.json"))}


def checked_metrics(repo: Path) -> dict[str, dict]:
    """Every stage's metrics file, each holding only finite headline numbers (no wall times)."""
    from helpers import flat

    metrics = metrics_of(repo)
    pretrained = [f"pretrain_{arch}" for arch in yaml.safe_load((repo / "params.yaml").read_text())["pretrain"]["archs"]]
    assert set(metrics) == {f"{stage}.json" for stage in ("e1", "e2", "e3", "e4", "e5", "e6", *pretrained, "e7", "e8", "e9")}
    for name, tree in metrics.items():
        values = list(flat(tree).items())
        assert 0 < len(values) <= 60, f"{name}: {len(values)} values; metrics hold headline numbers only"
        for key, value in values:
            assert "seconds" not in key, f"{name}: {key} is a wall time; it belongs in timings/"
            if isinstance(value, float):
                assert math.isfinite(value), f"{name}: {key} = {value}"
    return metrics


OUTPUT_FOLDERS = ("data", "models", "metrics", "plots", "reports", "timings")
