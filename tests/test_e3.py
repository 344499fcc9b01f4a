"""E3: params checks and a shrunk run (tiny width grids, a few epochs)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reprodl.experiments import e3
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("two_layers", "widths"), [10, -5], r"e3\.two_layers\.widths\[1\] must be an integer >= 1"),
        (("three_layers", "widths"), [], r"e3\.three_layers\.widths must be a non-empty list"),
        (("three_layers", "epochs"), 0, r"e3\.three_layers\.epochs must be an integer >= 1"),
        (("two_layers", "lr"), 0.1, r"e3\.two_layers\.lr is not a key of this grid"),
        (("lr",), -0.01, r"e3\.lr must be a number > 0"),
        (("batch_size",), 0, r"e3\.batch_size must be an integer >= 1"),
    ],
)
def test_bad_values_are_refused_with_the_key(path, value, message):
    section = copy.deepcopy(PARAMS["e3"])
    target = section
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ParamError, match=message):
        e3.check_params(section, DATA, seed=0)


def test_run_e3_grids_retrains_the_top_and_scores_the_best(prepared_mnist, tmp_path):
    section = copy.deepcopy(PARAMS["e3"])
    section.update(two_layers={"widths": [4, 9], "epochs": 2}, three_layers={"widths": [3, 6], "epochs": 1}, top=3, retrain_epochs=3)
    metrics = e3.run_e3(e3.check_params(section, DATA, seed=0), prepared_mnist, figures_dir=tmp_path, report_path=tmp_path / "e3.md", progress=False)["e3"]
    table, top = pd.read_csv(tmp_path / "results.csv"), pd.read_csv(tmp_path / "top.csv")
    assert len(table) == metrics["n_models"] == 4 + 8
    assert sorted(table[table["depth"] == 3]["widths"]) == sorted(f"{a}-{b}-{c}" for a in (3, 6) for b in (3, 6) for c in (3, 6))
    assert len(top) == 3 and (top["epochs"] == 3).all()
    ranked = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
    assert set(top["widths"]) == set(ranked["widths"].head(3))
    assert metrics["best"]["widths"] == top.iloc[0]["widths"] and 0 <= metrics["best"]["test"]["accuracy"] <= 1
    assert (tmp_path / "two_layers.png").exists() and (tmp_path / "top_curves.png").exists()
    assert "0.9799" in (tmp_path / "e3.md").read_text()
