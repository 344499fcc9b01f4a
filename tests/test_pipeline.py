"""End to end: the real `dvc repro` in temporary copies of the repository, params shrunk.

Slow by nature (every stage starts a Python process): two copies reproduced from scratch side
by side (one with `dvc repro`, one with `dvc repro -f`; their metrics must be identical: the
headline promise; side by side because a shrunk stage is mostly single-threaded start-up, so two
runs take little longer than one on two cores). Then, in the first: `dvc push` to a DVC remote
(a local folder) and a git remote (a bare repository), a fresh `git clone` and `dvc pull` that
re-run nothing; one `dvc exp run -S`, then `dvc exp push` of that experiment and `dvc exp pull`
of it into the clone; two more clones each queue and run a share of an E2 sweep and meet in one. The tests share the reproduced copy and run in this order (pytest keeps a
file's order). The full profile's run (tests/test_full_profile.py) shares their start: the three
run side by side (conftest.py's `reproductions`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from copies import OUTPUT_FOLDERS, checked_metrics, commit, metrics_of, run, shrunk_copy, wait_for_queue
from helpers import flat


@dataclass
class Reproduced:
    first: Path  # `dvc repro` in a fresh copy; the later tests work in it
    second: Path  # `dvc repro -f` in another fresh copy, at the same time
    first_metrics: dict  # both copies' metrics as the runs left them
    second_metrics: dict


@pytest.fixture(scope="module")
def reproduced(reproductions) -> Reproduced:
    """Two shrunk copies of the repository, each reproduced from scratch, side by side (conftest.py)."""
    first, second = reproductions.first, reproductions.second
    return Reproduced(first, second, metrics_of(first), metrics_of(second))


@pytest.fixture(scope="module")
def shrunk_repo(reproduced: Reproduced) -> Path:
    """A shrunk copy of the repository, freshly reproduced."""
    return reproduced.first


def declared_paths(repo: Path) -> dict[str, str]:
    """Every out and metrics path of dvc.lock -> its stage."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: stage for stage, entry in lock["stages"].items() for out in entry.get("outs", [])}


@pytest.mark.slow
def test_repro_writes_every_declared_output_and_nothing_else(shrunk_repo: Path):
    lock = yaml.safe_load((shrunk_repo / "dvc.lock").read_text())
    listed = run(["dvc", "stage", "list", "--name-only"], shrunk_repo).stdout.split()
    assert listed and set(listed) == set(lock["stages"]), "every stage of dvc.yaml ran and is locked"
    declared = declared_paths(shrunk_repo)
    for path, stage in declared.items():
        full = shrunk_repo / path
        assert full.exists(), f"{stage} declared {path} but did not write it"
        if full.is_dir():
            assert any(full.iterdir()), f"{stage} wrote an empty {path}"
    for folder in OUTPUT_FOLDERS:
        for file in (shrunk_repo / folder).rglob("*"):
            rel = file.relative_to(shrunk_repo).as_posix()
            if file.is_dir() or file.name == ".gitignore":
                continue
            assert any(rel == path or rel.startswith(path + "/") for path in declared), f"{rel} is written by no declared output"
    status = run(["dvc", "status"], shrunk_repo).stdout
    assert "up to date" in status, status


@pytest.mark.slow
def test_every_metric_is_finite_and_the_models_learned(shrunk_repo: Path):
    metrics = checked_metrics(shrunk_repo)
    # Learned, even on the shrunk run (one or two epochs on a few hundred images): the grid's best
    # beats chance (0.1 on ten classes); E6's blobs and mini-batch XOR (0.5 by chance) are near
    # their best; the one-neuron regression has found the sign of y = -20 x - 10.
    assert metrics["e2.json"]["e2"]["best"]["val"]["accuracy"] > 0.2
    e6 = metrics["e6.json"]["e6"]
    assert e6["blobs"]["test_accuracy"] > 0.8 and e6["xor_minibatch"]["test_accuracy"] > 0.8
    assert e6["regression"]["weight"] < -5
    timings = {p.name for p in (shrunk_repo / "timings").glob("*.json")}
    assert {"e1.json", "e7_finetune.json", "fetch_mnist.json"} <= timings


@pytest.mark.slow
def test_dvc_plots_show_renders_every_declared_plot(shrunk_repo: Path):
    shown = json.loads(run(["dvc", "plots", "show", "--json"], shrunk_repo).stdout)
    assert not shown.get("errors"), shown.get("errors")
    rendered = set(shown["data"])
    declared = yaml.safe_load((shrunk_repo / "dvc.yaml").read_text())["plots"]
    for entry in declared:
        path = entry if isinstance(entry, str) else next(iter(entry))
        assert any(r == path or r.startswith(path + "/") for r in rendered), f"plot {path} rendered nothing"
    for path, renders in shown["data"].items():
        assert renders and not any(r.get("errors") for r in renders), path


@pytest.fixture(scope="module")
def remotes(shrunk_repo: Path, tmp_path_factory) -> dict[str, Path]:
    """A bare git repository as `origin` and a local folder as the default DVC remote of the
    reproduced copy, the remote's config committed (a team's shared setup: a clone needs no step)."""
    root = tmp_path_factory.mktemp("remotes")
    origin, storage = root / "origin.git", root / "dvc-storage"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    run(["git", "remote", "add", "origin", str(origin)], shrunk_repo)
    run(["dvc", "remote", "add", "-d", "shared", str(storage)], shrunk_repo)  # s3://bucket/path, gs://..., ssh://... for users
    return {"origin": origin, "storage": storage}


def publish(repo: Path, message: str) -> None:
    """Commit everything, push the commit to origin's main and the cached outputs to the DVC remote."""
    commit(repo, message)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], repo, timeout=120)
    run(["dvc", "push"], repo, timeout=300)


def cached_outputs(repo: Path) -> list[Path]:
    """Every file of every output that dvc.lock says is in the DVC cache (data, features, models)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    paths = [Path(out["path"]) for entry in lock["stages"].values() for out in entry.get("outs", []) if out.get("cache", True)]
    files = []
    for rel in paths:
        full = repo / rel
        files += sorted(p.relative_to(repo) for p in full.rglob("*") if p.is_file()) if full.is_dir() else [rel]
    return files


def fresh_clone(origin: Path, folder: Path) -> Path:
    """Another machine: `git clone` of origin's main, then `dvc pull` from the committed DVC remote."""
    clone = folder / "repo"
    run(["git", "clone", "-q", "--branch", "main", str(origin), str(clone)], folder, timeout=120)
    run(["dvc", "pull"], clone, timeout=300)
    return clone


@pytest.fixture(scope="module")
def pulled_clone(shrunk_repo: Path, remotes: dict[str, Path], tmp_path_factory) -> Path:
    """The reproduced copy pushed (git and DVC), then cloned afresh and `dvc pull`ed: a second machine."""
    publish(shrunk_repo, "reproduced")
    return fresh_clone(remotes["origin"], tmp_path_factory.mktemp("clone"))


@pytest.mark.slow
def test_a_fresh_clone_pulls_data_features_and_models_and_reruns_nothing(shrunk_repo: Path, remotes, pulled_clone: Path):
    clone = pulled_clone
    assert str(remotes["storage"]) in run(["dvc", "remote", "list"], clone).stdout, "the clone reads the committed remote config"
    files = cached_outputs(shrunk_repo)
    assert any(f.parts[0] == "models" for f in files) and any(f.parts[:2] == ("data", "features") for f in files)
    for rel in files:  # pulled, not recomputed: the same bytes
        assert (clone / rel).is_file(), f"{rel} was not pulled"
        assert (clone / rel).read_bytes() == (shrunk_repo / rel).read_bytes(), f"{rel} differs from the pushed one"
    status = run(["dvc", "status"], clone).stdout
    assert "Data and pipelines are up to date" in status, status
    outputs = [p for folder in OUTPUT_FOLDERS for p in (clone / folder).rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    repro = run(["dvc", "repro"], clone).stdout
    assert "Running stage" not in repro and "Data and pipelines are up to date" in repro, repro
    assert {p: p.stat().st_mtime_ns for p in outputs} == before, "dvc repro rewrote an output"
    assert run(["git", "status", "--porcelain"], clone).stdout == "", "nothing in the clone changed"


@pytest.mark.slow
def test_two_reproductions_from_scratch_give_the_same_metrics(reproduced: Reproduced):
    """The headline promise: the same params give the same metrics (same machine)."""
    assert reproduced.first_metrics and reproduced.second_metrics == reproduced.first_metrics
    # DVC's own comparison agrees: the first copy's run, committed, against the second's workspace
    # (which no other test touches).
    commit(reproduced.first, "first repro")
    run(["git", "fetch", "-q", str(reproduced.first), "HEAD"], reproduced.second)
    assert run(["dvc", "metrics", "diff", "FETCH_HEAD"], reproduced.second).stdout.strip() == "", "same params, same machine: nothing to diff"


@pytest.mark.slow
def test_the_copies_hard_link_their_outputs_to_the_dvc_cache(reproduced: Reproduced):
    """tests/dvc_config: the bulky outputs (weights, checkpoint, features) are one file on disk each,
    not a workspace copy beside the cache's. (data/raw is left out: four embedded datasets share
    one 0.8 MB file's content, and DVC links only one of the identical files.)"""
    files = [f for f in cached_outputs(reproduced.second) if f.parts[0] == "models" or f.parts[:2] == ("data", "features")]
    assert any(f.name == "checkpoint.pt" for f in files)
    copied = [str(rel) for rel in files if (reproduced.second / rel).stat().st_nlink < 2]
    assert not copied, f"copied, not linked: {copied[:5]}"


@pytest.mark.slow
def test_exp_run_with_a_param_override_moves_the_metric_and_reruns_downstream(shrunk_repo: Path):
    commit(shrunk_repo, "baseline")
    before = metrics_of(shrunk_repo)["e1.json"]["e1"]
    table_before = e1_table(shrunk_repo)
    result = run(["dvc", "exp", "run", "-S", "e1.mlp.lr=0.5", "-n", "higher-lr"], shrunk_repo)
    assert "Running stage 'e4'" in result.stdout, "e4 reads models/e1: it must re-run"
    assert "Running stage 'e7'" not in result.stdout, "e7 does not depend on e1"
    rows = json.loads(run(["dvc", "exp", "show", "--json"], shrunk_repo).stdout)
    revs = [rev for row in rows for exp in row.get("experiments") or [] for rev in exp.get("revs", [])]
    rev = next(rev for rev in revs if rev.get("name") == "higher-lr")
    assert rev["data"]["params"]["params.yaml"]["data"]["e1"]["mlp"]["lr"] == 0.5
    after = rev["data"]["metrics"]["metrics/e1.json"]["data"]["e1"]
    assert after["logreg"] == before["logreg"], "logreg's params did not change"
    table_after = e1_table(shrunk_repo)  # `dvc exp run` leaves the experiment's outputs in the workspace
    assert table_after["logreg"] == table_before["logreg"]
    assert table_after["mlp"]["test_loss"] != table_before["mlp"]["test_loss"], "the mlp trained with another lr"


@pytest.mark.slow
def test_an_experiment_pushed_from_one_clone_is_pulled_into_another(shrunk_repo: Path, pulled_clone: Path):
    """`dvc exp push origin <exp>` here (its git ref to origin, its outputs to the DVC remote), then in
    the other clone `dvc exp pull origin <exp>` and `dvc exp apply <exp>`: its params, metrics and
    models, with nothing to re-run. The experiment is the one test_exp_run_... ran (run here if not)."""
    if "higher-lr" not in run(["dvc", "exp", "list", "--name-only"], shrunk_repo).stdout.split():
        commit(shrunk_repo, "baseline")
        run(["dvc", "exp", "run", "-S", "e1.mlp.lr=0.5", "-n", "higher-lr"], shrunk_repo)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], shrunk_repo, timeout=120)  # the experiment's baseline commit
    run(["dvc", "exp", "push", "origin", "higher-lr"], shrunk_repo, timeout=300)
    clone = pulled_clone
    run(["git", "pull", "-q", "--ff-only", "origin", "main"], clone, timeout=120)
    run(["dvc", "exp", "pull", "origin", "higher-lr"], clone, timeout=300)
    assert "higher-lr" in run(["dvc", "exp", "list", "--name-only"], clone).stdout.split()
    run(["dvc", "exp", "apply", "higher-lr"], clone, timeout=300)
    assert yaml.safe_load((clone / "params.yaml").read_text())["e1"]["mlp"]["lr"] == 0.5
    # `dvc exp run` left the experiment's outputs in the first copy's workspace: the clone has the same.
    assert (clone / "metrics/e1.json").read_text() == (shrunk_repo / "metrics/e1.json").read_text()
    for model in sorted((shrunk_repo / "models/e1").glob("*.pt")):
        assert (clone / "models/e1" / model.name).read_bytes() == model.read_bytes(), model.name
    status = run(["dvc", "status"], clone).stdout
    assert "Data and pipelines are up to date" in status, status


@pytest.mark.slow
def test_a_sweep_shared_out_over_two_machines_meets_in_one(remotes, pulled_clone: Path, tmp_path_factory, monkeypatch):
    """The README's sweep (a comma list of grid lists, queued) and docs/full-profile.md's way to
    spread one: two fresh clones of the shared git and DVC remotes (two machines) each queue their
    share of an E2 sweep, run it, side by side, and push their experiments; one pulls the other's,
    and `dvc exp show` lists all three on the same baseline."""
    monkeypatch.setenv("REPRODL_WORKERS", "1")  # each queue worker's stage: one process
    shares = {"machine-a": "[0.1],[0.01]", "machine-b": "[0.05]"}
    machines = {name: fresh_clone(remotes["origin"], tmp_path_factory.mktemp(name)) for name in shares}  # after pulled_clone published
    for name, clone in machines.items():
        queued = run(["dvc", "exp", "run", "e2", "--queue", "-S", f"e2.grid.lr={shares[name]}"], clone).stdout
        assert queued.count("Queueing with overrides") == shares[name].count("["), queued
    for clone in machines.values():  # `dvc queue start` returns at once; the two workers run side by side
        run(["dvc", "queue", "start", "-j", "1"], clone)
    for clone in machines.values():
        wait_for_queue(clone, timeout=300)
        run(["dvc", "exp", "push", "origin"], clone, timeout=300)  # every experiment of this baseline
    here = machines["machine-a"]
    run(["dvc", "exp", "pull", "origin"], here, timeout=300)
    rows = json.loads(run(["dvc", "exp", "show", "--json"], here).stdout)
    revs = [rev["data"] for row in rows for exp in row.get("experiments") or [] for rev in exp.get("revs", [])]
    lrs = {tuple(data["params"]["params.yaml"]["data"]["e2"]["grid"]["lr"]): data["metrics"]["metrics/e2.json"]["data"]["e2"] for data in revs}
    swept = {(0.1,), (0.01,), (0.05,)}
    assert swept <= set(lrs), sorted(lrs)  # besides any experiment of this baseline pushed before (higher-lr)
    for (lr,) in swept:
        assert lrs[(lr,)]["best"]["lr"] == lr, f"the experiment with lr {lr} trained its own share"
    assert len({json.dumps(lrs[lr], sort_keys=True) for lr in swept}) == 3


@pytest.mark.slow
@pytest.mark.gpu
def test_the_shrunk_pipeline_runs_on_cuda_and_says_so(tmp_path):
    """device: cuda end to end: every stage that computes with torch records cuda next to its precision."""
    assert torch.cuda.is_available()  # conftest.py skips gpu tests, saying why, where it is not
    repo = shrunk_copy(tmp_path, {"device": "cuda"})
    run(["dvc", "repro"], repo)
    devices = {name: {v for k, v in flat(tree).items() if k.endswith("device")} for name, tree in metrics_of(repo).items()}
    ran = {name for name, found in devices.items() if found}
    assert ran == set(devices) - {"e4.json", "e6.json"}, "every stage but E4 (t-SNE maps) and E6 (NumPy) computes on the device"
    assert all(found == {"cuda"} for found in devices.values() if found), devices


def e1_table(repo: Path) -> dict[str, dict]:
    with open(repo / "plots/e1/tables/results.csv") as f:
        return {row["model"]: {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)}
