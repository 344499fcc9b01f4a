"""E8 and the pretrain stage's library: variants' trainable parameters, the count, params checks, a tiny run."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprodl import backbones, io, models
from reprodl.experiments import e8, pretrain
from reprodl.params import ParamError, check_data

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = check_data(PARAMS["data"])


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("w") / "resnet18.pt"
    backbones.save_backbone(path, "resnet18", backbones.build_backbone("resnet18", 10, seed=7), "test")
    return str(path)


def test_resnet18_one_channel_ten_classes_has_the_reference_count(weights):
    for variant in e8.VARIANTS:
        assert models.count_parameters(e8.build_variant(variant, "resnet18", weights, 10, seed=0)) == e8.N_PARAMS == 11_175_370


def test_variants_train_the_right_parameters(weights):
    scratch = e8.build_variant("scratch", "resnet18", weights, 10, seed=0)
    full = e8.build_variant("pretrained_all", "resnet18", weights, 10, seed=0)
    frozen = e8.build_variant("pretrained_layer4", "resnet18", weights, 10, seed=0)
    assert e8.count_trainable(scratch) == e8.count_trainable(full) == 11_175_370
    trained = {name.split(".")[0] for name, p in frozen.named_parameters() if p.requires_grad}
    assert trained == {"layer4", "fc"}
    assert e8.count_trainable(frozen) == sum(p.numel() for p in frozen.layer4.parameters()) + 512 * 10 + 10
    # Pretrained variants carry the file's weights (the stem summed over RGB); scratch does not.
    source = backbones.load_backbone("resnet18", weights)
    assert (full.layer1[0].conv1.weight == source.layer1[0].conv1.weight).all()
    assert (full.conv1.weight == source.conv1.weight.sum(1, keepdim=True)).all()
    assert not (scratch.layer1[0].conv1.weight == source.layer1[0].conv1.weight).all()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arch": "resnet50"}, "e8.arch must be one of resnet18"),
        ({"variants": ["scratch", "imagenet_all"]}, r"e8.variants\[1\] must be one of scratch"),
        ({"variants": []}, "e8.variants must be a non-empty list"),
        ({"weights": 3}, "e8.weights must be 'imagenet'"),
        ({"train": {"epochs": 1, "batch_size": 8, "lr": 0.0, "optimizer": "adam"}}, "e8.train.lr must be a number > 0"),
        ({"train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "optimizer": "rmsprop"}}, "e8.train.optimizer must be one of"),
        ({"image_size": 2.5}, "e8.image_size must be an integer >= 1"),
    ],
)
def test_bad_e8_params_are_named(changes, message):
    with pytest.raises(ParamError, match=message):
        e8.check_params({**copy.deepcopy(PARAMS["e8"]), **changes}, DATA, 0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dataset": "mnist"}, "pretrain.dataset must be one of stanford_dogs, usps .*shares no image"),
        ({"archs": ["vgg16"]}, r"pretrain.archs\[0\] must be one of resnet18, resnet50"),
        ({"max_images": -1}, "pretrain.max_images must be an integer >= 1"),
    ],
)
def test_bad_pretrain_params_are_named(changes, message):
    with pytest.raises(ParamError, match=message):
        pretrain.check_params({**copy.deepcopy(PARAMS["pretrain"]), **changes}, DATA, 0)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParamError, match="e8.weights names the weights file .*nope.pt, which does not exist"):
        e8.build_variant("pretrained_all", "resnet18", str(tmp_path / "nope.pt"), 10, seed=0)


def test_tiny_run_reports_every_variant_and_the_best(tmp_path, weights):
    root = tmp_path / "mnist"
    rng = np.random.default_rng(0)
    sizes = {"train": 20, "val": 10, "test": 10}
    for split, n in sizes.items():
        io.save_npz(root / f"{split}.npz", x=rng.integers(0, 255, (n, 1, 28, 28)).astype(np.uint8), y=np.arange(n) % 10)
    io.write_json(root / "meta.json", {"name": "mnist", "profile": "embedded", "source": "test", "classes": [str(d) for d in range(10)],
                                      "image_shape": [1, 28, 28], "sizes": sizes})
    raw = {**copy.deepcopy(PARAMS["e8"]), "weights": weights, "image_size": 16, "max_train_images": 16,
           "train": {"epochs": 1, "batch_size": 8, "lr": 0.001, "optimizer": "adam"}}
    cfg = e8.check_params(raw, DATA, 0)
    metrics = e8.run_e8(cfg, root, report_path=tmp_path / "e8.md", summary_path=tmp_path / "summary.txt", progress=False)["e8"]
    assert set(metrics) == {*e8.VARIANTS, "best"}
    assert metrics["pretrained_layer4"]["n_trainable"] < metrics["scratch"]["n_trainable"] == 11_175_370
    assert max(metrics[v]["val"]["accuracy"] for v in e8.VARIANTS) == metrics["best"]["val"]["accuracy"]
    assert "11,175,370" in (tmp_path / "summary.txt").read_text()
    assert "Best by val" in (tmp_path / "e8.md").read_text()


def test_pretrain_source_images_are_rgb_at_the_asked_size(tmp_path):
    root = tmp_path / "usps"
    io.save_npz(root / "train.npz", x=np.zeros((12, 1, 8, 8), np.uint8), y=np.arange(12) % 3)
    x, y = pretrain.source_images(root, 16, 6, seed=0)
    assert x.shape == (6, 3, 16, 16) and len(y) == 6
