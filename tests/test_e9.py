"""E9: the digit-pair stand-in, the timm backbones through the one loader, the subset draw,
the probability confusion matrix, bad params, and tiny runs in both profiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from configs import FULL_PROFILE, compose
from fakes import DOGS_FAKE_BREEDS, serve_directory, write_dogs_tar
from helpers import RecordingTracker
from reprodl import backbones, datasets, scenes
from reprodl.config import ConfigError, ParamError
from reprodl.images import IMAGENET_MEAN, IMAGENET_STD, Images
from reprodl.experiments import e9


# --------------------------------------------------------------------------- the stand-in


def _blank_and_square_digits() -> tuple[np.ndarray, np.ndarray]:
    """Label 0: an empty 28x28 glyph; label 1: a full white square. Two of each."""
    x = np.zeros((4, 1, 28, 28), dtype=np.uint8)
    x[2:] = 255
    return x, np.array([0, 0, 1, 1])


def test_digit_pairs_draw_the_tens_digit_left_and_the_units_digit_right():
    x, y = _blank_and_square_digits()
    images, labels = scenes.make_digit_pairs(x, y, 2, 3, size=32, seed=0)  # classes "00" and "01"
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    ink_spread = images.astype(float).std(axis=2).max(1)  # (N, W): per column, how much its pixels vary (any channel)
    left, right = ink_spread[:, :14].max(1), ink_spread[:, 18:].max(1)
    assert (left < 1).all(), "the tens digit of 00 and 01 is 0 (blank): the left part is plain background"
    assert (right[labels == 1] > 20).all() and (right[labels == 0] < 1).all(), "only class 01 has ink on the right"


def test_digit_pairs_are_a_function_of_the_seed_and_balanced():
    x, y = _blank_and_square_digits()
    a, ya = scenes.make_digit_pairs(x, y, 2, 5, seed=3)
    b, _ = scenes.make_digit_pairs(x, y, 2, 5, seed=3)
    c, _ = scenes.make_digit_pairs(x, y, 2, 5, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(ya).tolist() == [5, 5]
    assert scenes.pair_class_names(12)[:3] == ["00", "01", "02"] and scenes.pair_class_names(12)[11] == "11"
    with pytest.raises(ValueError, match="no digit of label"):
        scenes.make_digit_pairs(x, y, 3, 1)  # class "02" needs a digit 2


def test_each_digit_pairs_split_is_made_of_the_matching_mnist_splits_digits(tmp_path, monkeypatch):
    """The leakage rule: pretraining sees MNIST train digits only, so E9's val and test pairs
    must be composed of MNIST val and test digits, exactly the ones prepare@mnist puts there."""
    raw = tmp_path / "raw"
    datasets.fetch("mnist", "embedded", raw / "mnist")
    datasets.fetch("digit_pairs", "embedded", raw / "digit_pairs")
    fractions = (0.8, 0.1, 0.1)
    datasets.prepare("mnist", "embedded", raw / "mnist", tmp_path / "mnist", fractions=fractions, seed=0, max_images=400)
    given: list[np.ndarray] = []
    real = scenes.make_digit_pairs
    monkeypatch.setattr(scenes, "make_digit_pairs", lambda digits, *a, **k: given.append(digits.copy()) or real(digits, *a, **k))
    meta = datasets.prepare(
        "digit_pairs", "embedded", raw / "digit_pairs", tmp_path / "pairs", fractions=fractions, seed=0, max_images=400,
        pair_options={"classes": 20, "per_class": 8}, fine_grained_fractions=(0.5, 0.25, 0.25),
    )
    assert len(given) == 3
    for digits, split in zip(given, datasets.SPLITS):
        mnist = datasets.load_split(tmp_path / "mnist", split).x
        assert {d.tobytes() for d in digits} == {d.tobytes() for d in mnist}, f"{split} pairs drawn from MNIST {split} only"
    assert meta["sizes"] == {"train": 80, "val": 40, "test": 40} and meta["fractions"] == [0.5, 0.25, 0.25]
    assert meta["classes"][:2] == ["00", "01"]


# --------------------------------------------------------------------------- timm backbones


def test_a_pretrained_timm_file_loads_through_timms_path_with_a_new_head(tmp_path):
    source = backbones.build_backbone("vit_micro_patch8", 10, seed=1, image_size=32)
    backbones.save_backbone(tmp_path / "vit.pt", "vit_micro_patch8", source, "test")
    loaded = backbones.load_timm_backbone("vit_micro_patch8", str(tmp_path / "vit.pt"), 7, image_size=32, seed=0)
    assert loaded.head.out_features == 7
    src, dst = source.state_dict(), loaded.state_dict()
    body = [k for k in src if not k.startswith("head.")]
    assert body and all(torch.equal(src[k], dst[k]) for k in body), "every weight but the head comes from the file"
    fresh = backbones.load_timm_backbone("vit_micro_patch8", "none", 7, image_size=32, seed=0)
    assert not torch.equal(fresh.blocks[0].attn.qkv.weight, loaded.blocks[0].attn.qkv.weight)


def test_a_timm_file_of_another_arch_is_refused_naming_the_key(tmp_path):
    other = backbones.build_backbone("mobilenetv2_100", 10, seed=0)
    backbones.save_backbone(tmp_path / "mnv2.pt", "mobilenetv2_100", other, "test")
    with pytest.raises(backbones.BackboneError, match=r"e9\.vit\.weights names .*mnv2\.pt, which has no head\.weight"):
        backbones.load_timm_backbone("vit_micro_patch8", str(tmp_path / "mnv2.pt"), 5, image_size=32, key="e9.vit.weights")
    torch.save({"junk": torch.zeros(1)}, tmp_path / "junk.pt")
    with pytest.raises(backbones.BackboneError, match=r"e9\.baseline\.weights names .*junk\.pt, which has no classifier\.weight"):
        backbones.load_timm_backbone("mobilenetv2_100", str(tmp_path / "junk.pt"), 5, key="e9.baseline.weights")


def test_a_truncated_timm_file_says_which_file(tmp_path):
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(backbones.BackboneError, match=r"e9\.vit\.weights names .*cut\.pt, which is not a readable weights file"):
        backbones.load_timm_backbone("vit_micro_patch8", str(tmp_path / "cut.pt"), 5, key="e9.vit.weights")


def test_hub_weights_offline_fail_in_one_line_naming_the_key_and_the_ways_out(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We have no connection to the Hugging Face hub")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(backbones.BackboneError) as err:
        backbones.load_timm_backbone("vit_base_patch16_224.augreg_in21k", "imagenet", 13, image_size=224, key="e9.vit.weights")
    message = str(err.value)
    assert "\n" not in message and message.startswith("params.yaml: e9.vit.weights is 'imagenet'")
    assert "pretrained_cfg_overlay=dict(file=...)" in message and "local" in message
    with pytest.raises(backbones.BackboneError, match="has no hub weights"):
        backbones.load_timm_backbone("vit_micro_patch8", "imagenet", 13, key="e9.vit.weights")


def test_the_vit_patch_grid_must_divide_the_image_size():
    backbones.check_image_size("vit_micro_patch8", 32, "e9.image_size", "e9.vit.arch")
    backbones.check_image_size("vit_base_patch16_224.augreg_in21k", 448, "e9.image_size", "e9.vit.arch")
    with pytest.raises(ParamError, match=r"e9\.image_size is 30, which the 8x8 patch grid of vit_micro_patch8 cannot take: use a multiple of 8 \(e\.g\. 24 or 32\)"):
        backbones.check_image_size("vit_micro_patch8", 30, "e9.image_size", "e9.vit.arch")
    with pytest.raises(ParamError, match=r"e9\.image_size is 100, which the 16x16 patch grid"):
        backbones.check_image_size("vit_base_patch16_224.augreg_in21k", 100, "e9.image_size", "e9.vit.arch")


def test_timm_input_statistics_follow_the_weights():
    assert backbones.input_stats("vit_base_patch16_224.augreg_in21k") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert backbones.input_stats("mobilenetv2_100") == (IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- metrics


def test_probability_confusion_and_least_predicted_by_hand():
    probs = np.array([
        [0.7, 0.2, 0.1],  # class 0
        [0.5, 0.3, 0.2],  # class 0
        [0.1, 0.1, 0.8],  # class 1
        [0.2, 0.6, 0.2],  # class 2
    ])
    y = np.array([0, 0, 1, 2])
    matrix = e9.probability_confusion(probs, y, 3)
    assert np.allclose(matrix, [[0.6, 0.25, 0.15], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]])
    rows = e9.least_predicted(matrix, ["a", "b", "c"], n=2, confused=2)
    assert [r["class"] for r in rows] == ["b", "c"]  # M[b, b] = 0.1 < M[c, c] = 0.2 < M[a, a]
    assert [t["class"] for t in rows[0]["taken_for"]] == ["c", "a"]  # b is taken for c (0.8), then a (0.1, ahead of itself)
    assert rows[0]["taken_for"][0]["probability"] == pytest.approx(0.8)
    assert e9.top_k_accuracy(probs, y, 1) == 0.5  # rows 0 and 3 right
    # Ties go to the lower class index: row 2's true class 1 ties class 0 at 0.1, row 3's class 2 ties class 0 at 0.2.
    assert e9.top_k_accuracy(probs, y, 2) == 0.5
    assert e9.top_k_accuracy(probs, y, 3) == 1.0


# --------------------------------------------------------------------------- bad params


@pytest.mark.parametrize(
    "overrides, line",
    [
        ({"e9.vit.arch": "mobilenetv2_100"}, "params.yaml: e9.vit.arch must be a vision transformer (vit_base_patch16_224.augreg_in21k, vit_micro_patch8); got 'mobilenetv2_100'"),
        ({"e9.baseline.arch": "resnet99"}, "params.yaml: e9.baseline.arch must be one of vit_base_patch16_224.augreg_in21k, mobilenetv2_100, mobilenetv2_050, vit_micro_patch8; got 'resnet99'"),
        ({"e9.subsets": [1]}, "params.yaml: e9.subsets[0] must be >= 2, got 1"),
        ({"e9.subsets": [13, 13]}, "params.yaml: e9.subsets lists a value twice: [13, 13]"),
        ({"e9.dataset": "digit_scenes"}, "params.yaml: e9.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
        ({"data.pairs.classes": 101}, "params.yaml: data.pairs.classes must be <= 100, got 101"),
    ],
)
def test_bad_e9_params_get_one_line_naming_the_key(overrides, line, tmp_path):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert line in err.value.lines


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
    """digit_pairs with 30 classes of 8 images (4 / 2 / 2), plus tiny pretrained weights files."""
    root = tmp_path_factory.mktemp("pairs")
    datasets.fetch("digit_pairs", "embedded", root / "raw")
    datasets.prepare(
        "digit_pairs", "embedded", root / "raw", root / "prepared", fractions=(0.8, 0.1, 0.1), seed=0, max_images=1000,
        pair_options={"classes": 30, "per_class": 8}, fine_grained_fractions=(0.5, 0.25, 0.25), colour_size=16,
    )
    for arch, size in (("vit_micro_patch8", 16), ("mobilenetv2_050", 16)):
        backbones.save_backbone(root / f"{arch}.pt", arch, backbones.build_backbone(arch, 10, seed=0, image_size=size), "test")
    return root


def _tiny_cfg(root, tmp_path, **extra):
    return compose({
        "e9.subsets": [3, 5], "e9.images_per_class": 8, "e9.image_size": 16,
        "e9.baseline.weights": str(root / "mobilenetv2_050.pt"), "e9.vit.weights": str(root / "vit_micro_patch8.pt"),
        "e9.baseline.head.epochs": 2, "e9.vit.train.epochs": 1, "e9.vit.train.batch_size": 8, **extra,
    }).e9


def _run(cfg, prepared, tmp_path, **kw):
    return e9.run_e9(
        cfg, prepared, report_path=tmp_path / "e9.md", figures_dir=tmp_path / "figures", tables_dir=tmp_path / "tables",
        progress=False, **kw,
    )


def test_a_subset_larger_than_the_classes_with_enough_images_is_refused_before_any_work(tiny_pairs, tmp_path):
    cfg = _tiny_cfg(tiny_pairs, tmp_path, **{"e9.subsets": [31]})
    with pytest.raises(ParamError, match=r"e9\.subsets asks for 31 classes, but only 30 of the 30 classes of digit_pairs have 8 images \(4 train / 2 val / 2 test\)"):
        _run(cfg, tiny_pairs / "prepared", tmp_path)
    cfg = _tiny_cfg(tiny_pairs, tmp_path, **{"e9.images_per_class": 12})  # 6 / 3 / 3: no class has 6 train images
    with pytest.raises(ParamError, match=r"only 0 of the 30 classes"):
        _run(cfg, tiny_pairs / "prepared", tmp_path)
    assert not (tmp_path / "e9.md").exists() and not (tmp_path / "figures").exists()


def test_a_bad_image_size_or_missing_weights_stop_e9_before_any_work(tiny_pairs, tmp_path):
    with pytest.raises(ParamError, match=r"e9\.image_size is 20"):
        _run(_tiny_cfg(tiny_pairs, tmp_path, **{"e9.image_size": 20}), tiny_pairs / "prepared", tmp_path)
    with pytest.raises(ParamError, match=r"e9\.vit\.weights names the weights file .*gone\.pt, which does not exist"):
        _run(_tiny_cfg(tiny_pairs, tmp_path, **{"e9.vit.weights": str(tmp_path / "gone.pt")}), tiny_pairs / "prepared", tmp_path)


def test_draw_subset_is_balanced_seeded_and_split_by_split(tiny_pairs):
    splits = {s: datasets.load_split(tiny_pairs / "prepared", s) for s in datasets.SPLITS}
    drawn = e9.draw_subset(splits, [7, 2, 11], (4, 2, 2), seed=0)
    again = e9.draw_subset(splits, [7, 2, 11], (4, 2, 2), seed=0)
    for split, count in zip(datasets.SPLITS, (4, 2, 2)):
        x, y = drawn[split]
        assert np.bincount(y).tolist() == [count] * 3 and np.array_equal(x, again[split][0])
        source = {img.tobytes(): label for img, label in zip(splits[split].x, splits[split].y)}
        assert [source[img.tobytes()] for img in x] == [7] * count + [2] * count + [11] * count, f"{split} images come from {split}"


def test_tiny_e9_run_writes_metrics_report_and_figures(tiny_pairs, tmp_path):
    tracker = RecordingTracker()
    metrics, timings = _run(_tiny_cfg(tiny_pairs, tmp_path), tiny_pairs / "prepared", tmp_path, tracker=tracker)
    tree = metrics["e9"]
    assert tree["dataset"] == "digit_pairs" and tree["profile"] == "embedded" and tree["split"] == {"train": 4, "val": 2, "test": 2}
    assert set(tree["subsets"]) == {"3", "5"}
    for k, entry in tree["subsets"].items():
        for model in e9.MODELS:
            acc, top3 = entry[model]["accuracy"], entry[model]["top3_accuracy"]
            assert entry[model]["device"] == "cpu" and entry[model]["precision"] == "fp32", "what ran, and where"
            assert acc * 2 * int(k) == round(acc * 2 * int(k)), "an accuracy is a count of the 2 test images per class"
            assert acc <= top3 and (int(k) > 3 or top3 == 1.0), "top-3 of 3 classes is always right"
            assert (tmp_path / "figures" / f"probability_confusion_{k}_{model}.png").stat().st_size > 0
            rows = (tmp_path / "tables" / f"least_predicted_{k}_{model}.csv").read_text().splitlines()
            assert len(rows) == 1 + min(5, int(k)), "a header, then the least-predicted classes"
        assert entry["vit_minus_baseline"] == pytest.approx(entry["vit"]["accuracy"] - entry["baseline"]["accuracy"])
        vit, base = timings["subsets"][k]["vit"]["train_seconds"], timings["subsets"][k]["baseline"]["train_seconds"]
        ratio = timings["subsets"][k]["train_seconds_ratio"]
        assert (vit - 0.005) / (base + 0.005) - 0.005 <= ratio <= (vit + 0.005) / max(base - 0.005, 1e-3) + 0.005, "ratio of the (rounded) times"
    report = (tmp_path / "e9.md").read_text()
    assert "## Least-well-predicted classes" in report and "### 5 classes, vit" in report
    assert f"{tree['subsets']['5']['vit']['accuracy']:.4f}" in report, "the report shows our number, not only the reference"
    assert {name for name, *_ in tracker.confusions} == {"baseline_3", "vit_3", "baseline_5", "vit_5"}
    again, _ = _run(_tiny_cfg(tiny_pairs, tmp_path), tiny_pairs / "prepared", tmp_path / "again")
    assert again == metrics, "the same params give the same metrics"


def test_the_smaller_subset_is_inside_the_larger_one(tiny_pairs, tmp_path):
    splits = {s: datasets.load_split(tiny_pairs / "prepared", s) for s in datasets.SPLITS}
    eligible, counts = e9.eligible_classes(splits, datasets.load_meta(tiny_pairs / "prepared"), 8)
    assert counts == (4, 2, 2) and eligible == list(range(30))
    tracker = RecordingTracker()
    _run(_tiny_cfg(tiny_pairs, tmp_path), tiny_pairs / "prepared", tmp_path, tracker=tracker)
    labels = {name: set(names) for name, _, names in tracker.confusions}
    assert labels["vit_3"] < labels["vit_5"]


# --------------------------------------------------------------------------- the full profile


def test_full_profile_e9_from_a_local_mirror_and_local_weights_files(tmp_path):
    """Stanford Dogs' images.tar from a mirror on 127.0.0.1 -> fetch, md5, safe extraction, breed
    folders -> the fine-grained split -> E9 with ImageNet-format timm weights files (plain
    state_dicts with timm's 1000-class heads, as a user copies a download in)."""
    served = tmp_path / "served"
    served.mkdir()
    breeds = (*DOGS_FAKE_BREEDS, "n02088364-beagle")
    sources = {"files": {"images": {"name": "images.tar", "md5": write_dogs_tar(served, breeds=breeds, per_breed=8)}}}
    with serve_directory(served) as url:
        sources["mirrors"] = [url]
        datasets.fetch("stanford_dogs", "full", tmp_path / "raw", sources, progress=False)
    meta = datasets.prepare(
        "stanford_dogs", "full", tmp_path / "raw", tmp_path / "dogs", fractions=(0.8, 0.1, 0.1), seed=0, image_size=32,
        fine_grained_fractions=(0.5, 0.25, 0.25), sources=sources, progress=False,
    )
    assert meta["sizes"] == {"train": 16, "val": 8, "test": 8}
    for arch in ("mobilenetv2_100", "vit_micro_patch8"):
        import timm

        name, overrides, _ = backbones.TIMM_SPECS[arch]
        torch.manual_seed(0)
        torch.save(timm.create_model(name, pretrained=False, **overrides).state_dict(), tmp_path / f"{arch}-imagenet.pth")
    cfg = compose({
        **FULL_PROFILE, "e9.subsets": [2, 4], "e9.images_per_class": 8, "e9.image_size": 32,
        "e9.baseline.arch": "mobilenetv2_100", "e9.baseline.weights": str(tmp_path / "mobilenetv2_100-imagenet.pth"), "e9.vit.weights": str(tmp_path / "vit_micro_patch8-imagenet.pth"),
        "e9.baseline.head.epochs": 1, "e9.vit.train.epochs": 1, "e9.vit.train.batch_size": 8,
    }).e9
    metrics, timings = _run(cfg, tmp_path / "dogs", tmp_path)
    tree = metrics["e9"]
    assert tree["dataset"] == "stanford_dogs" and tree["profile"] == "full" and set(tree["subsets"]) == {"2", "4"}
    assert all(np.isfinite(v["accuracy"]) for entry in tree["subsets"].values() for m, v in entry.items() if m in e9.MODELS)
    assert "Stanford Dogs" in (tmp_path / "e9.md").read_text()


def test_model_inputs_keep_the_drawn_images_uint8_with_the_archs_statistics():
    """All of Stanford Dogs at 224 px as float32 is 11.5 GiB: E9 hands the engine uint8 images, converted per batch."""
    rng = np.random.default_rng(0)
    data = {split: (rng.integers(0, 256, (n, 3, 20, 20), dtype=np.uint8), np.arange(n) % 2) for split, n in {"train": 6, "val": 2, "test": 2}.items()}
    images, labels = e9.model_inputs(data, "vit_micro_patch8", 32)
    mean, std = backbones.input_stats("vit_micro_patch8")
    for split, (x, y) in data.items():
        assert isinstance(images[split], Images) and torch.equal(images[split].pixels, torch.from_numpy(x))
        assert images[split].shape == (len(x), 3, 32, 32) and (images[split].mean, images[split].std) == (mean, std)
        assert torch.equal(labels[split], torch.from_numpy(y))
