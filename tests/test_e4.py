"""E4 on the real embedded MNIST, shrunk (30 test images), through small seeded E1-style models."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from reprodl import models
from reprodl.experiments import e4
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, prepared_mnist) -> tuple[Path, Path]:
    """(prepared mnist dir with 30 test images, a models dir holding mlp.pt and convnet.pt)."""
    root = tmp_path_factory.mktemp("e4")
    for name, spec in {
        "mlp": {"kind": "mlp", "n_inputs": 784, "hidden": 16, "n_classes": 10},
        "convnet": {"kind": "convnet", "channels": [4, 8], "hidden": 16, "n_classes": 10},
    }.items():
        models.save_model(root / "models" / f"{name}.pt", spec, models.build_model(spec, seed=0))
    return prepared_mnist, root / "models"


def config(**tsne) -> dict:
    section = copy.deepcopy(PARAMS["e4"])
    section["tsne"].update({"perplexity": 5, **tsne})
    return e4.check_params(section, DATA, seed=0)


def test_the_real_section_is_valid():
    cfg = e4.check_params(PARAMS["e4"], DATA, seed=0)
    assert ("convnet", "hidden") in cfg["layers"] and cfg["neighbors"] == 6 and cfg["perplexity"] == 30


@pytest.mark.parametrize("perplexity", [0, -5, "thirty"])
def test_a_perplexity_that_is_not_positive_is_refused(perplexity):
    section = copy.deepcopy(PARAMS["e4"])
    section["tsne"]["perplexity"] = perplexity
    with pytest.raises(ParamError, match=r"e4\.tsne\.perplexity"):
        e4.check_params(section, DATA, seed=0)


def test_a_perplexity_as_large_as_the_test_split_is_refused_before_any_work(prepared, tmp_path):
    prepared_dir, models_dir = prepared
    with pytest.raises(ParamError, match=r"e4\.tsne\.perplexity must be at most the number of test images - 1 \(29"):
        e4.run_e4(config(perplexity=30), prepared_dir, models_dir=models_dir, plots_dir=tmp_path / "plots", report_path=tmp_path / "e4.md", progress=False)
    assert not (tmp_path / "plots").exists()


def test_an_unknown_layer_is_a_param_error_naming_its_key(prepared):
    prepared_dir, models_dir = prepared
    cfg = config()
    cfg["layers"] = [("mlp", "hidden"), ("convnet", "hiden")]
    with pytest.raises(ParamError, match=r"e4\.layers\[1\]\.layer is 'hiden': .*did you mean hidden"):
        e4.load_inputs(cfg, prepared_dir, models_dir)
    cfg["layers"] = [("resnet", "fc")]
    with pytest.raises(ParamError, match=r"e4\.layers\[0\]\.model is 'resnet'.*available: convnet, mlp"):
        e4.load_inputs(cfg, prepared_dir, models_dir)


def test_malformed_layer_entries_are_refused():
    section = copy.deepcopy(PARAMS["e4"])
    section["layers"] = [{"model": "mlp"}]
    with pytest.raises(ParamError, match=r"e4\.layers\[0\]\.layer is missing"):
        e4.check_params(section, DATA, seed=0)
    section["layers"] = [{"model": "../x", "layer": "hidden"}]
    with pytest.raises(ParamError, match=r"e4\.layers\[0\]\.model"):
        e4.check_params(section, DATA, seed=0)


def test_run_e4_maps_every_representation_and_writes_its_outputs(prepared, tmp_path):
    prepared_dir, models_dir = prepared
    metrics = e4.run_e4(config(), prepared_dir, models_dir=models_dir, plots_dir=tmp_path / "plots", report_path=tmp_path / "e4.md", seed=0, progress=False)["e4"]
    assert list(metrics) == ["pixels", "mlp_hidden", "mlp_logits", "convnet_hidden", "convnet_logits"]
    assert metrics["pixels"]["dims"] == 784 and metrics["mlp_hidden"]["dims"] == 16 and metrics["convnet_logits"]["dims"] == 10
    for rep, result in metrics.items():
        test = result["test"]
        for key in ("neighboring_hit", "neighboring_hit_pca"):
            assert 0.0 <= test[key] <= 1.0
        assert set(test["neighboring_hit_per_class"]) == {str(d) for d in range(10)}
        assert (tmp_path / "plots" / f"tsne_{rep}.png").stat().st_size > 0
    assert (tmp_path / "plots" / "pca_vs_tsne.png").exists()
    report = (tmp_path / "e4.md").read_text()
    assert "| convnet_hidden | 16 |" in report
    json.dumps(metrics)  # plain values only (the stage writes them as JSON)
    again = e4.run_e4(config(), prepared_dir, models_dir=models_dir, plots_dir=tmp_path / "plots", report_path=tmp_path / "e4.md", seed=0, progress=False)["e4"]
    assert again == metrics, "the same params give the same metrics"
