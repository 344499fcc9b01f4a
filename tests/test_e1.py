"""E1 on the real embedded data, shrunk: the real config composed, then made small."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from configs import PARAMS, compose
from helpers import RecordingTracker

from reprodl import precision
from reprodl.experiments import e1

SHRINK = {"e1.grid_images": 40, "e1.perceptron.epochs": 1}
for _name in ("logreg", "mlp", "mlp_sigmoid", "convnet"):
    SHRINK |= {f"e1.{_name}.epochs": 1, f"e1.{_name}.max_batches": 2}


def shrunk_config(**overrides):
    """The real e1 section, shrunk (1 epoch, 2 batches per model), plus dotted-key overrides."""
    return compose({**SHRINK, **overrides}).e1


def test_run_e1_trains_every_model_and_writes_its_outputs(prepared_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # a CPU without native bf16 (both: the test below)
    tracker = RecordingTracker()
    metrics = e1.run_e1(
        shrunk_config(), prepared_mnist, models_dir=tmp_path / "models", grid_path=tmp_path / "grid.png",
        table_path=tmp_path / "results.csv", report_path=tmp_path / "e1.md", tracker=tracker, seed=0, progress=False,
    )["e1"]
    trained = ["logreg", "mlp", "mlp_sigmoid_lr0p5", "mlp_sigmoid_lr0p3", "mlp_sigmoid_lr0p2", "convnet"]
    assert list(metrics) == [*trained, "perceptron"]
    # the committed convnet precision is auto: fp32 on this CPU; logreg has no precision param: fp32
    assert PARAMS["e1"]["convnet"]["precision"] == "auto" and metrics["convnet"]["precision"] == "fp32"
    assert metrics["logreg"]["precision"] == "fp32"
    for name in trained:  # headline numbers only: val and test accuracy, and the precision and device that ran
        assert set(metrics[name]) == {"val", "test", "precision", "device"} and set(metrics[name]["test"]) == {"accuracy"}
        assert metrics[name]["device"] == "cpu"  # run_e1's default device
        assert (tmp_path / "models" / f"{name}.pt").exists()
    assert set(metrics["perceptron"]) == {"test"}
    table = {row["model"]: row for row in csv.DictReader((tmp_path / "results.csv").open())}
    assert list(table) == [*trained, "perceptron"]
    assert table["logreg"]["n_params"] == "7850"
    assert table["mlp"]["n_params"] == str(784 * 100 + 100 + 100 * 10 + 10)
    assert float(table["convnet"]["test_accuracy"]) == metrics["convnet"]["test"]["accuracy"]
    assert float(table["mlp"]["train_loss"]) > 0 and table["perceptron"]["val_accuracy"] == ""
    assert [m for m, _, _ in tracker.epochs] == trained, "one epoch logged per model"
    assert [c[0] for c in tracker.confusions] == trained and tracker.confusions[0][1] == 30
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 * (20 * 30 + 2), 2 * (2 * 30 + 2)), "40 images as 2 rows of 20, upscaled x2"
    report = (tmp_path / "e1.md").read_text()
    assert "| x | 5 x 784 |" in report and "| W | 784 x 10 |" in report
    assert "7,850" in report


@pytest.mark.parametrize("native, ran", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_and_the_metrics_say_which_ran(prepared_mnist, tmp_path, monkeypatch, native, ran):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    cfg = shrunk_config(**{"e1.models": ["convnet"], "e1.convnet.precision": "auto", "e1.convnet.max_batches": 1})
    metrics = e1.run_e1(cfg, prepared_mnist, models_dir=tmp_path / "models", grid_path=tmp_path / "grid.png",
                        table_path=tmp_path / "results.csv", report_path=tmp_path / "e1.md", seed=0, progress=False)["e1"]
    assert metrics["convnet"]["precision"] == ran


def test_same_params_same_metrics(prepared_mnist, tmp_path):
    cfg = shrunk_config(**{"e1.models": ["mlp", "perceptron"]})
    runs = [
        e1.run_e1(cfg, prepared_mnist, models_dir=tmp_path / str(i), grid_path=tmp_path / f"{i}.png",
                  table_path=tmp_path / f"{i}.csv", report_path=tmp_path / f"{i}.md", seed=0, progress=False)
        for i in range(2)
    ]
    assert runs[0] == runs[1]
    tables = [[{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader((tmp_path / f"{i}.csv").open())] for i in range(2)]
    assert tables[0] == tables[1]  # every split's loss too, wall time aside


def test_perceptron_applies_the_hand_written_rule():
    """From W = 0, b = 0 one step gives y = 0, grad = t: W = lr x^T t and b = lr t.sum(0)."""
    rng = np.random.default_rng(0)
    x = rng.random((5, 784)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 9])
    W, b, table = e1.train_perceptron(x, labels, 10, lr=0.01, batch_size=5, epochs=1, seed=0)
    t = np.eye(10, dtype=np.float32)[labels]
    assert np.allclose(W.numpy(), 0.01 * x.T @ t, atol=1e-6)
    assert np.allclose(b.numpy(), 0.01 * t.sum(0, keepdims=True), atol=1e-6)
    shapes = {name: shape for name, shape, _ in table}
    assert shapes == {
        "x": "5 x 784", "t": "5 x 10", "W": "784 x 10", "b": "1 x 10", "y = xW + b": "5 x 10",
        "grad = t - y": "5 x 10", "x^T grad": "784 x 10", "grad.sum(0)": "1 x 10",
    }


def test_perceptron_divergence_is_a_clear_error():
    x = np.full((10, 784), 1.0, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="lower e1.perceptron.lr"):
        e1.train_perceptron(x, np.arange(10), 10, lr=10.0, batch_size=5, epochs=20, seed=0)


def test_sigmoid_variants_are_named_by_learning_rate():
    jobs = e1.training_jobs(shrunk_config(**{"e1.models": ["mlp_sigmoid"]}), 784, 10, (1, 28, 28), seed=0)
    assert [name for name, _, _ in jobs] == ["mlp_sigmoid_lr0p5", "mlp_sigmoid_lr0p3", "mlp_sigmoid_lr0p2"]
    assert [c.lr for _, _, c in jobs] == [0.5, 0.3, 0.2]
    assert {c.epochs for _, _, c in jobs} == {1} and {c.max_batches for _, _, c in jobs} == {2}


def test_convnet_momentum_changes_the_metrics(prepared_mnist, tmp_path):
    """The reported dead param: OneCycleLR used to cycle momentum itself, so 0.8 and 0.9 gave the same bits."""
    runs = []
    for momentum in (0.8, 0.9):
        cfg = shrunk_config(**{"e1.models": ["convnet"], "e1.convnet.momentum": momentum, "e1.convnet.precision": "fp32", "e1.convnet.max_batches": 6})
        e1.run_e1(cfg, prepared_mnist, models_dir=tmp_path / str(momentum), grid_path=tmp_path / "g.png",
                  table_path=tmp_path / "t.csv", report_path=tmp_path / "r.md", seed=0, progress=False)
        runs.append(next(csv.DictReader((tmp_path / "t.csv").open()))["test_loss"])
    assert runs[0] != runs[1]
