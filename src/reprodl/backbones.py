"""Pretrained backbones: torchvision and timm architectures and their weights, from one function.

    model = load_backbone("resnet50", "imagenet")                      # full profile: hub weights
    model = load_backbone("resnet50", "models/pretrained/resnet50.pt")  # a local file
    model = load_backbone("resnet18", "none")                          # random initialisation
    model = load_timm_backbone("vit_base_patch16_224.augreg_in21k", "imagenet", 28, image_size=224)

torchvision archs (ARCHS: E7, E8) and timm archs (TIMM_ARCHS: E9) are the two families; the
timm family is described at TIMM_ARCHS below.

A weights spec is "imagenet" (torchvision's ImageNet weights, downloaded once into torch's
hub cache, ~/.cache/torch/hub/checkpoints, or $TORCH_HOME), "none", or the path of a local
file. "imagenet" is pinned to one named set of weights per architecture (HUB_WEIGHTS:
IMAGENET1K_V1, the weights of the catalogue's numbers), never torchvision's `.DEFAULT`, which
moves to newer weights between torchvision releases (resnet50's DEFAULT is IMAGENET1K_V2 since
0.13). A local file is either a plain state_dict (what a user without internet copies in, e.g.
torchvision's resnet50-0676ba61.pth) or what `save_backbone` writes: the state_dict with the
architecture name and class count, which the embedded profile's pretrain stage produces. Both
go through the same strict load; a file of another architecture, with missing or unexpected
keys or tensors of other shapes is an error that says what is wrong. There is no silent
fallback: a failed download is an error naming the param and the ways out.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from . import io
from .images import IMAGENET_MEAN, IMAGENET_STD
from .config import ARCHS, HUB, RANDOM, TIMM_ARCHS, ParamError  # the catalogue's backbones (E7, E8; E9)

# The torchvision weights "imagenet" means, by explicit name: the same file on every
# torchvision release (`.DEFAULT` is whatever the installed release calls its best).
HUB_WEIGHTS = {"resnet50": "ResNet50_Weights.IMAGENET1K_V1", "resnet18": "ResNet18_Weights.IMAGENET1K_V1"}
COMMON_LAYERS = ("avgpool", "layer4", "fc")  # the modules usually hooked, offered when a layer name is wrong


class BackboneError(ParamError):
    """A backbone that cannot be built as asked (unknown arch, missing or mismatched weights).

    A ParamError: the message names the params key the arch or weights came from.
    """


def build_backbone(
    arch: str, n_classes: int = 1000, seed: int | None = None, key: str = "arch", zero_init_residual: bool = False,
    image_size: int | None = None,
) -> nn.Module:
    """The torchvision architecture, randomly initialised (seeded), with an n_classes head.

    zero_init_residual: the last BatchNorm of every residual block starts at zero, so each
    block starts as the identity (Goyal et al. 2017); it makes short from-scratch training
    of the deep resnet50 converge much faster. Off for E7's random-init reference features.
    A timm arch is built by timm (image_size: a ViT's input size; zero_init_residual ignored).
    """
    if arch in TIMM_ARCHS:
        return load_timm_backbone(arch, RANDOM, n_classes, image_size=image_size, arch_key=key, seed=seed or 0)
    if arch not in ARCHS:
        raise BackboneError(key, f"must be one of {', '.join(ARCHS)}; got {arch!r}")
    if seed is not None:
        torch.manual_seed(seed)
    return getattr(torchvision.models, arch)(weights=None, num_classes=n_classes, zero_init_residual=zero_init_residual)


def load_backbone(arch: str, weights: str, *, key: str = "weights", arch_key: str = "arch", seed: int = 0) -> nn.Module:
    """`arch` with the weights named by `weights` ("imagenet", "none" or a file path).

    key, arch_key: the params keys the weights spec and the arch came from, named in errors.
    """
    if arch not in ARCHS:
        raise BackboneError(arch_key, f"must be one of {', '.join(ARCHS)}; got {arch!r}")
    if not isinstance(weights, str) or not weights:
        raise BackboneError(key, f"must be {HUB!r}, {RANDOM!r} or the path of a weights file, got {weights!r}")
    if weights == RANDOM:
        return build_backbone(arch, seed=seed)
    if weights == HUB:
        state, n_classes = _hub_state_dict(arch, key), 1000
    else:
        state, n_classes = _file_state_dict(arch, Path(weights), key)
    model = build_backbone(arch, n_classes, seed=seed)
    _load_strict(model, state, arch, key, weights)
    return model


def hub_weights(arch: str, arch_key: str = "arch") -> torchvision.models.WeightsEnum:
    """The pinned torchvision weights enum of `arch` (nothing is downloaded)."""
    if arch not in HUB_WEIGHTS:
        raise BackboneError(arch_key, f"must be one of {', '.join(HUB_WEIGHTS)}; got {arch!r}")
    return torchvision.models.get_weight(HUB_WEIGHTS[arch])


def check_weights(weights: str, key: str) -> None:
    """Before any work: a weights spec that names a file must name one that exists."""
    if weights not in (HUB, RANDOM) and not Path(weights).exists():
        raise BackboneError(key, _missing_file(Path(weights), key))


def check_layer(arch: str, layer: str, key: str, arch_key: str = "arch") -> None:
    """Before any work: `layer` must be a module name of the architecture (e.g. avgpool, layer4.2).

    The architecture is built on the meta device: no weights are allocated, it takes ~0.1 s.
    """
    if arch not in ARCHS:
        raise BackboneError(arch_key, f"must be one of {', '.join(ARCHS)}; got {arch!r}")
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    names = [name for name, _ in model.named_modules() if name]
    if layer in names:
        return
    close = difflib.get_close_matches(layer, names, n=1)  # the likely typo's fix, then the usual hook points
    examples = list(dict.fromkeys([*close, *COMMON_LAYERS]))[:3]
    raise BackboneError(key, f"{layer!r} is not a module of {arch} (e.g. {', '.join(examples)})")


def save_backbone(path: str | Path, arch: str, model: nn.Module, source: str) -> None:
    """Weights in the format load_backbone reads, written atomically; `source` says what trained them.

    A timm arch is saved as a plain state_dict, the format of timm's own weights files, so that
    it loads through timm's pretrained path exactly like a downloaded file.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if arch in TIMM_ARCHS:
        io.save_torch(path, state)
        return
    n_classes = int(state["fc.weight"].shape[0])
    io.save_torch(path, {"arch": arch, "n_classes": n_classes, "source": source, "state_dict": state})


def _hub_state_dict(arch: str, key: str) -> dict[str, torch.Tensor]:
    weights = hub_weights(arch)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a corrupt download a RuntimeError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise BackboneError(
            key,
            f"is {HUB!r}, but the ImageNet weights of {arch} cannot be had ({weights.url}): {err}. Without internet, "
            f"copy that file into {cache} or set {key} to the path of a local weights file; or use the "
            f"embedded profile's own pretrained backbones (dvc exp run -S {key}=models/pretrained/{arch}.pt)"
        ) from None


def _file_state_dict(arch: str, path: Path, key: str) -> tuple[dict[str, torch.Tensor], int]:
    if not path.exists():
        raise BackboneError(key, _missing_file(path, key))
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file or not a torch file at all: say which file
        raise BackboneError(key, f"names {path}, which is not a readable torch weights file ({type(err).__name__}: {err})") from None
    if isinstance(saved, dict) and "state_dict" in saved and "arch" in saved:
        if saved["arch"] != arch:
            raise BackboneError(key, f"names {path}, which holds {saved['arch']} weights, but the architecture is {arch}")
        return saved["state_dict"], int(saved["n_classes"])
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise BackboneError(key, f"names {path}, which is neither a state_dict nor a file written by save_backbone")
    head = saved.get("fc.weight")
    return saved, int(head.shape[0]) if isinstance(head, torch.Tensor) else 1000


def _missing_file(path: Path, key: str) -> str:
    return (
        f"names the weights file {path}, which does not exist; run the pretrain stage (dvc repro pretrain), copy the "
        f"file in, or set {key} to {HUB!r} (download) or {RANDOM!r} (random init)"
    )


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str, key: str, source: str) -> None:
    _compare_state(model.state_dict(), state, arch, key, source)
    model.load_state_dict(state)


def _compare_state(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], arch: str, key: str, source: str, resampled: tuple[str, ...] = (),
) -> None:
    """BackboneError listing missing / unexpected keys and wrong shapes (`resampled` keys may differ in shape)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items() if k in state and k not in resampled and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})")
        if wrong:
            parts.append(f"{len(wrong)} tensors of the wrong shape ({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''})")
        raise BackboneError(key, f"names {source}, which does not fit {arch}: {', '.join(parts)}")


def replace_head(model: nn.Module, n_classes: int, seed: int) -> nn.Module:
    """A new, seeded, freshly initialised last layer (fc) with n_classes outputs."""
    torch.manual_seed(seed)
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model


def grey_stem(model: nn.Module) -> nn.Module:
    """A 1-channel first convolution: each filter's RGB weights summed (a grey image x
    replicated to RGB gives conv(x) with the summed filter), so pretrained filters carry over."""
    old = model.conv1
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(1, keepdim=True))
    model.conv1 = new
    return model


def input_stats(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The channel mean and std an arch's pretrained weights expect: ImageNet's for torchvision,
    the pretrained config's for timm (0.5 / 0.5 for the augreg ViTs)."""
    if arch in TIMM_SPECS:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(TIMM_SPECS[arch][0])
        return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


# --------------------------------------------------------------------------- timm (E9)
#
# arch -> (timm model name, constructor overrides, has ImageNet weights on the hub). The full
# profile's archs are timm's own, hub weights included; the embedded ViT is timm's ViT-Tiny
# block made small enough for 2 CPU cores (8 px patches, a 4x4 grid at 32 px; 4 blocks of width 96),
# pretrained by the pretrain stage and saved as a timm weights file. The one loading path for
# every weights file is timm's: create_model(pretrained=True, pretrained_cfg_overlay=dict(file=...)).
TIMM_SPECS: dict[str, tuple[str, dict, bool]] = {
    "vit_base_patch16_224.augreg_in21k": ("vit_base_patch16_224.augreg_in21k", {}, True),
    "mobilenetv2_100": ("mobilenetv2_100.ra_in1k", {}, True),
    "mobilenetv2_050": ("mobilenetv2_050.lamb_in1k", {}, True),  # half the width: the embedded profile's
    "vit_micro_patch8": ("vit_tiny_patch16_224", {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}, False),
}
assert set(TIMM_SPECS) == set(TIMM_ARCHS), "config.TIMM_ARCHS and TIMM_SPECS list the same archs"


def is_vit(arch: str) -> bool:
    return arch.startswith("vit_")


def vit_patch_size(arch: str) -> int:
    """The patch side of a ViT arch, in pixels (no weights are built)."""
    name, overrides, _ = TIMM_SPECS[arch]
    if "patch_size" in overrides:
        return int(overrides["patch_size"])
    import timm

    with torch.device("meta"):
        return int(timm.create_model(name, pretrained=False).patch_embed.patch_size[0])


def check_image_size(arch: str, image_size: int, key: str, arch_key: str) -> None:
    """Before any work: a ViT takes an image size its patch grid divides."""
    if arch not in TIMM_SPECS:
        raise BackboneError(arch_key, f"must be one of {', '.join(TIMM_SPECS)}; got {arch!r}")
    if is_vit(arch):
        patch = vit_patch_size(arch)
        if image_size % patch:
            lower, upper = image_size - image_size % patch, image_size - image_size % patch + patch
            raise BackboneError(
                key, f"is {image_size}, which the {patch}x{patch} patch grid of {arch} cannot take: use a multiple of {patch} "
                f"(e.g. {lower or upper} or {upper})"
            )


def load_timm_backbone(
    arch: str, weights: str, n_classes: int, *, image_size: int | None = None, key: str = "weights", arch_key: str = "arch",
    seed: int = 0,
) -> nn.Module:
    """timm's `arch` with a new, seeded n_classes head and the weights `weights` names.

    weights: "imagenet" (timm's hub weights: ImageNet-21k for the augreg ViT, ImageNet-1k for
    MobileNetV2; downloaded into the Hugging Face cache), "none", or a local weights file (a
    timm state_dict: a download copied in by hand, or what the pretrain stage wrote), loaded
    through timm's own pretrained path. The file's keys and shapes must match the arch (its
    classifier aside): timm would otherwise load a mismatched file silently (strict=False
    when the head is replaced). image_size: a ViT's input size (its position embeddings are
    resampled by timm when the weights were trained at another size).
    """
    import timm

    if arch not in TIMM_SPECS:
        raise BackboneError(arch_key, f"must be one of {', '.join(TIMM_SPECS)}; got {arch!r}")
    if not isinstance(weights, str) or not weights:
        raise BackboneError(key, f"must be {HUB!r}, {RANDOM!r} or the path of a weights file, got {weights!r}")
    name, overrides, on_hub = TIMM_SPECS[arch]
    kwargs = dict(overrides, num_classes=n_classes)
    if image_size is not None and is_vit(arch):
        check_image_size(arch, image_size, "image_size", arch_key)
        kwargs["img_size"] = image_size
    torch.manual_seed(seed)  # the new head (and, for "none", every weight) is seeded
    if weights == RANDOM:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights == HUB:
        if not on_hub:
            raise BackboneError(key, f"is {HUB!r}, but {arch} has no hub weights (it is the embedded profile's own arch): "
                                     f"use the pretrain stage's file, models/pretrained/{arch}.pt")
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # offline: huggingface_hub's LocalEntryNotFoundError, an OSError; or a URLError
            raise BackboneError(
                key, f"is {HUB!r}, but timm cannot download the weights of {name} ({type(err).__name__}). Without internet, "
                f"set {key} to the path of a local copy of that weights file (it is loaded with timm's "
                f"pretrained_cfg_overlay=dict(file=...)), or use the embedded profile's own pretrained backbones"
            ) from None
    path = Path(weights)
    if not path.exists():
        raise BackboneError(key, _missing_file(path, key))
    file_head = _check_timm_file(name, overrides, path, key, arch)
    # num_classes of the overlay: the file's head size, so timm drops that head for ours.
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=file_head), **kwargs
    )


def _check_timm_file(name: str, overrides: dict, path: Path, key: str, arch: str) -> int:
    """The file's classifier size, after checking its keys and shapes against the arch."""
    import timm
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as err:
        raise BackboneError(key, f"names {path}, which is not a readable weights file ({type(err).__name__}: {err})") from None
    with torch.device("meta"):
        probe = timm.create_model(name, pretrained=False, **overrides)
    classifier = probe.pretrained_cfg.get("classifier", "head")
    head = state.get(f"{classifier}.weight")
    if not isinstance(head, torch.Tensor):
        raise BackboneError(key, f"names {path}, which has no {classifier}.weight: not a {arch} weights file")
    with torch.device("meta"):
        probe = timm.create_model(name, pretrained=False, **dict(overrides, num_classes=int(head.shape[0])))
    _compare_state(probe.state_dict(), state, arch, key, str(path), resampled=("pos_embed",))
    return int(head.shape[0])
