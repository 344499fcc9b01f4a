"""E2: params checks (one clear error per bad value, before any work) and a shrunk run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reprodl import datasets
from reprodl.experiments import e2
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


def test_default_grid_is_the_catalogues_384_models():
    cfg = e2.check_params(PARAMS["e2"], DATA, seed=0)
    assert cfg["grid"] == {"batch": [4, 8, 16, 32, 64, 128], "epochs": [10, 20, 50, 100], "lr": [0.1, 0.01, 0.001, 0.0001], "hidden": [10, 25, 50, 100]}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lr", [0.1, -0.01], r"e2\.grid\.lr\[1\] must be a number > 0, got -0\.01"),
        ("batch", [0, 8], r"e2\.grid\.batch\[0\] must be an integer >= 1, got 0"),
        ("hidden", [], r"e2\.grid\.hidden must be a non-empty list"),
        ("epochs", [10, 10], r"e2\.grid\.epochs lists a value twice"),
        ("epochs", 10, r"e2\.grid\.epochs must be a non-empty list, got 10"),
        ("momentum", [0.9], r"e2\.grid\.momentum is not a grid key; allowed: batch, epochs, lr, hidden"),
    ],
)
def test_bad_grid_values_are_refused_with_the_key(key, value, message):
    section = copy.deepcopy(PARAMS["e2"])
    section["grid"][key] = value
    with pytest.raises(ParamError, match=message):
        e2.check_params(section, DATA, seed=0)


def test_missing_grid_key_and_bad_fraction_are_refused():
    section = copy.deepcopy(PARAMS["e2"])
    del section["grid"]["lr"]
    with pytest.raises(ParamError, match=r"e2\.grid\.lr is missing"):
        e2.check_params(section, DATA, seed=0)
    section = copy.deepcopy(PARAMS["e2"])
    section["val_fraction"] = 1.0
    with pytest.raises(ParamError, match=r"e2\.val_fraction must be a number in \(0, 1\)"):
        e2.check_params(section, DATA, seed=0)


def shrunk() -> dict:
    section = copy.deepcopy(PARAMS["e2"])
    section["grid"] = {"batch": [16, 64], "epochs": [1, 2], "lr": [0.1, 0.01], "hidden": [5, 12]}
    section["curves"] = {"best": 2, "median": 2, "worst": 2}
    return e2.check_params(section, DATA, seed=0)


def test_run_e2_writes_one_row_per_model_and_the_best_models_test_accuracy(prepared_mnist, tmp_path):
    cfg = shrunk()
    metrics = e2.run_e2(cfg, prepared_mnist, table_path=tmp_path / "results.csv", figures_dir=tmp_path, report_path=tmp_path / "e2.md", progress=False)["e2"]
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == metrics["n_models"] == 16
    assert set(map(tuple, table[["batch", "epochs", "lr", "hidden"]].to_numpy().tolist())) == {
        (b, e, lr, h) for b in (16, 64) for e in (1, 2) for lr in (0.1, 0.01) for h in (5, 12)
    }
    assert (table["epochs"] == table["val_loss_curve"].map(lambda s: len(json.loads(s)))).all()
    best = table.sort_values("val_accuracy", ascending=False).iloc[0]
    assert metrics["best"]["val"]["accuracy"] == pytest.approx(best["val_accuracy"])
    assert 0 <= metrics["best"]["test"]["accuracy"] <= 1
    assert set(metrics["correlation"]) == {"batch", "epochs", "lr", "hidden"}
    for name in ("scatter.png", "correlation.png", "loss_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "e2.md").read_text()
    assert "## Top 5" in report and "0.9811" in report  # the reference sits beside our number


def test_val_is_a_seeded_fifth_of_the_train_split(prepared_mnist):
    a = e2.load_grid_data(prepared_mnist, 0.2, seed=0)
    b = e2.load_grid_data(prepared_mnist, 0.2, seed=0)
    n_train = len(datasets.load_split(prepared_mnist, "train"))
    assert len(a["val"][0]) == round(0.2 * n_train) and len(a["train"][0]) + len(a["val"][0]) == n_train
    assert (a["val"][0] == b["val"][0]).all()
