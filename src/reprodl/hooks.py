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

With compile=True the (folded) model runs through torch.compile, hooks and all, with inductor's
freezing: the weights become constants and ReLU and the residual additions are fused into the
convolutions, which eager PyTorch runs as separate memory passes. ResNet50 at 224 px on 2 Zen 4
cores: 44-46 against 37-39 images/s in bf16, 22 against 18 in fp32; it costs 5-18 s of
compiling per model, so it pays on large extractions only (use_compile's "auto"). Every batch
then has the same rows (the last one padded, the copies' features dropped): one graph, no
recompiling. It needs a C++ compiler (inductor builds its CPU kernels).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from typing import Iterable, Mapping

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .config import COMPILE_CHOICES
from .heap import retain_freed_memory
from .images import Images, model_input
from .precision import autocast, use_bf16

# "auto" compiles an extraction of at least this many input pixels on a CPU: 5,000 images at 224 px.
# Compiling ResNet50 took 5-18 s and saved 4 ms (bf16) to 10 ms (fp32) an image at 224 px on 2 Zen 4
# cores: break-even between 500 and 4,500 such images. The embedded E7 (8,000 images at 48 px, 230
# at 224 px in pixels) stays eager; the full profile's VOC2007 (about 10,000 at 224 px) compiles.
COMPILE_PAYS_PIXELS = 5_000 * 224 * 224


class CompileUnavailable(RuntimeError):
    """torch.compile was asked for where it cannot run (no C++ compiler for inductor's CPU kernels)."""


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would build its CPU kernels with, or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # inductor raises its own InvalidCxxCompiler (or an import error on odd builds)
        return None


def require_cpp_compiler(device: torch.device | str = "cpu") -> None:
    """Raise CompileUnavailable where torch.compile cannot build kernels for the device (a CPU
    without a C++ compiler)."""
    if torch.device(device).type == "cpu" and cpp_compiler() is None:
        raise CompileUnavailable("torch.compile needs a C++ compiler for its CPU kernels and none was found "
                                 "(install g++, or point CXX at one)")


def use_compile(choice: str, pixels: int, device: torch.device | str = "cpu") -> bool:
    """Resolve a COMPILE_CHOICES value for an extraction of `pixels` input pixels in all (images x
    height x width, as the model sees them): True means extract through torch.compile.

    "always" raises CompileUnavailable where it cannot run; "auto" compiles on a CPU with a C++
    compiler when pixels >= COMPILE_PAYS_PIXELS (measured on CPUs only: a GPU stays eager)."""
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"unknown compile choice {choice!r}; allowed: {', '.join(COMPILE_CHOICES)}")
    if choice == "never":
        return False
    if choice == "always":
        require_cpp_compiler(device)
        return True
    return torch.device(device).type == "cpu" and pixels >= COMPILE_PAYS_PIXELS and cpp_compiler() is not None


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


class Extraction:
    """A model prepared once to hand out the named modules' outputs batch by batch: eval mode,
    channels-last, conv + batch-norm pairs folded (checked on `probe`), the forward hooks
    registered, compiled when asked. `extraction(batch)` -> {layer: (n, D) float32}. A context
    manager: leaving it removes the hooks (and drops the compiled graph); the caller's model is
    left as it was, but for its device and memory format.

    bf16: None means precision "auto" (reprodl.precision: bf16 where the device has it natively).
    device: where the forward passes run (the model is moved there); None: the model's device.
    probe: a few input rows (two are used): they decide channels-last (4-D images) and check the fold.
    fold: fold conv + batch-norm pairs when the check on `probe` allows (see the module's
    docstring), in a copy: the model passed in keeps its batch norms.
    compile: run through torch.compile with freezing (see the module's docstring); every batch is
    then padded to `rows` rows (one graph), the copies' outputs dropped. Raises CompileUnavailable
    before any work where it cannot run. Closing resets dynamo (torch._dynamo.reset), which drops
    every compiled graph of the process: the pipeline compiles nothing else.
    """

    @torch.inference_mode()
    def __init__(
        self, model: nn.Module, layers: list[str], *, probe: torch.Tensor | Images | None = None, bf16: bool | None = None,
        channels_last: bool = True, device: torch.device | str | None = None, fold: bool = True, compile: bool = False,
        rows: int = 256,
    ):
        check_layers(model, layers)
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else probe.device if probe is not None else torch.device("cpu"))
        if compile:
            require_cpp_compiler(self.device)
        retain_freed_memory()  # same-sized batch buffers every step: keep them (see reprodl.heap)
        model.to(self.device)
        self.bf16 = use_bf16("auto", self.device) if bf16 is None else bf16
        self.layers, self.compile, self.rows = list(layers), compile, rows
        model.eval()
        self.channels_last = channels_last and probe is not None and probe.dim() == 4
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if fold and probe is not None and len(probe):
            model = fold_for_extraction(model, model_input(probe[:2].to(self.device)), self.layers)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)  # the fused weights
        # The hooks write to a fixed slot, emptied after each batch: a compiled graph guards on a
        # list's length, so appending to a growing list would compile it again every batch.
        self.slot: dict[str, torch.Tensor] = {}
        self.handles = [model.get_submodule(name).register_forward_hook(self._keep(name)) for name in self.layers]
        self.model = model  # as prepared (folded or not), before compiling
        self.run = torch.compile(model, dynamic=False) if compile else model  # after the hooks: traced with them in it

    def _keep(self, name: str):
        def hook(_module, _inputs, output):
            self.slot[name] = output.detach().flatten(1).float()

        return hook

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor | Images) -> dict[str, torch.Tensor]:
        # Images are converted per batch, in fp32 outside autocast: the same input as a split converted whole.
        batch = model_input(x.to(self.device, non_blocking=True))
        n = len(batch)
        if self.compile and n < self.rows:  # the graph's batch shape: copies of the last row, dropped below
            batch = torch.cat([batch, batch[-1:].expand(self.rows - n, *batch.shape[1:])])
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.compile and not batch.is_inference():  # a view of the caller's tensor: the graph guards on the kind
            batch = batch.clone()
        # freezing: an inductor setting read when the graph is compiled (the first call)
        with torch._inductor.config.patch(freezing=True) if self.compile else contextlib.nullcontext(), autocast(self.bf16, self.device):
            self.run(batch)
        return {name: self.slot.pop(name)[:n] for name in self.layers}

    def close(self) -> None:
        for handle in self.handles:  # a hook left behind would keep capturing on later calls
            handle.remove()
        self.handles = []
        if self.compile:  # the compiled graph holds frozen copies of the weights: let them go
            torch._dynamo.reset()

    def __enter__(self) -> "Extraction":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def extract_features(model: nn.Module, x: torch.Tensor | Images, layers: list[str], **options) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for every row of x, flattened to (N, D) float32: one split of
    extract_split_features (the same options)."""
    return extract_split_features(model, {"x": x}, layers, **options)["x"]


def extract_split_features(
    model: nn.Module,
    splits: Mapping[str, torch.Tensor | Images],
    layers: list[str],
    *,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "features",
    compile: bool = False,
    **options,
) -> dict[str, dict[str, torch.Tensor]]:
    """{split: {layer: (N, D) float32}}: the named modules' outputs for every row of each split,
    through one Extraction (the model folded and compiled once for all of them; `options` are
    Extraction's: bf16, channels_last, device, fold). On the split's device."""
    probe = next((x for x in splits.values() if len(x)), None)
    rows = min(batch_size, max(len(x) for x in splits.values())) if compile and probe is not None else batch_size
    features: dict[str, dict[str, torch.Tensor]] = {}
    with Extraction(model, layers, probe=probe, compile=compile, rows=rows, **options) as extraction:
        for split, x in splits.items():
            captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
            label = desc if len(splits) == 1 else f"{desc} {split}"
            for start in tqdm(range(0, len(x), rows), desc=label, disable=None if progress else True, leave=False):
                for name, output in extraction(x[start : start + rows]).items():
                    captured[name].append(output)
            features[split] = {name: torch.cat(chunks).to(x.device) for name, chunks in captured.items()}
    return features
