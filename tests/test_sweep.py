"""A DVC sweep of E2: two queued experiments from one `-S` with a comma list of grid lists,
run by a queue worker, compared by `dvc exp show` (the README's recipe, shrunk)."""

from __future__ import annotations

import json
import time

import pytest

from copies import commit, run, shrunk_copy


@pytest.mark.slow
def test_queued_sweep_of_a_grid_list_shows_both_experiments(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRODL_WORKERS", "1")  # the queue worker's stage: one process
    repo = shrunk_copy(tmp_path / "repo", {"e2": {"grid": {"batch": [32], "epochs": [1], "lr": [0.1], "hidden": [5]}}})
    run(["dvc", "repro", "e2"], repo)  # only e2 and what it needs: fetch@mnist, prepare@mnist
    commit(repo, "baseline")

    queued = run(["dvc", "exp", "run", "e2", "--queue", "-S", "e2.grid.lr=[0.1],[0.01]"], repo).stdout
    assert queued.count("Queueing with overrides") == 2, queued
    run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status
    rows = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    revs = [rev for row in rows for exp in row.get("experiments") or [] for rev in exp.get("revs", [])]
    lrs = {}
    for rev in revs:
        data = rev["data"]
        lr = tuple(data["params"]["params.yaml"]["data"]["e2"]["grid"]["lr"])
        lrs[lr] = data["metrics"]["metrics/e2.json"]["data"]["e2"]
    assert set(lrs) == {(0.1,), (0.01,)}, lrs
    for lr, metrics in lrs.items():
        assert metrics["n_models"] == 1 and metrics["best"]["lr"] == lr[0]
