"""End to end: the real `dvc repro` in a temporary copy of the repository, params shrunk.

Slow by nature (every stage starts a Python process): one repro, then one `dvc exp run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "REPRODL_PROGRESS": "0"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message], repo)


def shrunk_copy(repo: Path, extra: dict | None = None) -> Path:
    """Copy the repository's sources (tracked and new, not ignored; no outputs) into `repo`,
    merge tests/e2e_params.yaml (then `extra`) over params.yaml, and commit it as a new git repo."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
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
    run(["git", "init", "-q"], repo)
    commit(repo, "shrunk copy")
    return repo


@pytest.fixture(scope="module")
def shrunk_repo(tmp_path_factory) -> Path:
    """A shrunk copy of the repository, freshly reproduced."""
    repo = shrunk_copy(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro"], repo)
    return repo


@pytest.mark.slow
def test_repro_writes_every_declared_output(shrunk_repo: Path):
    lock = yaml.safe_load((shrunk_repo / "dvc.lock").read_text())
    listed = run(["dvc", "stage", "list", "--name-only"], shrunk_repo).stdout.split()
    assert listed and set(listed) == set(lock["stages"]), "every stage of dvc.yaml ran and is locked"
    for stage, entry in lock["stages"].items():
        for out in entry.get("outs", []):
            path = shrunk_repo / out["path"]
            assert path.exists(), f"{stage} declared {out['path']} but did not write it"
            if path.is_dir():
                assert any(path.iterdir()), f"{stage} wrote an empty {out['path']}"
    status = run(["dvc", "status"], shrunk_repo).stdout
    assert "up to date" in status, status


@pytest.mark.slow
def test_metrics_are_named_experiment_model_split_measure(shrunk_repo: Path):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], shrunk_repo).stdout)
    metrics = next(iter(shown.values()))["data"]["metrics/e1.json"]["data"]
    for model in ("logreg", "mlp", "convnet"):
        for split in ("train", "val", "test"):
            assert 0.0 <= metrics["e1"][model][split]["accuracy"] <= 1.0
    assert metrics["e1"]["logreg"]["n_params"] == 7850
    assert "mlp_sigmoid_lr0p5" in metrics["e1"]
    assert 0.0 <= metrics["e1"]["perceptron"]["test"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_exp_run_with_a_param_override_shows_in_exp_show(shrunk_repo: Path):
    commit(shrunk_repo, "baseline")
    run(["dvc", "exp", "run", "-S", "e1.logreg.lr=0.05", "-n", "lower-lr"], shrunk_repo)
    rows = json.loads(run(["dvc", "exp", "show", "--json"], shrunk_repo).stdout)
    exps = [exp for row in rows for exp in row.get("experiments") or []]
    names = {rev.get("name") for exp in exps for rev in exp.get("revs", [])}
    assert "lower-lr" in names, names
    rev = next(rev for exp in exps for rev in exp["revs"] if rev.get("name") == "lower-lr")
    assert rev["data"]["params"]["params.yaml"]["data"]["e1"]["logreg"]["lr"] == 0.05
    assert "e1" in rev["data"]["metrics"]["metrics/e1.json"]["data"]
