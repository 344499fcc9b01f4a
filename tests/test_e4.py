"""E4 on the real embedded MNIST, shrunk (30 test images), through small seeded E1-style models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from configs import compose, errors

from reprodl import config, datasets, engine, manifold, models
from reprodl.experiments import e4


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models/e1-like folder holding mlp.pt and convnet.pt (seeded, untrained: E4 only reads them)."""
    root = tmp_path_factory.mktemp("e4_models")
    for name, spec in {
        "mlp": {"kind": "mlp", "n_inputs": 784, "hidden": 16, "n_classes": 10},
        "convnet": {"kind": "convnet", "channels": [4, 8], "hidden": 16, "n_classes": 10},
    }.items():
        models.save_model(root / f"{name}.pt", spec, models.build_model(spec, seed=0))
    return root


def shrunk_config(**overrides) -> config.E4:
    """The real e4 section with a perplexity the 30 test images allow, plus dotted-key overrides."""
    return compose({"e4.tsne.perplexity": 5, **overrides}).e4


def run(cfg, prepared_dir, models_dir, out: Path) -> dict:
    return e4.run_e4(cfg, prepared_dir, models_dir=models_dir, figures_dir=out / "plots", tables_dir=out / "plots", report_path=out / "e4.md", seed=0, progress=False)


def test_the_real_section_is_valid():
    cfg = compose().e4
    assert [(ref.model, ref.layer) for ref in cfg.layers] == [("mlp", "hidden"), ("mlp", "logits"), ("convnet", "hidden"), ("convnet", "logits")]
    assert cfg.neighbors == 6 and cfg.tsne.perplexity == 30 and cfg.tsne.n_jobs == 1


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e4.tsne.perplexity": 0}, "params.yaml: e4.tsne.perplexity must be > 0, got 0"),
        ({"e4.tsne.perplexity": -5}, "params.yaml: e4.tsne.perplexity must be > 0, got -5"),
        ({"e4.tsne.perplexity": "thirty"}, "params.yaml: e4.tsne.perplexity must be a number, got 'thirty'"),
        ({"e4.tsne.n_jobs": 0}, "params.yaml: e4.tsne.n_jobs must be >= 1, got 0"),
        ({"e4.neighbors": 0}, "params.yaml: e4.neighbors must be >= 1, got 0"),
        ({"e4.layers": [{"model": "mlp"}]}, "params.yaml: e4.layers[0].layer is missing"),
        ({"e4.layers": [{"model": "../x", "layer": "hidden"}]}, "params.yaml: e4.layers[0].model must be a plain name (letters, digits, _), got '../x'"),
        ({"e4.layers": []}, "params.yaml: e4.layers must list at least 1 item(s), got []"),
        ({"e4.layers.1.lyer": "x"}, "params.yaml: e4.layers[1].lyer is not a known key (did you mean layer?)"),
        ({"e4.layers": [{"model": "mlp", "layer": "hidden"}] * 2}, "params.yaml: e4.layers lists a layer twice: [('mlp', 'hidden'), ('mlp', 'hidden')]"),
        ({"e4.dataset": "digit_scenes"}, "params.yaml: e4.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
    ],
)
def test_bad_params_get_one_line_naming_the_key(overrides, expected):
    assert errors(overrides) == [expected]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"e4.tsne.perplexity": 30}, r"^params\.yaml: e4\.tsne\.perplexity must be at most the number of test images - 1 \(29: 30 in .*\), got 30$"),
        ({"e4.tsne.perplexity": 29.5}, r"^params\.yaml: e4\.tsne\.perplexity must be at most the number of test images - 1 \(29"),
        ({"e4.neighbors": 30}, r"^params\.yaml: e4\.neighbors must be below the number of test images \(30 in .*\), got 30$"),
        (
            {"e4.layers": [{"model": "mlp", "layer": "hidden"}, {"model": "convnet", "layer": "hiden"}]},
            r"^params\.yaml: e4\.layers\[1\]\.layer is 'hiden': .*convnet\.pt: the model has no module named 'hiden'; did you mean hidden",
        ),
        ({"e4.layers": [{"model": "resnet", "layer": "fc"}]}, r"^params\.yaml: e4\.layers\[0\]\.model is 'resnet', but there is no .*resnet\.pt \(available: convnet, mlp\)$"),
    ],
)
def test_what_needs_the_files_is_a_param_error_before_any_work(prepared_mnist, models_dir, tmp_path, overrides, message):
    cfg = shrunk_config(**overrides)  # valid on its own: only the files refute it
    with pytest.raises(config.ParamError, match=message) as err:
        run(cfg, prepared_mnist, models_dir, tmp_path)
    assert err.value.key == message.split(" ")[1].replace("\\", "")
    assert not (tmp_path / "plots").exists() and not (tmp_path / "e4.md").exists()


def test_models_that_cannot_read_the_dataset_are_named_before_any_work(tmp_path_factory, models_dir, tmp_path):
    """e4.dataset sklearn_digits (8 x 8 images) through E1 models trained on 28 x 28 MNIST."""
    root = tmp_path_factory.mktemp("digits")
    datasets.fetch("sklearn_digits", "embedded", root / "raw")
    datasets.prepare("sklearn_digits", "embedded", root / "raw", root / "prepared", fractions=(0.8, 0.1, 0.1), seed=0, max_images=300)
    with pytest.raises(config.ParamError, match=r"^params\.yaml: e4\.dataset is 'sklearn_digits', whose \(1, 8, 8\) images .*mlp\.pt cannot read"):
        run(shrunk_config(**{"e4.dataset": "sklearn_digits"}), root / "prepared", models_dir, tmp_path)
    assert not (tmp_path / "plots").exists()


def test_run_e4_maps_every_representation_and_writes_its_outputs(prepared_mnist, models_dir, tmp_path):
    metrics = run(shrunk_config(), prepared_mnist, models_dir, tmp_path)["e4"]
    assert metrics.pop("seconds") >= 0  # the stage moves it to timings/e4.json
    reps = ["pixels", "mlp_hidden", "mlp_logits", "convnet_hidden", "convnet_logits"]
    assert list(metrics) == reps
    assert all(set(metrics[rep]) == {"test"} and set(metrics[rep]["test"]) == {"neighboring_hit", "neighboring_hit_pca"} for rep in reps)
    json.dumps(metrics)  # plain values only (the stage writes them as JSON)

    # The pixels' numbers are those of the maps of the raw test images.
    test = datasets.load_split(prepared_mnist, "test")
    pixels = engine.to_tensor_images(test.x).flatten(1).numpy()
    for method, key in (("tsne", "neighboring_hit"), ("pca", "neighboring_hit_pca")):
        assert metrics["pixels"]["test"][key] == manifold.project(pixels, test.y, method, perplexity=5, seed=0, k=6).hit

    # The table: per representation x method, an "all" row (the metric) and one per class.
    with open(tmp_path / "plots" / "neighboring_hit.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(reps) * 2 * 11
    dims = {r["representation"]: int(r["dims"]) for r in rows}
    assert dims == {"pixels": 784, "mlp_hidden": 16, "mlp_logits": 10, "convnet_hidden": 16, "convnet_logits": 10}
    assert {(r["representation"], r["model"], r["layer"]) for r in rows} >= {("pixels", "", ""), ("convnet_hidden", "convnet", "hidden")}
    counts = np.bincount(test.y, minlength=10)
    for rep in reps:
        for method, key in (("tsne", "neighboring_hit"), ("pca", "neighboring_hit_pca")):
            hits = {r["class"]: float(r["neighboring_hit"]) for r in rows if (r["representation"], r["method"]) == (rep, method)}
            assert hits.pop("all") == pytest.approx(metrics[rep]["test"][key], abs=1e-6)
            # the overall hit is the per-class hits weighted by the class sizes
            assert sum(counts[int(c)] * h for c, h in hits.items()) / counts.sum() == pytest.approx(metrics[rep]["test"][key], abs=1e-5)

    for rep in reps:
        assert (tmp_path / "plots" / f"tsne_{rep}.png").stat().st_size > 0
    assert (tmp_path / "plots" / "pca_vs_tsne.png").stat().st_size > 0
    report = (tmp_path / "e4.md").read_text()
    assert f"| convnet_hidden | 16 | {metrics['convnet_hidden']['test']['neighboring_hit']:.4f} |" in report
    assert "perplexity 5)" in report and "plots/e4/tables/neighboring_hit.csv" in report

    again = run(shrunk_config(), prepared_mnist, models_dir, tmp_path)["e4"]
    again.pop("seconds")
    assert again == metrics, "the same params give the same metrics"
    other = run(shrunk_config(**{"e4.tsne.perplexity": 8}), prepared_mnist, models_dir, tmp_path / "other")["e4"]
    assert any(other[rep]["test"]["neighboring_hit"] != metrics[rep]["test"]["neighboring_hit"] for rep in reps), "e4.tsne.perplexity reaches t-SNE"
