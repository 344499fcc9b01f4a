"""`reprodl seeds`: a seed sweep, read from `dvc exp show --json`, as mean +- std and claims per seed.

tests/data/exp_show.json is real `dvc exp show --json` output (DVC 3.67.1) of a repository with
this params.yaml and a stand-in stage that writes the committed metrics moved by the seed: three
finished seeds (0, 1, 2), one experiment with another param changed, one failed and one still
queued. To capture it again: a stage that writes metrics/*.json, `dvc exp run --queue -S
'seed=0,1,2'`, `dvc queue start`, then `dvc exp show --json`.
"""

from __future__ import annotations

import copy
import json
import statistics

import pytest

from configs import ROOT
from reprodl import claims
from reprodl.cli import main
from reprodl.seeds import SeedsError, aggregate, render_markdown

FIXTURE = json.loads((ROOT / "tests" / "data" / "exp_show.json").read_text())


def baseline_row(exp_show: list[dict]) -> dict:
    return next(row for row in exp_show if row["rev"] != "workspace")


def finished(exp_show: list[dict]) -> dict[int, dict]:
    """seed -> merged metrics of each finished experiment that changed only the seed (read here independently)."""
    row = baseline_row(exp_show)
    base = row["data"]["params"]["params.yaml"]["data"]
    out = {}
    for exp_range in row["experiments"]:
        exp = exp_range["revs"][0]
        p = exp["data"]["params"]["params.yaml"]["data"]
        if exp_range["executor"]["state"] == "success" and {k: v for k, v in p.items() if k != "seed"} == {k: v for k, v in base.items() if k != "seed"}:
            out[p["seed"]] = {k: v for f in exp["data"]["metrics"].values() for k, v in f["data"].items()}
    return out


def test_the_fixture_is_a_sweep_worth_testing():
    runs = finished(FIXTURE)
    assert len(runs) >= 3
    states = {r["executor"]["state"] for r in baseline_row(FIXTURE)["experiments"]}
    assert {"success", "failed", "queued"} <= states


def test_only_finished_seed_only_experiments_count():
    agg = aggregate(FIXTURE)
    assert agg["seeds"] == sorted(finished(FIXTURE))
    assert agg["baseline"] == baseline_row(FIXTURE)["rev"]
    assert set(agg["skipped"]) == {"queued", "failed", "other params changed"}
    assert agg["profile"] == "embedded"


def test_mean_and_sample_std_per_headline_metric():
    agg = aggregate(FIXTURE)
    runs = finished(FIXTURE)
    by_key = {m["key"]: m for m in agg["metrics"]}
    for key in ("e1.convnet.test.accuracy", "e7.finetuned.test.map_voc07", "e8.scratch.val.accuracy", "e2.correlation.lr"):
        values = []
        for seed in sorted(runs):
            node = runs[seed]
            for part in key.split("."):
                node = node[part]
            values.append(node)
        m = by_key[key]
        assert m["n"] == len(values) and m["values"] == {str(s): v for s, v in zip(sorted(runs), values)}
        assert m["mean"] == pytest.approx(statistics.fmean(values)) and m["std"] == pytest.approx(statistics.stdev(values))
        assert m["min"] == min(values) and m["max"] == max(values)
    assert not any(m["key"].startswith("e9.") for m in agg["metrics"]), "E9 did not run in the sweep"


def test_claims_per_seed_are_the_claims_of_each_run():
    agg = aggregate(FIXTURE)
    runs = finished(FIXTURE)
    for i, c in enumerate(agg["claims"]):
        expected = {str(seed): claims.evaluate(runs[seed])[i].status for seed in sorted(runs)}
        assert c["per_seed"] == expected
        assert c["holds"] == sum(s == claims.HOLDS for s in expected.values())
        assert c["of"] == sum(s != claims.NOT_RUN for s in expected.values())
    flips = [c for c in agg["claims"] if 0 < c["holds"] < c["of"]]
    assert flips, "the fixture moves e7's fine-tuned mAP with the seed"
    md = render_markdown(agg)
    assert "(flips: not a finding)" in md and md.count("(flips: not a finding)") == len(flips)


def test_the_newest_run_of_a_seed_counts_once():
    exp_show = copy.deepcopy(FIXTURE)
    row = baseline_row(exp_show)
    first = next(r for r in row["experiments"] if r["executor"]["state"] == "success"
                 and r["revs"][0]["data"]["params"]["params.yaml"]["data"]["seed"] == 1)
    newer = copy.deepcopy(first)
    newer["name"] = newer["revs"][0]["name"] = "seed-1-again"
    newer["revs"][0]["data"]["timestamp"] = "2999-01-01T00:00:00"
    newer["revs"][0]["data"]["metrics"]["metrics/e1.json"]["data"]["e1"]["convnet"]["test"]["accuracy"] = 0.5
    row["experiments"].append(newer)
    agg = aggregate(exp_show)
    assert agg["seeds"].count(1) == 1
    assert next(e for e in agg["experiments"] if e["seed"] == 1)["name"] == "seed-1-again"
    assert next(m for m in agg["metrics"] if m["key"] == "e1.convnet.test.accuracy")["values"]["1"] == 0.5
    assert agg["skipped"]["older run of the same seed"] == [first["name"]]


def test_an_experiment_with_an_error_and_no_executor_is_left_out():
    exp_show = copy.deepcopy(FIXTURE)
    row = baseline_row(exp_show)
    broken = next(r for r in row["experiments"] if r["executor"]["state"] == "success"
                  and r["revs"][0]["data"]["params"]["params.yaml"]["data"]["seed"] == 2)
    broken["executor"] = None  # as for an experiment pulled from a remote
    broken["revs"][0]["error"] = {"msg": "Experiment run failed", "type": ""}
    assert 2 not in aggregate(exp_show)["seeds"]


def test_fewer_than_two_seeds_is_an_error_that_says_what_to_run():
    exp_show = copy.deepcopy(FIXTURE)
    row = baseline_row(exp_show)
    row["experiments"] = [r for r in row["experiments"] if r["executor"]["state"] != "success"]
    with pytest.raises(SeedsError, match=r"0 finished .*dvc exp run --queue -S 'seed=0,1,2'"):
        aggregate(exp_show)
    with pytest.raises(SeedsError, match="no baseline commit matching nope"):
        aggregate(FIXTURE, rev="nope")


def test_the_command_writes_both_files_and_exits_2_on_a_bad_sweep(tmp_path, capsys):
    out_json, out_md = tmp_path / "seeds" / "seeds.json", tmp_path / "reports" / "seeds.md"
    args = ["seeds", "--from", str(ROOT / "tests" / "data" / "exp_show.json"), "--json", str(out_json), "--markdown", str(out_md)]
    assert main(args) == 0
    assert json.loads(out_json.read_text()) == aggregate(FIXTURE)
    assert out_md.read_text() == render_markdown(aggregate(FIXTURE))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([r for r in FIXTURE if r["rev"] == "workspace"]))
    assert main(["seeds", "--from", str(empty), "--json", str(tmp_path / "x.json"), "--markdown", str(tmp_path / "x.md")]) == 2
    assert capsys.readouterr().err.startswith("error: `dvc exp show` lists no baseline commit")
    assert not (tmp_path / "x.json").exists()
