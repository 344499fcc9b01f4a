"""E3: config errors (one line naming the dotted key) and a shrunk run (tiny width grids, a few epochs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import ROOT, compose, errors
from helpers import flat

from reprodl import config
from reprodl.experiments import e3

sys.path.insert(0, str(ROOT / "stages"))
from common import split_timings  # noqa: E402  (the stage's own metrics / timings split)

# lr 0.1 at batch 16 (the committed 0.01 at 32 barely moves in 3 epochs of 192 images): the best model learns.
SHRUNK = {"e3.two_layers": {"widths": [8, 16], "epochs": 2}, "e3.three_layers": {"widths": [6, 12], "epochs": 1},
          "e3.top": 3, "e3.retrain_epochs": 3, "e3.lr": 0.1, "e3.batch_size": 16}
HEADLINE = {  # the shape of metrics/e3.json: headline numbers only
    "n_models", "n_diverged", "device",
    "two_layers.best.widths", "two_layers.best.val.accuracy", "three_layers.best.widths", "three_layers.best.val.accuracy",
    "best.widths", "best.depth", "best.epochs", "best.val.accuracy", "best.val.loss", "best.test.accuracy",
}


def run(cfg: config.E3, prepared, out: Path, seed: int = 0) -> dict:
    return e3.run_e3(cfg, prepared, figures_dir=out, tables_dir=out, report_path=out / "e3.md", seed=seed, progress=False)["e3"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e3.two_layers.widths": [10, -5]}, "params.yaml: e3.two_layers.widths[1] must be >= 1, got -5"),
        ({"e3.three_layers.widths": []}, "params.yaml: e3.three_layers.widths must list at least 1 item(s), got []"),
        ({"e3.three_layers.widths": [10, 10]}, "params.yaml: e3.three_layers.widths lists a value twice: [10, 10]"),
        ({"e3.three_layers.epochs": 0}, "params.yaml: e3.three_layers.epochs must be >= 1, got 0"),
        ({"e3.two_layers.lr": 0.1}, "params.yaml: e3.two_layers.lr is not a known key (known keys: widths, epochs)"),
        ({"e3.lr": -0.01}, "params.yaml: e3.lr must be > 0, got -0.01"),
        ({"e3.batch_size": 0}, "params.yaml: e3.batch_size must be >= 1, got 0"),
        ({"e3.val_fraction": 1.5}, "params.yaml: e3.val_fraction must be < 1, got 1.5"),
        ({"e3.retrain_epochs": 2.0}, "params.yaml: e3.retrain_epochs must be an integer, got 2.0"),
        # 4^2 + 4^3 = 80 models in the committed grid; one width per layer: 1 + 1
        ({"e3.top": 81}, "params.yaml: e3.top must be at most the number of grid models (80), got 81"),
        ({"e3.two_layers.widths": [8], "e3.three_layers.widths": [8], "e3.top": 3},
         "params.yaml: e3.top must be at most the number of grid models (2), got 3"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(overrides, expected):
    assert errors(overrides) == [expected]


def test_the_committed_grid_is_80_models():
    widths = e3.grid_widths(compose().e3)
    assert {name: len(w) for name, w in widths.items()} == {"two_layers": 16, "three_layers": 64}
    assert (10, 256) in widths["two_layers"] and (256, 10, 128) in widths["three_layers"]


def test_run_e3_grids_retrains_the_top_and_scores_the_best(prepared_mnist, tmp_path):
    metrics = run(compose(SHRUNK).e3, prepared_mnist, tmp_path)
    table, top = pd.read_csv(tmp_path / "results.csv"), pd.read_csv(tmp_path / "top.csv")
    assert len(table) == metrics["n_models"] == 4 + 8
    assert metrics["device"] == "cpu", "the device the stacks trained on"
    assert sorted(table[table["depth"] == 3]["widths"]) == sorted(f"{a}-{b}-{c}" for a in (6, 12) for b in (6, 12) for c in (6, 12))
    assert (table[table["depth"] == 2]["epochs"] == 2).all() and (table[table["depth"] == 3]["epochs"] == 1).all()
    assert len(top) == 3 and (top["epochs"] == 3).all()
    assert "test_accuracy" not in top.columns, "only the one best model is scored on test"
    assert not [c for c in (*table.columns, *top.columns) if "seconds" in c], "no wall times in the tables"

    # The top 3 of the grid (both depths together) are re-trained; the best of them by val goes to test.
    ranked = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
    assert set(top["widths"]) == set(ranked["widths"].head(3))
    best_top = top.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    assert metrics["best"]["widths"] == best_top["widths"] == top.iloc[0]["widths"]
    assert metrics["best"]["depth"] == len(best_top["widths"].split("-")) and metrics["best"]["epochs"] == 3
    assert metrics["best"]["val"]["accuracy"] == pytest.approx(best_top["val_accuracy"])
    assert metrics["best"]["val"]["accuracy"] > 0.2, "3 epochs of the best widths learn something (chance: 0.1)"
    assert metrics["best"]["test"]["accuracy"] > 0.15, "and carries over to the test split"
    assert metrics["best"]["test"]["accuracy"] * 30 == pytest.approx(round(metrics["best"]["test"]["accuracy"] * 30), abs=1e-4)
    for name, depth in e3.DEPTHS.items():  # the best of each depth, read off the table here
        row = ranked[ranked["depth"] == depth].iloc[0]
        assert metrics[name]["best"] == {"widths": row["widths"], "val": {"accuracy": pytest.approx(row["val_accuracy"])}}

    # Same initial weights and batch order: a re-trained model retraces its grid run for the grid's epochs.
    for _, r in top.iterrows():
        grid_row = table[table["widths"] == r["widths"]].iloc[0]
        n = int(grid_row["epochs"])
        np.testing.assert_allclose(json.loads(r["val_loss_curve"])[:n], json.loads(grid_row["val_loss_curve"]), atol=1e-4)

    kept, timings = split_timings(metrics)
    assert set(flat(kept)) == HEADLINE
    assert set(timings) == {"seconds", "step_seconds"} and set(timings["step_seconds"]) == {"two_layers", "three_layers", "retrain"}
    json.dumps(kept, allow_nan=False)

    assert (tmp_path / "two_layers.png").stat().st_size > 0 and (tmp_path / "top_curves.png").stat().st_size > 0
    report = (tmp_path / "e3.md").read_text()
    assert "0.9799" in report and f"{metrics['best']['test']['accuracy']:.4f}" in report


def test_a_val_fraction_that_leaves_no_train_image_fails_before_any_work(prepared_mnist, tmp_path):
    cfg = compose({**SHRUNK, "e3.val_fraction": 0.999}).e3  # 0.999 x 240 rounds to all 240
    with pytest.raises(config.ParamError) as err:
        run(cfg, prepared_mnist, tmp_path)
    assert str(err.value) == "params.yaml: e3.val_fraction must leave at least one val and one train image: 0.999 of the 240 prepared train images is 240"
    assert list(tmp_path.iterdir()) == [], "nothing written"
