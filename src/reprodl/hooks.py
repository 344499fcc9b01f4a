"""Forward-hook feature extraction from any named module of any torch model.

One helper for every experiment that reads a network's internal representations: E4 takes
the MLP's hidden layer and the ConvNet's penultimate layer, E7 takes ResNet50's global
average pool. Layers are addressed by their names in `model.named_modules()`
("hidden", "global_pool", "layer4.2.relu", ...).

Inference runs in inference mode, channels-last, and under bf16 autocast when the device
has native bf16 (a CPU with AVX-512 BF16 or AMX, a CUDA GPU that supports it); without it,
bf16 is slower than fp32 and is skipped. It runs on the model's device (or `device`: the model
is moved there); batches move there one at a time and the features come back on x's device.

Each BatchNorm that directly follows a convolution is folded into it for the extraction (in
eval mode BN is a per-channel affine map, which the convolution's weights and bias absorb): one
memory pass fewer per layer, about a fifth of ResNet50's bf16 forward time on a 2-core Zen 4.
The fold is checked on the first images before it is used: the named layers' outputs, folded
and not, must agree in fp32 (relative error < 1e-4), otherwise the model runs unfolded.
"""

from __future__ import annotations

import copy
import difflib
from typing import Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .heap import retain_freed_memory
from .images import Images, model_input
from .precision import autocast, use_bf16


def check_layers(model: nn.Module, layers: Iterable[str], key: str = "layers") -> None:
    """Raise a clear error for a layer name the model does not have, before any work."""
    names = [name for name, _ in model.named_modules() if name]
    for layer in layers:
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; some of its modules: {', '.join(names[:12])}"
            raise KeyError(f"{key}: the model has no module named {layer!r}{hint}")


FOLD_TOLERANCE = 1e-4  # relative L2 error of the hooked outputs, folded vs not, in fp32


def conv_bn_pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batch-norm name) for each BatchNorm2d whose input, on `probe`, is exactly the
    output of a Conv2d (same tensor object): the data flow as it runs, not the modules' order."""
    return _trace(model, probe, [])[0]


def _trace(model: nn.Module, probe: torch.Tensor, layers: list[str]) -> tuple[list[tuple[str, str]], dict[str, torch.Tensor]]:
    """One forward pass on `probe`: the conv + batch-norm pairs (conv_bn_pairs) and the named
    layers' outputs (float)."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept: its id is not reused
    pairs: list[tuple[str, str]] = []
    outputs: dict[str, torch.Tensor] = {}

    def conv_hook(name):
        def hook(_module, _inputs, output):
            produced[id(output)] = (name, output)

        return hook

    def bn_hook(name):
        def hook(_module, inputs):
            conv = produced.get(id(inputs[0]))
            if conv is not None and conv[1] is inputs[0]:
                pairs.append((conv[0], name))

        return hook

    def layer_hook(name):
        def hook(_module, _inputs, output):
            outputs[name] = output.float()

        return hook

    handles = [model.get_submodule(name).register_forward_hook(layer_hook(name)) for name in layers]
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(bn_hook(name)))
    try:
        model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(pairs)), outputs  # a module called twice is listed once


def fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """A copy of an eval-mode model with each (conv, bn) of `pairs` fused into one convolution;
    the batch norm's place holds an Identity, so the names (and hooks on them) stay valid."""
    folded = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        _set_submodule(folded, conv_name, fused)
        _set_submodule(folded, bn_name, nn.Identity())
    return folded


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fold_for_extraction(model: nn.Module, probe: torch.Tensor, layers: list[str]) -> nn.Module:
    """The model with its conv + batch-norm pairs folded, when that leaves the named layers'
    outputs on `probe` unchanged (fp32, FOLD_TOLERANCE); else the model itself. A hooked conv
    keeps its batch norm (the hook must see the conv's own output). extract_features calls it
    once per call; a caller that extracts batch by batch folds once, then passes fold=False."""
    if model.training or not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    pairs, expected = _trace(model, probe, layers)
    pairs = [(conv, bn) for conv, bn in pairs if conv not in layers]
    if not pairs:
        return model
    folded = fold_batchnorm(model, pairs)
    got = _trace(folded, probe, layers)[1]
    for name in layers:
        error = (got[name] - expected[name]).norm() / expected[name].norm().clamp_min(1e-12)
        if not error < FOLD_TOLERANCE:  # a conv output used elsewhere too, or NaN: keep the model as it is
            return model
    return folded


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    x: torch.Tensor | Images,
    layers: list[str],
    *,
    batch_size: int = 256,
    bf16: bool | None = None,
    channels_last: bool = True,
    progress: bool = True,
    desc: str = "features",
    device: torch.device | str | None = None,
    fold: bool = True,
) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for every row of x, flattened to (N, D) float32.

    bf16=None means precision "auto" (reprodl.precision: bf16 where the device has it natively);
    True forces bf16 autocast, False keeps fp32.
    device: where the forward passes run (the model is moved there); None: the model's device.
    fold: fold conv + batch-norm pairs for the extraction when the check on the first two rows
    allows (see the module's docstring); the model passed in is left as it was.
    """
    check_layers(model, layers)
    retain_freed_memory()  # same-sized batch buffers every step: keep them (see reprodl.heap)
    if device is not None:
        model.to(device)
    first = next(model.parameters(), None)
    device = first.device if first is not None else x.device
    bf16 = use_bf16("auto", device) if bf16 is None else bf16
    model.eval()
    if channels_last and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    if fold and len(x):
        model = fold_for_extraction(model, model_input(x[:2].to(device)), list(layers))
        if channels_last and x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)  # the fused weights
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str):
        def hook(_module, _inputs, output):
            captured[name].append(output.detach().flatten(1).float())

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in layers]
    try:
        for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=None if progress else True, leave=False):
            # Images are converted per batch, in fp32 outside autocast: the same input as a split converted whole.
            batch = model_input(x[start : start + batch_size].to(device, non_blocking=True))
            if channels_last and batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(bf16, device):
                model(batch)
    finally:
        for handle in handles:  # a hook left behind would keep capturing on later calls
            handle.remove()
    return {name: torch.cat(chunks).to(x.device) for name, chunks in captured.items()}
