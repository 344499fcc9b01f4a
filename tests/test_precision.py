"""Precision: fp32, bf16 autocast, or auto (bf16 where the CPU computes it natively)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprodl import engine, models, precision
from configs import compose, errors


def blobs(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 1x12x12 'images': a bright or a dark centre."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 12, 12, generator=g) * 0.3
    x[:, :, 4:8, 4:8] += y.float().view(-1, 1, 1, 1)
    return x, y


def train(precision_name: str, seed: int = 0) -> tuple[torch.nn.Module, engine.History]:
    model = models.build_model({"kind": "convnet", "channels": [4, 8], "kernel": 3, "hidden": 16, "image_size": 12, "n_classes": 2}, seed=seed)
    cfg = engine.TrainConfig(epochs=4, batch_size=32, lr=0.1, momentum=0.9, precision=precision_name)
    history = engine.fit(model, blobs(), None, cfg, progress=False)
    return model, history


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("native", [True, False])
def test_auto_means_bf16_exactly_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.use_bf16("auto") is native
    assert precision.use_bf16("bf16") is True and precision.use_bf16("fp32") is False
    with pytest.raises(ValueError, match="unknown precision 'fp16'; allowed: fp32, bf16, auto"):
        precision.use_bf16("fp16")


def test_bf16_training_learns_keeps_fp32_weights_and_says_so():
    model, history = train("bf16")
    assert history.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "autocast: the weights stay fp32"
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    fp32_model, fp32_history = train("fp32")
    assert fp32_history.precision == "fp32"
    # The steps really ran in bf16: same seed, same batches, other arithmetic, other weights.
    assert not torch.equal(flat(model), flat(fp32_model))
    assert torch.allclose(flat(model), flat(fp32_model), atol=0.1), "but close to the fp32 run"


def test_auto_without_native_bf16_is_exactly_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    auto_model, history = train("auto")
    fp32_model, _ = train("fp32")
    assert history.precision == "fp32" and torch.equal(flat(auto_model), flat(fp32_model))


def test_auto_with_native_bf16_is_exactly_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    auto_model, history = train("auto")
    bf16_model, _ = train("bf16")
    assert history.precision == "bf16" and torch.equal(flat(auto_model), flat(bf16_model))


def test_precision_param_is_checked_and_defaults_to_fp32():
    params = compose()
    assert engine.train_config(params.e1.mlp, seed=0).precision == "fp32"  # mlp sets none: the default
    assert engine.train_config(compose({"e1.mlp.precision": "auto"}).e1.mlp, seed=0).precision == "auto"
    assert errors({"e1.convnet.precision": "fp16"}) == [
        "params.yaml: e1.convnet.precision must be one of fp32, bf16, auto; got 'fp16'"
    ]


def test_fast_affine_grid_equals_torch_affine_grid():
    g = torch.Generator().manual_seed(0)
    for h, w in ((28, 28), (12, 20), (1, 5)):
        theta = torch.randn(7, 2, 3, generator=g)
        expected = F.affine_grid(theta, [7, 1, h, w], align_corners=False)
        assert torch.allclose(engine.affine_grid(theta, h, w), expected, atol=1e-6)
