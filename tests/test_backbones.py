"""Backbone factories and weight loading: one code path for hub, local and pipeline-made weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from reprodl import backbones, images
from reprodl.config import ParamError


@pytest.fixture(scope="module")
def resnet18():
    return backbones.build_backbone("resnet18", n_classes=10, seed=0)


def test_a_saved_backbone_loads_back_identically(tmp_path, resnet18):
    backbones.save_backbone(tmp_path / "r18.pt", "resnet18", resnet18, "test")
    loaded = backbones.load_backbone("resnet18", str(tmp_path / "r18.pt"))
    assert loaded.fc.out_features == 10
    for (name, a), b in zip(resnet18.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_plain_state_dict_loads_like_a_downloaded_file(tmp_path):
    """A user without internet copies torchvision's file in: a plain state_dict with a 1000-class fc."""
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18-copy.pth")
    loaded = backbones.load_backbone("resnet18", str(tmp_path / "resnet18-copy.pth"))
    assert loaded.fc.out_features == 1000
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)


def test_missing_file_names_the_param_and_the_ways_out(tmp_path):
    with pytest.raises(backbones.BackboneError, match=r"e7\.weights names the weights file .*missing\.pt, which does not exist; run the pretrain stage"):
        backbones.load_backbone("resnet50", str(tmp_path / "missing.pt"), key="e7.weights")


def test_mismatched_files_are_clear_errors(tmp_path, resnet18):
    backbones.save_backbone(tmp_path / "r18.pt", "resnet18", resnet18, "test")
    with pytest.raises(backbones.BackboneError, match="holds resnet18 weights, but the architecture is resnet50"):
        backbones.load_backbone("resnet50", str(tmp_path / "r18.pt"), key="e7.weights")
    state = resnet18.state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(backbones.BackboneError) as err:
        backbones.load_backbone("resnet18", str(tmp_path / "broken.pth"), key="e8.weights")
    message = str(err.value)
    assert "e8.weights" in message and "1 missing keys (layer4.1.bn2.weight)" in message
    assert "1 unexpected keys (extra.weight)" in message and "conv1.weight (64, 1, 7, 7) != (64, 3, 7, 7)" in message
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(backbones.BackboneError, match="not a readable torch weights file"):
        backbones.load_backbone("resnet18", str(tmp_path / "junk.pt"))


def test_hub_without_network_is_an_error_not_a_fallback(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # torchvision's download function, as called by Weights.get_state_dict: what fails offline.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(backbones.BackboneError) as err:
        backbones.load_backbone("resnet18", "imagenet", key="e8.weights")
    message = str(err.value)
    assert "params.yaml: e8.weights is 'imagenet'" in message and "name resolution" in message
    assert "local weights file" in message and "models/pretrained/resnet18.pt" in message


def test_unknown_arch_and_bad_specs_are_param_errors():
    with pytest.raises(ParamError, match="e7.arch must be one of resnet50, resnet18; got 'resnet51'"):
        backbones.load_backbone("resnet51", "none", arch_key="e7.arch")
    with pytest.raises(ParamError, match="e7.weights must be 'imagenet', 'none' or the path"):
        backbones.load_backbone("resnet50", "", key="e7.weights")


@pytest.mark.parametrize("arch, enum", [("resnet50", "ResNet50_Weights"), ("resnet18", "ResNet18_Weights")])
def test_imagenet_weights_are_pinned_by_name_not_default(arch, enum):
    """"imagenet" is IMAGENET1K_V1 on every torchvision release (resnet50's DEFAULT is V2 since 0.13)."""
    weights = backbones.hub_weights(arch)
    assert weights.name == "IMAGENET1K_V1"
    assert weights is getattr(torchvision.models, enum).IMAGENET1K_V1
    assert weights.meta["num_params"] == sum(p.numel() for p in backbones.build_backbone(arch).parameters())


def test_the_download_asks_for_the_pinned_file(monkeypatch):
    """What load_backbone("resnet50", "imagenet") downloads: V1's URL, not DEFAULT's."""
    asked = []

    def offline(url, *args, **kwargs):
        asked.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(backbones.BackboneError, match="resnet50-0676ba61.pth"):
        backbones.load_backbone("resnet50", "imagenet", key="e7.weights")
    assert asked == [torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url]
    assert asked != [torchvision.models.ResNet50_Weights.DEFAULT.url]


@pytest.mark.parametrize(
    "arch, layer, line",
    [
        ("resnet50", "avgpol", "params.yaml: e7.layer 'avgpol' is not a module of resnet50 (e.g. avgpool, layer4, fc)"),
        ("resnet50", "layer4.2.bn4", "params.yaml: e7.layer 'layer4.2.bn4' is not a module of resnet50 (e.g. layer4.2.bn3, avgpool, layer4)"),
        ("resnet18", "layer4.2", "params.yaml: e7.layer 'layer4.2' is not a module of resnet18 (e.g. layer4.1, avgpool, layer4)"),
    ],
)
def test_a_layer_the_architecture_lacks_is_one_line(arch, layer, line):
    with pytest.raises(ParamError) as err:
        backbones.check_layer(arch, layer, "e7.layer")
    assert str(err.value) == line and err.value.key == "e7.layer"


@pytest.mark.parametrize("layer", ["avgpool", "layer4", "layer3.5.conv2", "fc"])
def test_a_layer_it_has_passes(layer):
    backbones.check_layer("resnet50", layer, "e7.layer")  # no error


def test_check_weights_accepts_hub_and_random_and_names_a_missing_file(tmp_path):
    backbones.check_weights("imagenet", "e8.weights")
    backbones.check_weights("none", "e8.weights")
    with pytest.raises(ParamError, match=r"^params.yaml: e8.weights names the weights file .*gone.pt, which does not exist"):
        backbones.check_weights(str(tmp_path / "gone.pt"), "e8.weights")


def test_grey_stem_sums_the_rgb_filters(resnet18):
    """A grey image through the summed filter equals the RGB model on that image replicated."""
    x = torch.rand(2, 1, 32, 32)
    rgb = resnet18.conv1(x.expand(-1, 3, -1, -1))
    grey = backbones.grey_stem(backbones.build_backbone("resnet18", 10, seed=0)).conv1(x)
    assert torch.allclose(rgb, grey, atol=1e-5)


def test_prepare_images_resizes_and_standardises():
    x = torch.rand(3, 1, 28, 28)
    out = images.prepare_images(x, 32)
    assert out.shape == (3, 1, 32, 32)
    assert out.mean() < x.mean()  # ImageNet means subtracted


@pytest.mark.parametrize("arch, last_bn", [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual_starts_every_block_as_the_identity(arch, last_bn):
    """Pretraining's init: each residual block's last BatchNorm scale is zero; the default keeps torchvision's."""
    zeroed = backbones.build_backbone(arch, 10, seed=0, zero_init_residual=True)
    default = backbones.build_backbone(arch, 10, seed=0)
    blocks = [name for name, m in zeroed.named_modules() if hasattr(m, last_bn) and name.startswith("layer")]
    assert len(blocks) == (8 if arch == "resnet18" else 16)
    for name in blocks:
        assert torch.count_nonzero(getattr(zeroed.get_submodule(name), last_bn).weight) == 0, name
        assert torch.all(getattr(default.get_submodule(name), last_bn).weight == 1), name
