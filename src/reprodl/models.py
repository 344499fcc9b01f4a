"""The small models of the catalogue, built from plain specs so they can be saved and rebuilt.

A spec is a plain dict, e.g. {"kind": "convnet", "channels": [32, 64], ...}; `build_model`
turns it into a module and `save_model` / `load_model` keep the spec beside the weights, so
a later stage (E4's hooks) rebuilds exactly the trained network. Modules carry names
(`hidden`, `logits`, ...) so forward hooks can address layers by name.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from . import io

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
MODEL_KINDS = ("logreg", "mlp", "convnet")


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def logistic_regression(n_inputs: int = 784, n_classes: int = 10) -> nn.Sequential:
    """Flatten -> Linear: 784 x 10 + 10 = 7,850 parameters on MNIST."""
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), logits=nn.Linear(n_inputs, n_classes)))


def mlp(n_inputs: int = 784, hidden: list[int] | int = 100, n_classes: int = 10, activation: str = "relu") -> nn.Sequential:
    """Fully connected layers; the last hidden activation is named `hidden` (E4 hooks it)."""
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    width_in = n_inputs
    for i, width in enumerate(widths, start=1):
        last = i == len(widths)
        layers.append((f"fc{i}", nn.Linear(width_in, width)))
        layers.append(("hidden" if last else f"act{i}", _activation(activation)))
        width_in = width
    layers.append(("logits", nn.Linear(width_in, n_classes)))
    return nn.Sequential(OrderedDict(layers))


def convnet(
    in_channels: int = 1,
    image_size: int = 28,
    channels: tuple[int, int] | list[int] = (16, 32),
    kernel: int = 5,
    hidden: int = 100,
    n_classes: int = 10,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Two conv + pool blocks, a hidden layer, a linear head (the course's reference net).

    Each block pools *before* its activation: for a monotonic activation (ReLU, sigmoid,
    tanh) max-pooling commutes with it, so the function is the same as conv -> act -> pool,
    but the activation runs on 4x fewer values (about 1.7x faster training on the CPU).
    """
    c1, c2 = channels
    side = ((image_size - kernel + 1) // 2 - kernel + 1) // 2  # spatial size after the two blocks
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for two {kernel}x{kernel} conv + pool blocks")
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, c1, kernel),
            pool1=nn.MaxPool2d(2),
            act1=_activation(activation),
            conv2=nn.Conv2d(c1, c2, kernel),
            pool2=nn.MaxPool2d(2),
            act2=_activation(activation),
            flatten=nn.Flatten(),
            fc=nn.Linear(c2 * side * side, hidden),
            hidden=_activation(activation),  # the penultimate representation (E4)
            dropout=nn.Dropout(dropout),
            logits=nn.Linear(hidden, n_classes),
        )
    )


def build_model(spec: dict, seed: int | None = None) -> nn.Module:
    """Build a model from a spec; `seed` makes its initial weights reproducible."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODEL_KINDS)}")
    if seed is not None:
        torch.manual_seed(seed)
    return {"logreg": logistic_regression, "mlp": mlp, "convnet": convnet}[kind](**spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(path: str | Path, spec: dict, model: nn.Module) -> None:
    """Weights and the spec that rebuilds them, written atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    io.save_torch(path, {"spec": spec, "state_dict": state})


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a saved model; weights_only=True so a checkpoint cannot run code."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} not found; run the stage that trains it first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(saved["spec"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["spec"]
