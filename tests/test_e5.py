"""E5 on the real embedded MNIST, shrunk: the autoencoder, the params checks, one tiny run."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from configs import PARAMS, ROOT, compose, errors
from helpers import flat

from reprodl import config, datasets, engine
from reprodl.autoencoder import ENGINE_LOSS, autoencoder, encode, load_autoencoder, reconstruct
from reprodl.experiments import e5

POINTS = PARAMS["e5"]["tsne"]["points"]  # the committed sample size of the t-SNE maps

SHRINK = {
    "e5.bottlenecks": [16, 8], "e5.figure_images": 3, "e5.train.epochs": 1, "e5.train.max_batches": 2,
    "e5.tsne.points": 30, "e5.tsne.perplexity": 5,
}


def shrunk_config(**overrides) -> config.E5:
    """The real e5 section, shrunk (2 sizes, 1 epoch of 2 batches, 30-point maps), plus dotted-key overrides."""
    return compose({**SHRINK, **overrides}).e5


def stage_common():
    """stages/common.py, whose write_outputs splits the wall times off the metrics."""
    spec = importlib.util.spec_from_file_location("stage_common", ROOT / "stages" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_real_section_is_valid():
    cfg = compose().e5
    assert cfg.bottlenecks == [400, 256, 100, 64, 16] and cfg.losses == ["mse", "bce"] and cfg.datasets == ["mnist"]
    assert cfg.neighbors < cfg.tsne.points and cfg.tsne.perplexity <= cfg.tsne.points - 1 and cfg.train.optimizer == "adam"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e5.bottlenecks": [0]}, "params.yaml: e5.bottlenecks[0] must be >= 1, got 0"),
        ({"e5.bottlenecks": [64, 64]}, "params.yaml: e5.bottlenecks lists a value twice: [64, 64]"),
        ({"e5.bottlenecks": []}, "params.yaml: e5.bottlenecks must list at least 1 item(s), got []"),
        ({"e5.losses": ["mse", "l1"]}, "params.yaml: e5.losses[1] must be one of mse, bce; got 'l1'"),
        ({"e5.datasets": ["mnist", "fashion_mnist"]}, "params.yaml: e5.datasets[1] is 'fashion_mnist', which is not prepared: add it to data.datasets"),
        ({"e5.datasets": ["digit_scenes"]}, "params.yaml: e5.datasets[0] must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
        ({"e5.tsne.perplexity": 0}, "params.yaml: e5.tsne.perplexity must be > 0, got 0"),
        ({"e5.tsne.points": 30, "e5.tsne.perplexity": 30}, "params.yaml: e5.tsne.perplexity must be at most points - 1 (29), got 30"),
        ({"e5.neighbors": POINTS}, f"params.yaml: e5.neighbors must be below tsne.points ({POINTS}), got {POINTS}"),
        ({"e5.train.lr": -1}, "params.yaml: e5.train.lr must be > 0, got -1"),
        ({"e5.train.epochs": 0}, "params.yaml: e5.train.epochs must be >= 1, got 0"),
        ({"e5.train.momentum": 0.9}, "params.yaml: e5.train.momentum applies to optimizer sgd only, not adam: remove the key"),
        ({"e5.figure_images": 0}, "params.yaml: e5.figure_images must be >= 1, got 0"),
        ({"e5.tsne.point": 30}, "params.yaml: e5.tsne.point is not a known key (did you mean points?)"),
    ],
)
def test_bad_params_get_one_line_naming_the_key(overrides, expected):
    lines = errors(overrides)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_fashion_mnist_in_the_embedded_profile_is_a_clear_error():
    lines = errors({"data.datasets": ["mnist", "fashion_mnist"], "e5.datasets": ["mnist", "fashion_mnist"]})
    assert len(lines) == 1 and lines[0].startswith("params.yaml: data.datasets[1] (fashion_mnist): has no embedded stand-in"), lines


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    """A data/prepared-like folder with the embedded sklearn_digits (8 x 8 = 64 pixels), 300 images."""
    root = tmp_path_factory.mktemp("digits")
    datasets.fetch("sklearn_digits", "embedded", root / "raw")
    datasets.prepare("sklearn_digits", "embedded", root / "raw", root / "prepared" / "sklearn_digits", fractions=(0.8, 0.1, 0.1), seed=0, max_images=300)
    return root / "prepared"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"e5.tsne.points": 100, "e5.tsne.perplexity": 40},
         r"^params\.yaml: e5\.tsne\.perplexity is too large for the 30 points of the mnist test split: perplexity must be at most 29, neighbors below 30$"),
        ({"e5.tsne.points": 100, "e5.neighbors": 30}, r"^params\.yaml: e5\.neighbors is too large for the 30 points of the mnist test split"),
        ({"e5.datasets": ["sklearn_digits"], "e5.bottlenecks": [32, 65]},
         r"^params\.yaml: e5\.bottlenecks\[1\] is 65, larger than the input \(64 pixels of sklearn_digits in .*\): a bottleneck must compress$"),
    ],
)
def test_what_needs_the_files_is_a_param_error_before_any_work(prepared_root, digits_root, tmp_path, overrides, message):
    cfg = shrunk_config(**overrides)  # valid on its own: only the files refute it
    root = digits_root if cfg.datasets == ["sklearn_digits"] else prepared_root
    with pytest.raises(config.ParamError, match=message) as err:
        e5.run_e5(cfg, root, models_dir=tmp_path / "models", figures_dir=tmp_path / "plots", tables_dir=tmp_path / "plots", report_path=tmp_path / "e5.md", progress=False)
    assert err.value.key == message.split(" ")[1].replace("\\", "")
    assert not (tmp_path / "models").exists() and not (tmp_path / "plots").exists() and not (tmp_path / "e5.md").exists()


def test_a_bottleneck_as_large_as_the_input_is_allowed(digits_root, tmp_path):
    cfg = shrunk_config(**{"e5.datasets": ["sklearn_digits"], "e5.bottlenecks": [64], "e5.losses": ["mse"]})
    metrics = e5.run_e5(cfg, digits_root, models_dir=tmp_path / "models", figures_dir=tmp_path / "plots", tables_dir=tmp_path / "plots", report_path=tmp_path / "e5.md", seed=0, progress=False)
    mse = metrics["e5"]["sklearn_digits"]["test"]["mse"]
    assert mse["mse_loss"]["best_bottleneck"] == 64 and "bce_vs_mse" not in metrics["e5"]["sklearn_digits"]
    _, spec = load_autoencoder(tmp_path / "models" / "sklearn_digits_mse_b64.pt")
    assert spec == {"n_inputs": 64, "bottleneck": 64, "loss": "mse"}, "the input size is read from the prepared images"


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_the_engine_trains_an_autoencoder_on_its_own_input(loss):
    torch.manual_seed(0)
    x = (torch.rand(64, 1, 28, 28) > 0.7).float()  # (N, C, H, W)
    model = autoencoder(784, 32, loss)
    assert "code" in dict(model.named_modules())
    before = float(((reconstruct(model, x, loss) - x.flatten(1)) ** 2).mean())
    cfg = engine.TrainConfig(epochs=5, batch_size=16, lr=0.01, optimizer="adam", loss=ENGINE_LOSS[loss])
    history = engine.fit(model, (x, x.flatten(1)), None, cfg, progress=False)
    after = reconstruct(model, x, loss)  # (N, 784)
    assert after.shape == (64, 784) and 0 <= float(after.min()) and float(after.max()) <= 1
    assert float(((after - x.flatten(1)) ** 2).mean()) < before and history.train_loss[-1] < history.train_loss[0]
    assert encode(model, x).shape == (64, 32)
    with pytest.raises(ValueError, match="unknown loss"):
        autoencoder(784, 32, "l1")


def test_wilcoxon_of_five_sizes_all_better_gives_the_reference_p():
    results = {e5.config_name(loss, b): {"test": {"mse_mean": m}} for b, (mse, bce) in e5.REFERENCE.items() for loss, m in (("mse", mse), ("bce", bce))}
    test = e5.bce_vs_mse(results, list(e5.REFERENCE))
    assert test["wilcoxon_p_bce_better"] == pytest.approx(0.03125)
    assert test["wilcoxon_p_two_sided"] == pytest.approx(0.0625)
    assert test["sizes_bce_better"] == 5


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_e5_trains_measures_maps_and_writes_its_outputs(prepared_root, tmp_path):
    cfg = shrunk_config()
    epochs = []
    tracker = type("Recorder", (), {"epoch": lambda self, model, epoch, m: epochs.append((model, epoch))})()
    kwargs = dict(models_dir=tmp_path / "models", figures_dir=tmp_path / "plots", tables_dir=tmp_path / "plots", report_path=tmp_path / "e5.md", seed=0, progress=False)
    tree = e5.run_e5(cfg, prepared_root, tracker=tracker, **kwargs)
    configs = ["mse_b16", "mse_b8", "bce_b16", "bce_b8"]
    assert epochs == [(f"mnist/{c}", 1) for c in configs], "one epoch (e5.train.epochs) per configuration"

    # What the stage writes: headline numbers only, the wall times split off to timings/.
    metrics, timings = stage_common().split_timings(tree)
    assert set(timings["e5"]["mnist"]) == {"seconds", "train_seconds"} and list(timings["e5"]["mnist"]["train_seconds"]) == configs
    headline = metrics["e5"]["mnist"]
    assert set(headline) == {"test", "bce_vs_mse", "device"} and headline["device"] == "cpu"
    assert set(headline["test"]) == {"mse", "neighboring_hit"}
    assert set(headline["test"]["mse"]) == {"mse_loss", "bce_loss", "mean_image"}
    assert set(headline["test"]["neighboring_hit"]) == {"originals", "code_best", "reconstruction_best"}
    assert len(flat(metrics)) == 18
    json.dumps(metrics)

    # Every configuration's numbers are in the table; the headline picks from it.
    rows = read_csv(tmp_path / "plots" / "mnist_autoencoders.csv")
    assert [(r["loss"], int(r["bottleneck"]), r["split"]) for r in rows] == [(c.split("_b")[0], int(c.split("_b")[1]), s) for c in configs for s in ("train", "test")]
    assert {int(r["n_params"]) for r in rows if r["bottleneck"] == "16"} == {784 * 16 + 16 + 16 * 784 + 784}
    test_mse = {(r["loss"], int(r["bottleneck"])): float(r["mse_mean"]) for r in rows if r["split"] == "test"}
    for loss in ("mse", "bce"):
        by_size = {b: test_mse[(loss, b)] for b in (16, 8)}
        best, worst = min(by_size, key=by_size.get), max(by_size, key=by_size.get)
        assert headline["test"]["mse"][f"{loss}_loss"] == pytest.approx(
            {"best": by_size[best], "best_bottleneck": best, "worst": by_size[worst], "worst_bottleneck": worst}, abs=1e-5
        )
        assert best != worst
    assert all(float(r["mse_std"]) > 0 for r in rows)
    hits = [float(r["neighboring_hit_code"]) for r in rows if r["split"] == "test"]
    assert headline["test"]["neighboring_hit"]["code_best"] == pytest.approx(max(hits), abs=1e-6)

    # The linear baselines: a 16-d PCA code beats an 8-d one, and both beat the mean image.
    baselines = {(r["baseline"], r["bottleneck"], r["split"]): r for r in read_csv(tmp_path / "plots" / "mnist_baselines.csv")}
    assert list(baselines) == [("mean_image", "", "test"), ("pca", "16", "test"), ("pca", "8", "test"), ("originals", "", "train"), ("originals", "", "test")]
    pca16, pca8, mean = (float(baselines[k]["mse_mean"]) for k in [("pca", "16", "test"), ("pca", "8", "test"), ("mean_image", "", "test")])
    assert pca16 < pca8 < mean and headline["test"]["mse"]["mean_image"] == pytest.approx(mean, abs=1e-5)
    assert float(baselines[("originals", "", "test")]["neighboring_hit"]) == pytest.approx(headline["test"]["neighboring_hit"]["originals"], abs=1e-6)

    # Two sizes: the one-sided Wilcoxon p cannot go below 1/4, so no verdict for BCE.
    wilcoxon = headline["bce_vs_mse"]["test"]
    assert wilcoxon["sizes"] == 2 and wilcoxon["wilcoxon_p_bce_better"] >= 0.25 and wilcoxon["bce_better"] is False
    assert wilcoxon["sizes_bce_better"] == sum(test_mse[("bce", b)] < test_mse[("mse", b)] for b in (16, 8))

    for config in configs:
        assert (tmp_path / "plots" / f"mnist_tsne_{config}.png").stat().st_size > 0
    for name in ("mnist_train_reconstructions.png", "mnist_test_reconstructions.png", "mnist_mse.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0
    report = (tmp_path / "e5.md").read_text()
    assert f"| 16 | {test_mse[('mse', 16)]:.3f} +- " in report and "plots/e5/tables/mnist_autoencoders.csv" in report
    assert "Verdict (one-sided p < 0.05): no evidence that BCE reconstructs better." in report

    # The saved model rebuilds exactly: its test MSE is the one in the table.
    model, spec = load_autoencoder(tmp_path / "models" / "mnist_bce_b8.pt")
    assert spec == {"n_inputs": 784, "bottleneck": 8, "loss": "bce"}
    test = datasets.load_split(prepared_root / "mnist", "test")
    x = engine.to_tensor_images(test.x)
    errors_ = ((reconstruct(model, x, "bce") - x.flatten(1)) ** 2).mean(1) * e5.MSE_SCALE
    assert float(errors_.mean()) == pytest.approx(test_mse[("bce", 8)], rel=1e-5)

    again, _ = stage_common().split_timings(e5.run_e5(cfg, prepared_root, **kwargs))
    assert again == metrics, "the same params give the same metrics"
