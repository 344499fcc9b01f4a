"""E7: params checks, linear heads on synthetic features, the three steps on a tiny scene set."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reprodl import backbones, engine, io
from reprodl.experiments import e7
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


def section(**changes) -> dict:
    out = copy.deepcopy(PARAMS["e7"])
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = out
        for key in parents:
            node = node[key]
        node[leaf] = value
    return out


def test_the_real_section_passes():
    cfg = e7.check_params(PARAMS["e7"], DATA, 0)
    assert cfg["layer"] == "avgpool" and cfg["linear"].loss == cfg["finetune"].loss == "bce_with_logits"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arch": "resnet51"}, "e7.arch must be one of resnet18, resnet50"),
        ({"dataset": "mnist"}, "e7.dataset must be a multilabel dataset"),
        ({"weights": ""}, "e7.weights must be 'imagenet', 'none' or the path"),
        ({"image_size": 0}, "e7.image_size must be an integer >= 1"),
        ({"linear__lr": -0.1}, "e7.linear.lr must be a number > 0"),
        ({"finetune__optimizer": "sgd"}, "e7.finetune.optimizer must be the linear head's optimiser"),
        ({"finetune__max_train_images": 0}, "e7.finetune.max_train_images must be an integer >= 1"),
        ({"feature_precision": "half"}, "e7.feature_precision must be one of fp32, bf16, auto"),
    ],
)
def test_bad_params_are_named(changes, message):
    with pytest.raises(ParamError, match=message):
        e7.check_params(section(**changes), DATA, 0)


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
        scores = e7.train_linear_head({s: features[i] for s, i in splits.items()}, {s: present[i] for s, i in splits.items()}, cfg, seed=0, progress=False)
        maps[name] = e7.ap_table(scores, labels, ["a", "b", "c", "d"])["test"]["map_voc07"]
    assert maps["informative"] > 85 and maps["noise"] < 70


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    """A prepared multi-label set in the real format: 3x32x32 scenes, 3 classes, a bright patch per class."""
    root = tmp_path_factory.mktemp("voc")
    rng = np.random.default_rng(0)
    sizes = {"train": 24, "val": 8, "test": 8}
    for split, n in sizes.items():
        present = (rng.random((n, 3)) < 0.5).astype(np.uint8)
        present[present.sum(1) == 0, 0] = 1
        x = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.uint8)
        for k in range(3):
            x[present[:, k] == 1, k, 8 * k : 8 * k + 8, 8:24] = 255
        difficult = np.zeros_like(present)
        difficult[0, np.argmax(present[0])] = 1
        io.save_npz(root / f"{split}.npz", x=x, y=present, difficult=difficult)
    io.write_json(root / "meta.json", {"name": "voc2007", "profile": "embedded", "source": "test scenes", "task": "multilabel",
                                      "classes": ["a", "b", "c"], "image_shape": [3, 32, 32], "sizes": sizes})
    return root


def test_features_finetune_and_heads_on_tiny_scenes(tmp_path, tiny_scenes):
    weights = tmp_path / "resnet18.pt"
    backbones.save_backbone(weights, "resnet18", backbones.build_backbone("resnet18", 3, seed=5), "test")
    raw = section(arch="resnet18", weights=str(weights), image_size=32, max_train_images=16, feature_batch_size=8, feature_precision="fp32",
                  linear={"epochs": 2, "batch_size": 8, "lr": 0.01, "optimizer": "adam"},
                  finetune={"epochs": 1, "batch_size": 8, "lr": 0.001, "optimizer": "adam", "max_train_images": 12})
    cfg = e7.check_params(raw, {**DATA, "datasets": ["voc2007"]}, 0)
    info = e7.extract_features(cfg, tiny_scenes, tmp_path / "features", progress=False)
    assert info["precision"] == "fp32"
    features = e7.load_features(tmp_path / "features" / "pretrained.pt")
    assert info["pretrained"]["dim"] == 512 and features["train"].shape == (16, 512) and features["test"].shape == (8, 512)
    random = e7.load_features(tmp_path / "features" / "random.pt")
    assert not torch.allclose(features["test"], random["test"])  # the two backbones differ

    scores, run = e7.finetune(cfg, tiny_scenes, tmp_path / "ckpt.pt", progress=False)
    assert scores["train"].shape == (12, 3) and run["train_images"] == 12 and (tmp_path / "ckpt.pt").exists()
    io.save_npz(tmp_path / "scores.npz", **{s: v.numpy() for s, v in scores.items()}, train_index=run["train_index"].numpy(), seconds=run["seconds"])

    metrics = e7.run_heads(cfg, tiny_scenes, tmp_path / "features", tmp_path / "scores.npz",
                           report_path=tmp_path / "e7.md", figure_path=tmp_path / "ap.png", progress=False)
    for model in e7.MODELS:
        for split in ("train", "test"):
            row = metrics["e7"][model][split]
            assert 0 <= row["map_voc07"] <= 100 and 0 <= row["map_sklearn"] <= 100
            assert set(row["ap_voc07"]) == {"a", "b", "c"}
    assert metrics["e7"]["features"]["precision"] == "fp32", "the metrics say what the features were computed in"
    report = (tmp_path / "e7.md").read_text()
    assert "extracted in fp32" in report
    assert "83.40" in report and "87.23" in report and "difficult" in report
    assert (tmp_path / "ap.png").stat().st_size > 0
