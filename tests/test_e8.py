"""E8 and the pretrain stage's library: variants' trainable parameters, the count, config errors, tiny runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from configs import DELETE, compose, errors
from helpers import RecordingTracker, flat

from reprodl import backbones, config, io, models
from reprodl.experiments import e8, pretrain
from reprodl.images import Images, prepare_images


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
    "overrides, line",
    [
        ({"e8.arch": "resnet50"}, "params.yaml: e8.arch must be one of resnet18; got 'resnet50'"),
        ({"e8.variants": ["scratch", "imagenet_all"]},
         "params.yaml: e8.variants[1] must be one of scratch, pretrained_all, pretrained_layer4; got 'imagenet_all'"),
        ({"e8.variants": []}, "params.yaml: e8.variants must list at least 1 item(s), got []"),
        ({"e8.variants": ["scratch", "scratch"]}, "params.yaml: e8.variants lists a value twice: ['scratch', 'scratch']"),
        ({"e8.weights": 3}, "params.yaml: e8.weights must be a string, got 3"),
        ({"e8.weights": ""}, "params.yaml: e8.weights must be 'imagenet', 'none' or the path of a weights file, got ''"),
        ({"e8.train.lr": 0.0}, "params.yaml: e8.train.lr must be > 0, got 0.0"),
        ({"e8.train.optimizer": "rmsprop"}, "params.yaml: e8.train.optimizer must be one of sgd, adam, adamw, adadelta; got 'rmsprop'"),
        ({"e8.image_size": 2.5}, "params.yaml: e8.image_size must be an integer, got 2.5"),
        ({"e8.dataset": "digit_scenes"}, "params.yaml: e8.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
    ],
)
def test_bad_e8_params_get_one_line_naming_the_key(overrides, line):
    assert errors(overrides) == [line]


@pytest.mark.parametrize(
    "overrides, line",
    [
        ({"pretrain.dataset": "mnist"},
         "params.yaml: pretrain.dataset must be one of colour_digits, sklearn_digits, stanford_dogs, usps "
         "(a source that shares no image with the targets of E7 and E8); got 'mnist'"),
        ({"pretrain.archs": ["vgg16"]}, "params.yaml: pretrain.archs[0] must be one of resnet50, resnet18, mobilenetv2_100, mobilenetv2_050, vit_micro_patch8; got 'vgg16'"),
        ({"pretrain.max_images": -1}, "params.yaml: pretrain.max_images must be >= 1, got -1"),
        ({"pretrain.resnet18": DELETE},
         "params.yaml: pretrain.resnet18 is missing: pretrain.archs lists resnet18, which needs its training block"),
        ({"pretrain.resnet50.lr": 0}, "params.yaml: pretrain.resnet50.lr must be > 0, got 0"),
    ],
)
def test_bad_pretrain_params_get_one_line_naming_the_key(overrides, line):
    assert errors(overrides) == [line]


def test_missing_weights_file_names_e8_weights_before_any_work(tmp_path):
    """The prepared folder does not exist either: the weights are checked first."""
    cfg = compose({"e8.weights": str(tmp_path / "nope.pt")}).e8
    with pytest.raises(config.ParamError, match=r"^params.yaml: e8.weights names the weights file .*nope.pt, which does not exist") as err:
        e8.run_e8(cfg, tmp_path / "no_such_dataset", report_path=tmp_path / "e8.md", summary_path=tmp_path / "s.txt", progress=False)
    assert err.value.key == "e8.weights" and not (tmp_path / "e8.md").exists()


def test_scratch_alone_needs_no_weights_file(tmp_path):
    cfg = compose({"e8.weights": str(tmp_path / "nope.pt"), "e8.variants": ["scratch"]}).e8
    with pytest.raises(FileNotFoundError):  # it got past the weights check, to the (missing) data
        e8.run_e8(cfg, tmp_path / "no_such_dataset", report_path=tmp_path / "e8.md", summary_path=tmp_path / "s.txt", progress=False)


def tiny_mnist(root: Path) -> Path:
    rng = np.random.default_rng(0)
    sizes = {"train": 20, "val": 10, "test": 10}
    for split, n in sizes.items():
        io.save_npz(root / f"{split}.npz", x=rng.integers(0, 255, (n, 1, 28, 28)).astype(np.uint8), y=np.arange(n) % 10)
    io.write_json(root / "meta.json", {"name": "mnist", "profile": "embedded", "source": "test", "classes": [str(d) for d in range(10)],
                                      "image_shape": [1, 28, 28], "sizes": sizes})
    return root


def test_tiny_run_reports_every_variant_and_the_best(tmp_path, weights):
    cfg = compose({"e8.weights": weights, "e8.image_size": 16, "e8.max_train_images": 16, "e8.train.epochs": 1, "e8.train.batch_size": 8,
                   "e8.train.max_batches": 1}).e8
    tracker = RecordingTracker()
    metrics = e8.run_e8(cfg, tiny_mnist(tmp_path / "mnist"), report_path=tmp_path / "e8.md", summary_path=tmp_path / "summary.txt",
                        tracker=tracker, progress=False)["e8"]
    assert list(metrics) == ["n_params", *e8.VARIANTS, "best"]
    assert metrics["n_params"] == 11_175_370
    for variant in e8.VARIANTS:
        assert set(metrics[variant]) == {"n_trainable", "precision", "device", "seconds", "train", "val", "test"}
        assert {split: set(metrics[variant][split]) for split in ("train", "val", "test")} == {s: {"accuracy"} for s in ("train", "val", "test")}
        assert metrics[variant]["precision"] == "fp32" and metrics[variant]["device"] == "cpu"
    assert metrics["pretrained_layer4"]["n_trainable"] < metrics["scratch"]["n_trainable"] == 11_175_370
    best = metrics["best"]
    assert best["val"]["accuracy"] == max(metrics[v]["val"]["accuracy"] for v in e8.VARIANTS) == metrics[best["variant"]]["val"]["accuracy"]
    assert best["test"]["accuracy"] == metrics[best["variant"]]["test"]["accuracy"]
    assert len(flat(metrics)) <= 25
    assert [m for m, _, _ in tracker.epochs] == list(e8.VARIANTS) and [c[:2] for c in tracker.confusions] == [(v, 10) for v in e8.VARIANTS]
    assert "11,175,370" in (tmp_path / "summary.txt").read_text()
    report = (tmp_path / "e8.md").read_text()
    assert "Best by val" in report and "train 16 of 20" in report


def test_pretrain_source_images_are_rgb_at_the_asked_size(tmp_path):
    root = tmp_path / "sklearn_digits"
    io.save_npz(root / "train.npz", x=np.zeros((12, 1, 8, 8), np.uint8), y=np.arange(12) % 3)
    x, y = pretrain.source_images(root, 16, 6, seed=0)
    assert x.shape == (6, 3, 16, 16) and len(y) == 6


@pytest.mark.parametrize("channels", [1, 3])
def test_pretrain_source_images_converted_in_chunks_equal_the_split_converted_whole(tmp_path, monkeypatch, channels):
    root = tmp_path / "source"
    pixels = np.random.default_rng(0).integers(0, 256, (11, channels, 20, 20), dtype=np.uint8)
    io.save_npz(root / "train.npz", x=pixels, y=np.arange(11) % 3)
    monkeypatch.setattr(pretrain, "CONVERT_ROWS", 4)  # 4 + 4 + 3 rows
    x, _ = pretrain.source_images(root, 32, None, seed=0, arch="resnet18")
    whole = torch.from_numpy(pixels).float().div(255).expand(-1, 3, -1, -1)  # grey: the same image in R, G and B
    assert torch.equal(x, prepare_images(whole, 32, *backbones.input_stats("resnet18")))


def test_tiny_pretrain_saves_a_backbone_that_loads(tmp_path):
    root = tmp_path / "colour_digits"
    rng = np.random.default_rng(0)
    for split, n in {"train": 16, "val": 8, "test": 8}.items():
        io.save_npz(root / f"{split}.npz", x=rng.integers(0, 255, (n, 3, 16, 16)).astype(np.uint8), y=np.arange(n) % 4)
    io.write_json(root / "meta.json", {"name": "colour_digits", "classes": ["0", "1", "2", "3"], "image_shape": [3, 16, 16]})
    cfg = compose({"pretrain.archs": ["resnet18"], "pretrain.image_size": 16, "pretrain.max_images": 12,
                   "pretrain.resnet18.epochs": 1, "pretrain.resnet18.batch_size": 4, "pretrain.resnet18.max_batches": 2}).pretrain
    metrics = pretrain.run_pretrain(cfg, root, tmp_path / "models", seed=0, progress=False)["pretrain"]
    assert list(metrics) == ["resnet18"]
    assert set(metrics["resnet18"]) == {"n_images", "precision", "device", "seconds", "train", "val"} and metrics["resnet18"]["n_images"] == 12
    assert metrics["resnet18"]["precision"] == "fp32" and metrics["resnet18"]["device"] == "cpu"
    assert not (tmp_path / "models" / "resnet50.pt").exists(), "only the listed archs are trained"
    model = backbones.load_backbone("resnet18", str(tmp_path / "models" / "resnet18.pt"))
    assert model.fc.out_features == 4
    assert not torch.equal(model.conv1.weight, backbones.build_backbone("resnet18", 4, seed=0).conv1.weight), "trained, not the init"
    # Random images cannot be learned: instead of a range, the val accuracy is the saved model's, recomputed.
    val_x, val_y = pretrain.source_images(root, 16, None, 0, "val")
    with torch.no_grad():
        predicted = model.eval()(val_x).argmax(1)
    assert len(val_y) == 8 and metrics["resnet18"]["val"]["accuracy"] == pytest.approx(float((predicted == val_y).float().mean()), abs=1e-6)



def test_e8_trains_on_the_uint8_images_converted_per_batch(tmp_path, weights, monkeypatch):
    """At 224 px all of MNIST as float32 would be 13 GiB: E8 keeps the 28 px uint8 and resizes each batch."""
    seen = []
    real_fit = e8.engine.fit
    monkeypatch.setattr(e8.engine, "fit", lambda model, train, val, *a, **k: seen.append((train[0], val[0])) or real_fit(model, train, val, *a, **k))
    cfg = compose({"e8.weights": weights, "e8.variants": ["scratch"], "e8.image_size": 40, "e8.max_train_images": 16, "e8.train.epochs": 1,
                   "e8.train.batch_size": 8, "e8.train.max_batches": 1}).e8
    e8.run_e8(cfg, tiny_mnist(tmp_path / "mnist"), report_path=tmp_path / "e8.md", summary_path=tmp_path / "summary.txt", progress=False)
    (train, val), = seen
    for x, n in ((train, 16), (val, 10)):
        assert isinstance(x, Images) and x.pixels.dtype == torch.uint8 and tuple(x.pixels.shape) == (n, 1, 28, 28)
        assert x.shape == (n, 1, 40, 40)
