"""E7: config errors, checks at run start, linear heads on synthetic features, the three steps on a tiny scene set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import compose, errors
from helpers import flat, write_tiny_scenes

from reprodl import backbones, config, datasets, engine, hooks, io
from reprodl.experiments import e7
from reprodl.images import Images


def tiny_config(weights: str, **overrides) -> config.E7:
    """The real e7 section shrunk to a resnet18 at 32 px: 1-2 epochs, a few images, fp32."""
    return compose({
        "e7.arch": "resnet18", "e7.weights": weights, "e7.image_size": 32, "e7.max_train_images": 16,
        "e7.feature_batch_size": 8, "e7.feature_precision": "fp32",
        "e7.linear.epochs": 2, "e7.linear.batch_size": 8, "e7.linear.lr": 0.01,
        "e7.finetune.epochs": 1, "e7.finetune.batch_size": 8, "e7.finetune.lr": 0.001, "e7.finetune.max_train_images": 12,
        **overrides,
    }).e7


def test_the_real_section_gives_bce_train_configs():
    cfg = compose().e7
    assert cfg.layer == "avgpool"
    linear, finetune = e7.linear_config(cfg, seed=3), e7.finetune_config(cfg, seed=3)
    assert linear.loss == finetune.loss == "bce_with_logits" and linear.seed == finetune.seed == 3
    assert (linear.epochs, linear.lr, finetune.epochs, finetune.lr) == (cfg.linear.epochs, cfg.linear.lr, cfg.finetune.epochs, cfg.finetune.lr)


@pytest.mark.parametrize(
    "overrides, line",
    [
        ({"e7.arch": "resnet51"}, "params.yaml: e7.arch must be one of resnet50, resnet18; got 'resnet51'"),
        ({"e7.dataset": "mnist"}, "params.yaml: e7.dataset must be a multilabel dataset, got 'mnist' (multiclass)"),
        ({"e7.weights": ""}, "params.yaml: e7.weights must be 'imagenet', 'none' or the path of a weights file, got ''"),
        ({"e7.image_size": 0}, "params.yaml: e7.image_size must be >= 1, got 0"),
        ({"e7.linear.lr": -0.1}, "params.yaml: e7.linear.lr must be > 0, got -0.1"),
        ({"e7.finetune.optimizer": "sgd"},
         "params.yaml: e7.finetune.optimizer must be the linear head's optimiser (adam), as the catalogue compares them; got 'sgd'"),
        ({"e7.finetune.max_train_images": 0}, "params.yaml: e7.finetune.max_train_images must be >= 1, got 0"),
        ({"e7.feature_precision": "half"}, "params.yaml: e7.feature_precision must be one of fp32, bf16, auto; got 'half'"),
        ({"e7.feature_compile": True}, "params.yaml: e7.feature_compile must be one of auto, always, never; got True"),
        ({"e7.finetune.max_epochs": 3}, "params.yaml: e7.finetune.max_epochs is not a known key (did you mean epochs?)"),
    ],
)
def test_bad_params_get_one_line_naming_the_key(overrides, line):
    assert errors(overrides) == [line]


def test_a_layer_the_backbone_lacks_is_a_param_error_before_any_work(tmp_path):
    """The prepared folder does not exist: the layer is checked before anything is read."""
    cfg = compose({"e7.layer": "avgpol", "e7.weights": "none"}).e7
    with pytest.raises(config.ParamError) as err:
        e7.extract_features(cfg, tmp_path / "no_such_dataset", tmp_path / "features", progress=False)
    assert str(err.value) == "params.yaml: e7.layer 'avgpol' is not a module of resnet50 (e.g. avgpool, layer4, fc)"
    assert err.value.key == "e7.layer" and not (tmp_path / "features").exists()


@pytest.mark.parametrize("step", ["extract_features", "finetune"])
def test_a_missing_weights_file_names_e7_weights_before_any_work(tmp_path, step):
    cfg = compose({"e7.weights": str(tmp_path / "nope.pt")}).e7
    with pytest.raises(config.ParamError, match=r"^params.yaml: e7.weights names the weights file .*nope.pt, which does not exist") as err:
        if step == "finetune":
            e7.finetune(cfg, tmp_path / "no_such_dataset", tmp_path / "ckpt.pt", progress=False)
        else:
            e7.extract_features(cfg, tmp_path / "no_such_dataset", tmp_path / "features", progress=False)
    assert err.value.key == "e7.weights"


def test_compile_always_without_a_cpp_compiler_names_the_param_before_any_work(tmp_path, tiny_scenes, monkeypatch):
    monkeypatch.setattr(hooks, "cpp_compiler", lambda: None)
    cfg = compose({"e7.feature_compile": "always", "e7.weights": "none", "e7.arch": "resnet18"}).e7
    with pytest.raises(config.ParamError, match=r"^params.yaml: e7.feature_compile is 'always', but torch.compile needs a C\+\+ compiler") as err:
        e7.extract_features(cfg, tiny_scenes, tmp_path / "features", progress=False)
    assert err.value.key == "e7.feature_compile" and not (tmp_path / "features").exists()


@pytest.mark.skipif(hooks.cpp_compiler() is None, reason="torch.compile needs a C++ compiler (g++) for its CPU kernels")
def test_compiled_features_are_the_eager_ones(tmp_path, tiny_scenes, tiny_weights, tiny_features):
    """e7.feature_compile: always runs every split through one compiled graph (16 + 8 + 8 scenes in
    batches of 6: each split's short last batch padded to 6, the copies' features dropped)."""
    cfg = tiny_config(tiny_weights, **{"e7.feature_compile": "always", "e7.feature_batch_size": 6})
    info = e7.extract_features(cfg, tiny_scenes, tmp_path, progress=False)
    assert info["compiled"] is True and io.read_json(tmp_path / "info.json")["compiled"] is True
    for kind in e7.FEATURE_KINDS:
        eager, compiled = e7.load_features(tiny_features / f"{kind}.pt"), e7.load_features(tmp_path / f"{kind}.pt")
        for split in datasets.SPLITS:
            assert compiled[split].shape == eager[split].shape
            assert torch.allclose(compiled[split], eager[split], rtol=1e-3, atol=1e-4), (kind, split, float((compiled[split] - eager[split]).abs().max()))


def test_heads_refuse_to_start_without_the_finetune_scores(tmp_path, tiny_scenes, tiny_features):
    with pytest.raises(FileNotFoundError, match="run the e7_finetune stage first"):
        e7.run_heads(compose().e7, tiny_scenes, tiny_features, tmp_path / "missing.npz", report_path=tmp_path / "e7.md",
                     figure_path=tmp_path / "ap.png", table_path=tmp_path / "ap.csv", progress=False)
    assert not (tmp_path / "e7.md").exists()


def test_linear_head_learns_synthetic_features():
    """Features that carry the labels (plus noise) give a high mAP; noise alone does not."""
    g = torch.Generator().manual_seed(0)
    present = (torch.rand(300, 4, generator=g) < 0.4).float()
    informative = torch.cat([present * 3, torch.zeros(300, 12)], 1) + torch.randn(300, 16, generator=g)
    noise = torch.randn(300, 16, generator=g)
    cfg = engine.TrainConfig(epochs=15, batch_size=32, lr=0.01, optimizer="adam", loss="bce_with_logits")
    splits = {"train": slice(0, 200), "val": slice(200, 250), "test": slice(250, 300)}
    labels = {s: {"present": present[i], "difficult": torch.zeros_like(present[i], dtype=torch.bool)} for s, i in splits.items()}
    maps = {}
    for name, features in (("informative", informative), ("noise", noise)):
        scores, history = e7.train_linear_head({s: features[i] for s, i in splits.items()}, {s: present[i] for s, i in splits.items()}, cfg, seed=0, progress=False)
        assert len(history.train_loss) == 15 and history.precision == "fp32"
        maps[name] = e7.ap_table(scores, labels, ["a", "b", "c", "d"])["test"]["map_voc07"]
    assert maps["informative"] > 85 and maps["noise"] < 70


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    return write_tiny_scenes(tmp_path_factory.mktemp("voc"), {"train": 24, "val": 8, "test": 8}, difficult_first=True)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    backbones.save_backbone(path, "resnet18", backbones.build_backbone("resnet18", 3, seed=5), "test")
    return str(path)


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory, tiny_scenes, tiny_weights) -> Path:
    out = tmp_path_factory.mktemp("features")
    info = e7.extract_features(tiny_config(tiny_weights), tiny_scenes, out, progress=False)
    assert info["precision"] == "fp32" and info["device"] == "cpu" and info["pretrained"]["seconds"] >= 0
    assert "seconds" not in (out / "info.json").read_text(), "info.json is an output: no wall times in it"
    return out


def test_features_finetune_and_heads_on_tiny_scenes(tmp_path, tiny_scenes, tiny_weights, tiny_features):
    cfg = tiny_config(tiny_weights)
    features = e7.load_features(tiny_features / "pretrained.pt")
    assert features["train"].shape == (16, 512) and features["test"].shape == (8, 512)
    assert io.read_json(tiny_features / "info.json")["pretrained"]["dim"] == 512
    random = e7.load_features(tiny_features / "random.pt")
    assert not torch.allclose(features["test"], random["test"])  # the two backbones differ

    scores, run = e7.finetune(cfg, tiny_scenes, tmp_path / "ckpt.pt", progress=False)
    assert scores["train"].shape == (12, 3) and run["train_images"] == 12 and (tmp_path / "ckpt.pt").exists()
    assert run["precision"] == "fp32" and run["device"] == "cpu" and run["epochs"] == 1
    e7.save_finetune_scores(tmp_path / "scores.npz", scores, run)

    metrics = e7.run_heads(cfg, tiny_scenes, tiny_features, tmp_path / "scores.npz", report_path=tmp_path / "e7.md",
                           figure_path=tmp_path / "ap.png", table_path=tmp_path / "ap.csv", progress=False)
    tree = metrics["e7"]
    assert list(tree) == [*e7.MODELS, "features"]
    for model in e7.MODELS:
        assert set(tree[model]) == {"train_images", "precision", "device", "seconds", "train", "test"}, "headline numbers only, no per-class AP"
        assert tree[model]["precision"] == "fp32" and tree[model]["device"] == "cpu"
        for split in ("train", "test"):
            assert set(tree[model][split]) == {"map_voc07", "map_sklearn"}
            assert 0 <= tree[model][split]["map_voc07"] <= 100 and 0 <= tree[model][split]["map_sklearn"] <= 100
    assert tree["finetuned"]["train_images"] == 12 and tree["linear_pretrained"]["train_images"] == 16
    # Not just a range: the finetuned model's test mAP is sklearn's, difficult images left out, on its saved scores.
    from sklearn.metrics import average_precision_score

    saved, test = io.load_npz(tmp_path / "scores.npz"), datasets.load_split(tiny_scenes, "test")
    kept = [~test.difficult[:, k].astype(bool) for k in range(3)]
    aps = [average_precision_score(test.y[keep, k], saved["test"][keep, k]) for k, keep in enumerate(kept) if test.y[keep, k].any()]
    assert tree["finetuned"]["test"]["map_sklearn"] == pytest.approx(100 * np.mean(aps), abs=0.006)
    assert tree["features"] == {"precision": "fp32", "compiled": False, "device": "cpu"}, "the metrics say how the features were computed, and where"
    assert len(flat(tree)) <= 29  # each model's precision and device included (and 3 wall times, which the stage moves to timings/)

    with open(tmp_path / "ap.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 * 3, "model x split x AP definition x class"
    assert {r["class"] for r in rows} == {"a", "b", "c"} and {r["method"] for r in rows} == {"voc07", "sklearn"}
    test_voc07 = [float(r["ap"]) for r in rows if r["model"] == "finetuned" and r["split"] == "test" and r["method"] == "voc07"]
    assert np.nanmean(test_voc07) == pytest.approx(tree["finetuned"]["test"]["map_voc07"], abs=0.01)

    report = (tmp_path / "e7.md").read_text()
    assert "extracted in fp32" in report
    assert "83.40" in report and "87.23" in report and "difficult" in report
    assert "bce_with_logits" in report, "the report shows the TrainConfigs that ran"
    assert (tmp_path / "ap.png").stat().st_size > 0



def test_scenes_stay_uint8_at_their_stored_size(tiny_scenes):
    """VOC2007 at 224 px is 1.4 GiB as uint8 and 5.6 GiB as float32: the scenes are converted per batch."""
    scenes = e7.load_scenes(tiny_scenes, 48, max_train_images=10)
    stored = datasets.load_split(tiny_scenes, "train").x
    for split, n in {"train": 10, "val": 8, "test": 8}.items():
        x = scenes[split]["x"]
        assert isinstance(x, Images) and x.pixels.dtype == torch.uint8 and x.pixels.shape[2:] == stored.shape[2:]
        assert x.shape == (n, 3, 48, 48) and len(scenes[split]["present"]) == n
    assert torch.equal(scenes["train"]["x"].pixels, torch.from_numpy(stored[scenes["train"]["index"].numpy()]))
