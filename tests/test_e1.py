"""E1 on the real embedded data, shrunk: the real config composed, then made small."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from reprodl.experiments import e1
from reprodl.params import check_data
from reprodl.precision import use_bf16

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def shrunk_config() -> dict:
    section = copy.deepcopy(PARAMS["e1"])
    section["grid_images"] = 40
    for name in ("logreg", "mlp", "mlp_sigmoid", "convnet"):
        section[name].update(epochs=1, max_batches=2)
    section["perceptron"]["epochs"] = 1
    return e1.check_params(section, check_data(PARAMS["data"]), seed=0)


class RecordingTracker:
    def __init__(self):
        self.epochs, self.confusions = [], []

    def epoch(self, model, epoch, metrics):
        self.epochs.append((model, epoch))

    def confusion(self, model, y_true, y_pred, labels):
        self.confusions.append((model, len(y_true), labels))


def test_run_e1_trains_every_model_and_writes_its_outputs(prepared_mnist, tmp_path):
    tracker = RecordingTracker()
    metrics = e1.run_e1(
        shrunk_config(), prepared_mnist, models_dir=tmp_path / "models", grid_path=tmp_path / "grid.png",
        report_path=tmp_path / "e1.md", tracker=tracker, seed=0, progress=False,
    )["e1"]
    trained = ["logreg", "mlp", "mlp_sigmoid_lr0p5", "mlp_sigmoid_lr0p3", "mlp_sigmoid_lr0p2", "convnet"]
    assert list(metrics) == [*trained, "perceptron"]
    assert metrics["logreg"]["n_params"] == 7850
    # auto resolves per CPU; the metrics record what ran (logreg has no precision param: fp32)
    assert metrics["convnet"]["precision"] == ("bf16" if use_bf16(PARAMS["e1"]["convnet"]["precision"]) else "fp32")
    assert metrics["logreg"]["precision"] == "fp32"
    assert metrics["mlp"]["n_params"] == 784 * 100 + 100 + 100 * 10 + 10
    for name in trained:
        assert set(metrics[name]) >= {"train", "val", "test"}
        assert metrics[name]["precision"] in ("fp32", "bf16")
        assert 0 <= metrics[name]["test"]["accuracy"] <= 1
        assert (tmp_path / "models" / f"{name}.pt").exists()
    assert [m for m, _ in tracker.epochs] == trained, "one epoch logged per model"
    assert [c[0] for c in tracker.confusions] == trained and tracker.confusions[0][1] == 30
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 * (20 * 30 + 2), 2 * (2 * 30 + 2)), "40 images as 2 rows of 20, upscaled x2"
    report = (tmp_path / "e1.md").read_text()
    assert "| x | 5 x 784 |" in report and "| W | 784 x 10 |" in report
    assert "7,850" in report


def test_same_params_same_metrics(prepared_mnist, tmp_path):
    cfg = shrunk_config()
    cfg["models"] = ["mlp", "perceptron"]
    runs = [
        e1.run_e1(cfg, prepared_mnist, models_dir=tmp_path / str(i), grid_path=tmp_path / f"{i}.png", report_path=tmp_path / f"{i}.md", seed=0, progress=False)
        for i in range(2)
    ]
    for run in runs:  # wall time legitimately differs
        for model in run["e1"].values():
            model.pop("seconds")
    assert runs[0] == runs[1]


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
    cfg = shrunk_config()
    assert list(cfg["mlp_sigmoid"]["variants"]) == ["mlp_sigmoid_lr0p5", "mlp_sigmoid_lr0p3", "mlp_sigmoid_lr0p2"]
    assert [c.lr for c in cfg["mlp_sigmoid"]["variants"].values()] == [0.5, 0.3, 0.2]
