"""E2: config errors (one line naming the dotted key) and shrunk runs on the real embedded data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import DELETE, ROOT, compose, errors
from helpers import flat

from reprodl import config, datasets
from reprodl.experiments import e2

sys.path.insert(0, str(ROOT / "stages"))
from common import split_timings  # noqa: E402  (the stage's own metrics / timings split)

SHRUNK = {"e2.grid.batch": [16, 64], "e2.grid.epochs": [1, 2], "e2.grid.lr": [0.1, 0.01], "e2.grid.hidden": [5, 12],
          "e2.curves": {"best": 2, "median": 2, "worst": 2}}
HEADLINE = {  # the shape of metrics/e2.json: headline numbers only
    "n_models", "n_diverged", "device",
    "best.batch", "best.epochs", "best.lr", "best.hidden", "best.val.accuracy", "best.val.loss", "best.test.accuracy",
    "correlation.batch", "correlation.epochs", "correlation.lr", "correlation.hidden",
}


def run(cfg: config.E2, prepared, out: Path, seed: int = 0) -> dict:
    return e2.run_e2(cfg, prepared, table_path=out / "results.csv", figures_dir=out, report_path=out / "e2.md", seed=seed, progress=False)["e2"]


def test_default_grid_is_the_catalogues_384_models():
    g = compose().e2.grid
    # The catalogue's batch, lr and hidden lists; the embedded epochs are cut to fit the time budget.
    assert (g.batch, g.lr, g.hidden) == ([4, 8, 16, 32, 64, 128], [0.1, 0.01, 0.001, 0.0001], [10, 25, 50, 100])
    assert len(g.batch) * len(g.epochs) * len(g.lr) * len(g.hidden) == 384


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e2.grid.lr": [0.1, -0.01]}, "params.yaml: e2.grid.lr[1] must be > 0, got -0.01"),
        ({"e2.grid.batch": [0, 8]}, "params.yaml: e2.grid.batch[0] must be >= 1, got 0"),
        ({"e2.grid.hidden": []}, "params.yaml: e2.grid.hidden must list at least 1 item(s), got []"),
        ({"e2.grid.epochs": [10, 10]}, "params.yaml: e2.grid.epochs lists a value twice: [10, 10]"),
        ({"e2.grid.epochs": 10}, "params.yaml: e2.grid.epochs must be a list, got 10"),
        ({"e2.grid.epochs": [10, 2.5]}, "params.yaml: e2.grid.epochs[1] must be an integer, got 2.5"),
        ({"e2.grid.momentum": [0.9]}, "params.yaml: e2.grid.momentum is not a known key (known keys: batch, epochs, lr, hidden)"),
        ({"e2.grid.lr": DELETE}, "params.yaml: e2.grid.lr is missing"),
        ({"e2.val_fraction": 1.0}, "params.yaml: e2.val_fraction must be < 1, got 1.0"),
        ({"e2.val_fraction": 0}, "params.yaml: e2.val_fraction must be > 0, got 0"),
        ({"e2.curves.worst": 0}, "params.yaml: e2.curves.worst must be >= 1, got 0"),
        ({"e2.dataset": "digit_scenes"}, "params.yaml: e2.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(overrides, expected):
    assert errors(overrides) == [expected]


def test_run_e2_writes_one_row_per_model_and_headline_metrics(prepared_mnist, tmp_path):
    metrics = run(compose(SHRUNK).e2, prepared_mnist, tmp_path)
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == metrics["n_models"] == 16
    assert metrics["device"] == "cpu", "the device the stacks trained on"
    assert set(map(tuple, table[["batch", "epochs", "lr", "hidden"]].to_numpy().tolist())) == {
        (b, e, lr, h) for b in (16, 64) for e in (1, 2) for lr in (0.1, 0.01) for h in (5, 12)
    }
    assert (table["epochs"] == table["val_loss_curve"].map(lambda s: len(json.loads(s)))).all()
    assert not [c for c in table.columns if "seconds" in c], "no wall times in the table: same params, same bits"

    # Epoch counts nest: a 1-epoch model is the 2-epoch model of the same stack read at epoch 1.
    one, two = (table[table["epochs"] == e].set_index(["batch", "lr", "hidden"]).sort_index() for e in (1, 2))
    np.testing.assert_allclose(one["val_loss"], two["val_loss_curve"].map(lambda s: json.loads(s)[0]), rtol=1e-4)

    # The stage writes the metrics without their wall times: headline numbers only.
    kept, timings = split_timings(metrics)
    assert set(flat(kept)) == HEADLINE
    assert set(timings) == {"seconds", "stack_seconds"} and set(timings["stack_seconds"]) == {"16", "64"}
    json.dumps(kept, allow_nan=False)  # valid JSON for dvc metrics

    ranked = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    best = metrics["best"]
    assert (best["batch"], best["epochs"], best["lr"], best["hidden"]) == (ranked["batch"], ranked["epochs"], ranked["lr"], ranked["hidden"])
    assert best["val"]["accuracy"] == pytest.approx(ranked["val_accuracy"]) and best["val"]["loss"] == pytest.approx(ranked["val_loss"])
    assert best["val"]["accuracy"] > 0.3, "the best of 16 models learns (chance: 0.1)"
    assert best["test"]["accuracy"] > 0.2, "and carries over to the test split"
    assert best["test"]["accuracy"] * 30 == pytest.approx(round(best["test"]["accuracy"] * 30), abs=1e-4), "a count out of 30 test images"

    for p in e2.HYPER_PARAMETERS:  # Pearson, computed here independently
        expected = np.corrcoef(table[p].to_numpy(float), table["val_accuracy"].to_numpy(float))[0, 1]
        assert metrics["correlation"][p] == pytest.approx(expected, abs=1e-4), p
    assert metrics["correlation"]["lr"] > 0, "lr 0.1 beats 0.01 after 1-2 epochs"

    for name in ("scatter.png", "correlation.png", "loss_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "e2.md").read_text()
    assert "## Top 5" in report and "0.9811" in report  # the reference sits beside our number
    assert f"{best['test']['accuracy']:.4f}" in report and "(best 2, median 2, worst 2)" in report


def test_a_one_model_grid_has_no_correlation_and_same_params_give_the_same_bits(prepared_mnist, tmp_path):
    """The sweep's shape (tests/test_pipeline.py, the sweep over two machines): one value per list; twice, byte for byte."""
    cfg = compose({"e2.grid.batch": [32], "e2.grid.epochs": [1], "e2.grid.lr": [0.1], "e2.grid.hidden": [5]}).e2
    runs = [run(cfg, prepared_mnist, tmp_path / str(i)) for i in range(2)]
    for metrics in runs:
        assert metrics["n_models"] == 1 and metrics["best"]["lr"] == 0.1
        assert metrics["correlation"] == dict.fromkeys(e2.HYPER_PARAMETERS), "undefined, written as null (not NaN)"
        json.dumps(split_timings(metrics)[0], allow_nan=False)
    assert split_timings(runs[0])[0] == split_timings(runs[1])[0]
    assert (tmp_path / "0" / "results.csv").read_bytes() == (tmp_path / "1" / "results.csv").read_bytes()
    assert "- (one value)" in (tmp_path / "0" / "e2.md").read_text()


def test_a_val_fraction_that_leaves_no_val_image_fails_before_any_work(prepared_mnist, tmp_path):
    cfg = compose({"e2.val_fraction": 0.001}).e2  # valid in itself; 0.001 x 240 train images rounds to 0
    with pytest.raises(config.ParamError) as err:
        run(cfg, prepared_mnist, tmp_path)
    assert str(err.value) == "params.yaml: e2.val_fraction must leave at least one val and one train image: 0.001 of the 240 prepared train images is 0"
    assert err.value.key == "e2.val_fraction"
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_val_is_a_seeded_fifth_of_the_train_split(prepared_mnist):
    a = e2.load_grid_data(prepared_mnist, 0.2, seed=0)
    b = e2.load_grid_data(prepared_mnist, 0.2, seed=0)
    c = e2.load_grid_data(prepared_mnist, 0.2, seed=1)
    n_train = len(datasets.load_split(prepared_mnist, "train"))
    assert len(a["val"][0]) == round(0.2 * n_train) == 48 and len(a["train"][0]) + len(a["val"][0]) == n_train
    assert (a["val"][0] == b["val"][0]).all()
    assert not (a["val"][0] == c["val"][0]).all(), "the seed picks the val images"
    assert len(a["test"][0]) == 30
