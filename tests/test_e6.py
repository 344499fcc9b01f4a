"""E6 on the real embedded data, shrunk: the real config composed, then made small."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs import compose, errors
from helpers import RecordingTracker

from reprodl import datasets
from reprodl.experiments import e6

# The 2-D tasks keep their real size (they take well under a second); the image tasks get 2 epochs.
SHRINK = {"e6.xor.epochs": 60, "e6.mnist_mlp.epochs": 2, "e6.usps_mlp.epochs": 2, "e6.usps_conv.epochs": 2}


def shrunk_config(**overrides):
    return compose({**SHRINK, **overrides}).e6


@pytest.fixture(scope="module")
def prepared_e6(prepared_mnist, tmp_path_factory) -> Path:
    """A data/prepared-like folder: the small MNIST of conftest and 400 8x8 sklearn digits (320 / 40 / 40)."""
    root = tmp_path_factory.mktemp("e6_data")
    (root / "prepared").mkdir()
    (root / "prepared" / "mnist").symlink_to(prepared_mnist)
    datasets.fetch("sklearn_digits", "embedded", root / "raw" / "sklearn_digits")
    datasets.prepare(
        "sklearn_digits", "embedded", root / "raw" / "sklearn_digits", root / "prepared" / "sklearn_digits",
        fractions=(0.8, 0.1, 0.1), seed=0, max_images=400,
    )
    return root / "prepared"


def run(prepared, tmp_path, cfg=None, tracker=None, seed=0) -> dict:
    return e6.run_e6(
        cfg or shrunk_config(), prepared, figures_dir=tmp_path / "plots", report_path=tmp_path / "e6.md",
        tracker=tracker, seed=seed, progress=False,
    )["e6"]


def test_run_e6_learns_every_task_and_writes_its_outputs(prepared_e6, tmp_path):
    tracker = RecordingTracker()
    metrics = run(prepared_e6, tmp_path, tracker=tracker)
    assert tracker.confusions == [], "E6 logs no confusion matrix"

    tasks = ["regression", "blobs", "xor_full_batch", "xor_minibatch", "mnist_mlp", "usps_mlp", "usps_conv"]
    assert list(metrics) == tasks
    headline = [v for task in metrics.values() for k, v in task.items() if k != "seconds"]
    assert len(headline) <= 20, "metrics hold headline numbers only"

    # One neuron finds the generating line (noise std 1 on 200 points: the least-squares fit is within ~0.2).
    assert metrics["regression"]["weight"] == pytest.approx(-20, abs=0.5)
    assert metrics["regression"]["bias"] == pytest.approx(-10, abs=0.3)
    # Bayes accuracy of the blobs (centre 1, std 1) is 0.92: a linear classifier gets close to it.
    assert metrics["blobs"]["test_accuracy"] > 0.85
    assert metrics["xor_full_batch"]["test_accuracy"] > 0.9  # not linearly separable: the hidden layer is needed
    assert metrics["xor_minibatch"]["test_accuracy"] > 0.9
    # Two epochs on 240 MNIST / 320 digit images: far above chance (0.1) already.
    for task in ("mnist_mlp", "usps_mlp", "usps_conv"):
        assert metrics[task]["test_accuracy"] > 0.3, task
    assert metrics["usps_conv"]["train_images"] == 320, "the whole train split"

    # Curves: one entry per epoch per task, the image tasks with their val measures.
    logged = {}
    for task, epoch, measures in tracker.epochs:
        logged.setdefault(task, []).append(epoch)
        assert math.isfinite(measures["train_loss"])
    assert logged["regression"] == list(range(1, 101))
    assert logged["xor_minibatch"] == list(range(1, 61))
    assert logged["usps_conv"] == [1, 2]
    assert {k for t, _, m in tracker.epochs if t == "mnist_mlp" for k in m} == {"train_loss", "val_loss", "val_accuracy"}

    for name in ("regression", "blobs", "xor_full_batch", "xor_minibatch", "loss_curves"):
        assert Image.open(tmp_path / "plots" / f"{name}.png").size[0] > 100, name
    report = (tmp_path / "e6.md").read_text()
    assert "| xor_minibatch |" in report and "0.997" in report, "each task next to the catalogue's number"
    assert "stand-in" in report and "sklearn_digits" in report and "8 x 8" in report
    assert "Linear(992, 100)" in report, "the conv net's Linear is sized from the 8x8 data: 32 channels x 31"


def test_same_params_same_metrics(prepared_e6, tmp_path, monkeypatch):
    for figure in ("draw_regression", "draw_decision_boundary", "draw_loss_curves"):  # no metric depends on them
        monkeypatch.setattr(e6, figure, lambda *args, **kwargs: None)
    cfg = shrunk_config(**{"e6.regression.epochs": 5, "e6.xor.epochs": 5, "e6.blobs.epochs": 2})
    runs = [run(prepared_e6, tmp_path / str(i), cfg) for i in range(2)]
    for metrics in runs:  # wall time legitimately differs
        for task in metrics.values():
            task.pop("seconds")
    assert runs[0] == runs[1]
    other_seed = run(prepared_e6, tmp_path / "seed1", cfg, seed=1)
    assert other_seed["regression"]["weight"] != runs[0]["regression"]["weight"]


def test_xor_runs_share_their_points_and_initial_weights(tmp_path):
    """Full batch and mini-batches differ in the batch only, so their difference is the batch's."""
    cfg = shrunk_config(**{"e6.xor.epochs": 1, "e6.xor.lr": 1e-12}).xor  # ~no update: the model stays at its init
    accuracies = [e6.xor(cfg, batch, "xor", tmp_path / f"{batch}.png", e6._rng(0, 2), lambda *a: None)[0]["test_accuracy"] for batch in (None, 200)]
    assert accuracies[0] == accuracies[1] != 0.5, "same points, same initial weights"


def test_the_conv_net_sizes_its_linear_layer_from_the_data():
    cfg = shrunk_config().usps_conv
    rng = np.random.default_rng(0)
    usps = e6.conv_net(cfg, (1, 16 * 16), 10, rng)  # the full profile's 16x16 USPS
    assert usps.modules[3].in_features == 4064, "the catalogue's Linear(4064, 100)"
    digits = e6.conv_net(cfg, (1, 8 * 8), 10, rng)
    assert digits.modules[3].in_features == 32 * 31
    assert digits.forward(np.zeros((2, 1, 64), dtype=np.float32)).shape == (2, 10)
    strided = e6.conv_net(compose({"e6.usps_conv.stride": 2, "e6.usps_conv.pool": 3}).e6.usps_conv, (1, 64), 10, rng)
    assert strided.forward(np.zeros((2, 1, 64), dtype=np.float32)).shape == (2, 10)  # (64 - 3) // 2 + 1 = 31 -> 10


def test_max_train_images_takes_a_stratified_subset(prepared_e6, tmp_path):
    splits = {s: datasets.load_split(prepared_e6 / "sklearn_digits", s) for s in datasets.SPLITS}
    cfg = shrunk_config(**{"e6.usps_conv.max_train_images": 100, "e6.usps_conv.epochs": 1}).usps_conv
    result, detail = e6.image_task("usps_conv", cfg, splits, 10, e6._rng(0, 5), lambda *a: None)
    assert result["train_images"] == detail["train_images"] == 100


def test_the_generated_tasks_have_the_catalogue_layout():
    rng = np.random.default_rng(0)
    x, y = e6.four_gaussians(1000, 0.1, rng)
    assert x.shape == (1000, 2) and y.shape == (1000, 1) and y.mean() == 0.5
    assert ((np.sign(x[:, 0] * x[:, 1]) > 0) == (y[:, 0] == 1)).all(), "class 1 at (1, 1) and (-1, -1)"
    x, y = e6.two_blobs(1001, 2.0, 0.1, rng)
    assert y.sum() == 501 and (x[y[:, 0] == 1] > 0).all() and (x[y[:, 0] == 0] < 0).all()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e6.xor.hidden": 0}, "params.yaml: e6.xor.hidden must be >= 1, got 0"),
        ({"e6.mnist_mlp.activation": "gelu"}, "params.yaml: e6.mnist_mlp.activation must be one of relu, sigmoid, tanh; got 'gelu'"),
        ({"e6.usps_conv.dataset": "digit_scenes"}, "params.yaml: e6.usps_conv.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
        ({"e6.usps_mlp.dataset": "usps"}, "params.yaml: e6.usps_mlp.dataset is 'usps', which is not prepared"),
        ({"e6.blobs.std": -1.0}, "params.yaml: e6.blobs.std must be > 0, got -1.0"),
        ({"e6.regression.lrr": 0.1}, "params.yaml: e6.regression.lrr is not a known key (did you mean lr?)"),
    ],
)
def test_bad_e6_params_name_the_key(overrides, expected):
    lines = errors(overrides)
    assert any(line.startswith(expected) for line in lines), lines


def test_a_conv_net_that_leaves_nothing_of_the_image_is_a_param_error():
    from reprodl.config import ParamError

    cfg = compose({"e6.usps_conv.kernel": 9, "e6.usps_conv.pool": 60}).e6.usps_conv
    assert e6.conv_output_length(cfg, 256) == 4  # 16x16 USPS: 248 samples after the conv, 4 windows of 60
    expected = "params.yaml: e6.usps_conv leaves nothing of a 64-sample image: kernel 9, stride 1 -> 56 samples, then pool 60 -> 0"
    with pytest.raises(ParamError, match=expected):
        e6.conv_output_length(cfg, 64)
