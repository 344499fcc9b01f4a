"""reprodl.hooks.extract_features: exactly the layer's output, for any batch size, and no hook left behind."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from reprodl import hooks, models

CONV = {"kind": "convnet", "channels": [4, 8], "kernel": 3, "hidden": 16, "image_size": 12, "n_classes": 3, "dropout": 0.5}


def images(n: int = 23) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def chain_to(model: nn.Sequential, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The named layer's output, computed by calling the submodules one after the other (no hooks)."""
    model.eval()
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if name == layer:
                return x
    raise KeyError(layer)


@pytest.mark.parametrize("layer", ["act1", "hidden", "logits"])
def test_features_are_exactly_the_layers_output(layer):
    model, x = models.build_model(CONV, seed=0), images()
    expected = chain_to(models.build_model(CONV, seed=0), layer, x)
    got = hooks.extract_features(model, x, [layer], bf16=False, progress=False)[layer]
    assert got.dtype == torch.float32 and got.shape == (len(x), expected[0].numel())
    # flatten(1) of the logical (N, C, H, W) layout, whatever the memory format the model ran in
    assert torch.allclose(got, expected.flatten(1), atol=1e-5), float((got - expected.flatten(1)).abs().max())


def test_several_layers_at_once_and_an_mlp():
    x = images()
    conv = models.build_model(CONV, seed=0)
    both = hooks.extract_features(conv, x, ["act2", "hidden"], bf16=False, progress=False)
    assert list(both) == ["act2", "hidden"]
    assert torch.allclose(both["hidden"], chain_to(models.build_model(CONV, seed=0), "hidden", x), atol=1e-5)
    assert torch.allclose(both["act2"], chain_to(models.build_model(CONV, seed=0), "act2", x).flatten(1), atol=1e-5)
    spec = {"kind": "mlp", "n_inputs": 144, "hidden": [10, 7], "n_classes": 3}
    mlp = models.build_model(spec, seed=2)
    got = hooks.extract_features(mlp, x, ["act1", "hidden"], bf16=False, progress=False)
    assert got["act1"].shape == (23, 10) and got["hidden"].shape == (23, 7)
    assert torch.equal(got["hidden"], chain_to(models.build_model(spec, seed=2), "hidden", x))


def test_features_do_not_depend_on_the_batch_size():
    model, x = models.build_model(CONV, seed=1), images(37)
    whole = hooks.extract_features(model, x, ["hidden"], batch_size=256, bf16=False, progress=False)["hidden"]
    for batch_size in (1, 5, 36):  # 37 rows: uneven last batches, and a batch of one
        got = hooks.extract_features(model, x, ["hidden"], batch_size=batch_size, bf16=False, progress=False)["hidden"]
        assert got.shape == whole.shape == (37, 16)
        assert torch.allclose(got, whole, atol=1e-6), batch_size


class Boom(nn.Module):
    """Raises on the call numbered `fail_on` (1-based), counting calls."""

    def __init__(self, fail_on: int):
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("boom in the forward pass")
        return x


def test_hooks_are_removed_when_the_forward_pass_raises():
    model = models.build_model({"kind": "mlp", "n_inputs": 144, "hidden": 6, "n_classes": 3}, seed=0)
    model.add_module("boom", Boom(fail_on=2))  # after the logits: the hooked layers have already run on batch 2
    x = images(20)
    with pytest.raises(RuntimeError, match="boom in the forward pass"):
        hooks.extract_features(model, x, ["hidden", "logits"], batch_size=8, bf16=False, progress=False)
    left = {name: len(m._forward_hooks) for name, m in model.named_modules() if m._forward_hooks}
    assert left == {}, f"forward hooks left behind: {left}"
    # A later extraction captures its own batches only (a stale hook would add rows to nothing, or crash).
    got = hooks.extract_features(model, x, ["hidden"], batch_size=8, bf16=False, progress=False)["hidden"]
    assert got.shape == (20, 6)
    assert torch.allclose(got, chain_to(models.build_model({"kind": "mlp", "n_inputs": 144, "hidden": 6, "n_classes": 3}, seed=0), "hidden", x), atol=1e-6)


def test_an_unknown_layer_is_refused_before_any_work():
    model = models.build_model(CONV, seed=0)
    with pytest.raises(KeyError, match="no module named 'hiden'.*did you mean hidden"):
        hooks.extract_features(model, images(), ["hiden"], bf16=False, progress=False)
    assert not any(m._forward_hooks for m in model.modules())
