"""Forward-hook feature extraction from any named module of any torch model.

One helper for every experiment that reads a network's internal representations: E4 takes
the MLP's hidden layer and the ConvNet's penultimate layer, E7 takes ResNet50's global
average pool. Layers are addressed by their names in `model.named_modules()`
("hidden", "global_pool", "layer4.2.relu", ...).

Inference runs in inference mode, channels-last, and under bf16 autocast when the device
has native bf16 (a CPU with AVX-512 BF16 or AMX, a CUDA GPU that supports it); without it,
bf16 is slower than fp32 and is skipped. It runs on the model's device (or `device`: the model
is moved there); batches move there one at a time and the features come back on x's device.
"""

from __future__ import annotations

import difflib
from typing import Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .heap import retain_freed_memory
from .precision import autocast, use_bf16


def check_layers(model: nn.Module, layers: Iterable[str], key: str = "layers") -> None:
    """Raise a clear error for a layer name the model does not have, before any work."""
    names = [name for name, _ in model.named_modules() if name]
    for layer in layers:
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; some of its modules: {', '.join(names[:12])}"
            raise KeyError(f"{key}: the model has no module named {layer!r}{hint}")


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    *,
    batch_size: int = 256,
    bf16: bool | None = None,
    channels_last: bool = True,
    progress: bool = True,
    desc: str = "features",
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for every row of x, flattened to (N, D) float32.

    bf16=None means precision "auto" (reprodl.precision: bf16 where the device has it natively);
    True forces bf16 autocast, False keeps fp32.
    device: where the forward passes run (the model is moved there); None: the model's device.
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
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str):
        def hook(_module, _inputs, output):
            captured[name].append(output.detach().flatten(1).float())

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in layers]
    try:
        with autocast(bf16, device):
            for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=None if progress else True, leave=False):
                batch = x[start : start + batch_size].to(device, non_blocking=True)
                if channels_last and batch.dim() == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                model(batch)
    finally:
        for handle in handles:  # a hook left behind would keep capturing on later calls
            handle.remove()
    return {name: torch.cat(chunks).to(x.device) for name, chunks in captured.items()}
