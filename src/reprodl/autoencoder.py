"""E5's MLP autoencoder: pixels -> a bottleneck code -> pixels, trained by the shared engine.

    model = autoencoder(784, bottleneck=64, loss="bce")
    engine.fit(model, (x, x.flatten(1)), ..., TrainConfig(loss=ENGINE_LOSS["bce"], ...))  # the target is the input
    codes = encode(model, x)            # (N, 64), the `code` module's output, by forward hook
    images = reconstruct(model, x, "bce")  # (N, 784) in [0, 1]

Both losses train the same function, sigmoid(W2 relu(W1 x + b1) + b2): with loss "mse" the
sigmoid is the model's last module, with loss "bce" the engine's
binary_cross_entropy_with_logits applies it (the numerically stable form), and
`reconstruct` applies it after.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from . import engine, hooks, io

LOSSES = ("mse", "bce")
ENGINE_LOSS = {"mse": "mse", "bce": "bce_with_logits"}


def autoencoder(n_inputs: int, bottleneck: int, loss: str) -> nn.Sequential:
    """Flatten -> Linear -> ReLU (named `code`) -> Linear (`decoder`) [-> Sigmoid for "mse"]."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    layers = OrderedDict(
        flatten=nn.Flatten(),
        encoder=nn.Linear(n_inputs, bottleneck),
        code=nn.ReLU(),  # the bottleneck representation (hooked by `encode`)
        decoder=nn.Linear(bottleneck, n_inputs),
    )
    if loss == "mse":
        layers["output"] = nn.Sigmoid()
    return nn.Sequential(layers)


def encode(model: nn.Module, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """The bottleneck codes (N, bottleneck) of images x (N, C, H, W), taken with a forward hook."""
    return hooks.extract_features(model, x, ["code"], bf16=False, progress=progress, desc="codes")["code"]


def reconstruct(model: nn.Module, x: torch.Tensor, loss: str) -> torch.Tensor:
    """Reconstructions (N, D) in [0, 1] of images x (N, C, H, W)."""
    out = engine.predict(model, x)  # (N, D)
    return torch.sigmoid(out) if loss == "bce" else out


def save_autoencoder(path: str | Path, n_inputs: int, bottleneck: int, loss: str, model: nn.Module) -> None:
    spec = {"n_inputs": n_inputs, "bottleneck": bottleneck, "loss": loss}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    io.save_torch(path, {"spec": spec, "state_dict": state})


def load_autoencoder(path: str | Path) -> tuple[nn.Sequential, dict]:
    """Rebuild a saved autoencoder; weights_only=True so a checkpoint cannot run code."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = autoencoder(**saved["spec"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["spec"]
