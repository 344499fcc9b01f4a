"""E5 on the real embedded MNIST, shrunk: the autoencoder, the params checks, one tiny run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from reprodl import datasets, engine
from reprodl.autoencoder import ENGINE_LOSS, autoencoder, encode, load_autoencoder, reconstruct
from reprodl.experiments import e5
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


def section(**changes) -> dict:
    out = copy.deepcopy(PARAMS["e5"])
    out.update(bottlenecks=[16, 8], figure_images=3)
    out["train"].update(epochs=1, max_batches=2)
    out["tsne"].update(points=30, perplexity=5)
    for key, value in changes.items():
        out[key] = value
    return out


def test_the_real_section_is_valid():
    cfg = e5.check_params(PARAMS["e5"], DATA, seed=0)
    assert cfg["bottlenecks"] == [400, 256, 100, 64, 16] and cfg["losses"] == ["mse", "bce"]
    assert cfg["train"]["bce"].loss == "bce_with_logits" and cfg["train"]["mse"].loss == "mse"


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"bottlenecks": [64, 785]}, r"e5\.bottlenecks\[1\] is 785, larger than the input \(784 pixels\)"),
        ({"bottlenecks": [0]}, r"e5\.bottlenecks\[0\] must be an integer >= 1"),
        ({"losses": ["mse", "l1"]}, r"e5\.losses\[1\] must be one of mse, bce"),
        ({"datasets": ["mnist", "fashion_mnist"]}, r"e5\.datasets\[1\] is 'fashion_mnist', which is not prepared"),
        ({"datasets": ["usps"]}, r"e5\.datasets\[0\] must be one of mnist, fashion_mnist"),
        ({"tsne": {"points": 30, "perplexity": 0, "n_jobs": 1}}, r"e5\.tsne\.perplexity must be a number > 0"),
        ({"tsne": {"points": 30, "perplexity": 30, "n_jobs": 1}}, r"e5\.tsne\.perplexity must be at most e5\.tsne\.points - 1 \(29\)"),
        ({"train": {"epochs": 1, "batch_size": 8, "lr": -1}}, r"e5\.train\.lr must be a number > 0"),
    ],
)
def test_bad_params_are_refused_with_their_key(changes, key):
    with pytest.raises(ParamError, match=key):
        e5.check_params(section(**changes), DATA, seed=0)


def test_fashion_mnist_in_the_embedded_profile_is_a_clear_error():
    with pytest.raises(ParamError, match=r"data\.datasets\[1\] \(fashion_mnist\): fashion_mnist has no embedded stand-in"):
        check_data({**PARAMS["data"], "datasets": ["mnist", "fashion_mnist"]})


def test_a_perplexity_too_large_for_a_split_is_refused_before_any_work(prepared_root, tmp_path):
    cfg = e5.check_params(section(tsne={"points": 100, "perplexity": 40, "n_jobs": 1}), DATA, seed=0)  # test has 30 images
    with pytest.raises(ParamError, match=r"e5\.tsne\.perplexity is too large for the 30 points of the mnist test split"):
        e5.run_e5(cfg, prepared_root, models_dir=tmp_path / "models", plots_dir=tmp_path / "plots", report_path=tmp_path / "e5.md", progress=False)
    assert not (tmp_path / "models").exists()


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


def test_run_e5_trains_measures_maps_and_writes_its_outputs(prepared_root, tmp_path):
    cfg = e5.check_params(section(), DATA, seed=0)
    epochs = []
    tracker = type("Recorder", (), {"epoch": lambda self, model, epoch, m: epochs.append((model, epoch))})()
    kwargs = dict(models_dir=tmp_path / "models", plots_dir=tmp_path / "plots", report_path=tmp_path / "e5.md", seed=0, progress=False)
    metrics = e5.run_e5(cfg, prepared_root, tracker=tracker, **kwargs)["e5"]["mnist"]
    configs = ["mse_b16", "mse_b8", "bce_b16", "bce_b8"]
    assert [m for m, _ in epochs] == [f"mnist/{c}" for c in configs]
    for config in configs:
        for split in ("train", "test"):
            r = metrics[config][split]
            assert r["mse_mean"] > 0 and r["mse_std"] > 0
            assert 0 <= r["neighboring_hit_code"] <= 1 and 0 <= r["neighboring_hit_reconstruction"] <= 1
        assert (tmp_path / "plots" / f"mnist_tsne_{config}.png").exists()
    assert metrics["mse_b16"]["n_params"] == 784 * 16 + 16 + 16 * 784 + 784
    # The linear baselines: a 16-d PCA code beats an 8-d one, and both beat the mean image.
    assert metrics["pca_b16"]["test"]["mse_mean"] < metrics["pca_b8"]["test"]["mse_mean"] < metrics["mean_image"]["test"]["mse_mean"]
    assert 0 < metrics["bce_vs_mse"]["test"]["wilcoxon_p_bce_better"] <= 1 and metrics["bce_vs_mse"]["test"]["sizes"] == 2
    for name in ("mnist_train_reconstructions.png", "mnist_test_reconstructions.png", "mnist_mse.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0
    assert "| 16 |" in (tmp_path / "e5.md").read_text()
    json.dumps(metrics)

    # The saved model rebuilds exactly: its test MSE is the one reported.
    model, spec = load_autoencoder(tmp_path / "models" / "mnist_bce_b8.pt")
    assert spec == {"n_inputs": 784, "bottleneck": 8, "loss": "bce"}
    test = datasets.load_split(prepared_root / "mnist", "test")
    x = engine.to_tensor_images(test.x)
    errors = ((reconstruct(model, x, "bce") - x.flatten(1)) ** 2).mean(1) * e5.MSE_SCALE
    assert float(errors.mean()) == pytest.approx(metrics["bce_b8"]["test"]["mse_mean"], rel=1e-5)

    again = e5.run_e5(cfg, prepared_root, **kwargs)["e5"]["mnist"]
    assert without_seconds(again) == without_seconds(metrics), "the same params give the same metrics"


def without_seconds(tree: dict) -> dict:
    return {key: {k: v for k, v in value.items() if k != "seconds"} for key, value in tree.items()}
