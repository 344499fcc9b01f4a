"""The training engine and the small models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from reprodl import engine, models


def blobs(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well-separated classes of 1x4x4 'images'."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 4, 4, generator=g) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return x, y


def weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


CFG = engine.TrainConfig(epochs=3, batch_size=16, lr=0.1, momentum=0.9, augment=engine.Augment(shift=1, rotate=5, scale=0.05))


def test_same_seed_same_weights_other_seed_other_weights():
    x, y = blobs()
    runs = []
    for seed in (0, 0, 1):
        model = models.build_model({"kind": "mlp", "n_inputs": 16, "hidden": 8, "n_classes": 2}, seed=seed)
        engine.fit(model, (x, y), None, engine.TrainConfig(**{**CFG.__dict__, "seed": seed}), progress=False)
        runs.append(weights(model))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_fit_learns_and_reports_every_epoch():
    x, y = blobs()
    seen = []
    model = models.build_model({"kind": "logreg", "n_inputs": 16, "n_classes": 2}, seed=0)
    history = engine.fit(model, (x, y), (x[:50], y[:50]), CFG, on_epoch=lambda e, m: seen.append((e, m)), progress=False)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert set(seen[0][1]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    assert len(history.val_accuracy) == 3 and history.val_accuracy[-1] == 1.0
    assert history.train_loss[-1] < history.train_loss[0]


def test_max_batches_caps_each_epoch():
    x, y = blobs(400)
    steps = []
    model = models.build_model({"kind": "logreg", "n_inputs": 16, "n_classes": 2}, seed=0)
    optimizer_step = torch.optim.SGD.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return optimizer_step(self, *args, **kwargs)

    torch.optim.SGD.step = counting_step
    try:
        engine.fit(model, (x, y), None, engine.TrainConfig(epochs=2, batch_size=10, lr=0.1, max_batches=3), progress=False)
    finally:
        torch.optim.SGD.step = optimizer_step
    assert len(steps) == 6


def test_diverging_training_stops_with_a_clear_error():
    x, y = blobs()
    model = models.build_model({"kind": "logreg", "n_inputs": 16, "n_classes": 2}, seed=0)
    with torch.no_grad():
        model.logits.weight.fill_(1e38)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        engine.fit(model, (x, y), None, engine.TrainConfig(epochs=1, batch_size=50, lr=1e30), progress=False)


def test_random_affine_is_identity_without_jitter_and_seeded_with_it():
    x = torch.rand(8, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(engine.random_affine(x, engine.Augment(), g), x, atol=1e-5)
    jitter = engine.Augment(shift=2, rotate=10, scale=0.1)
    a = engine.random_affine(x, jitter, torch.Generator().manual_seed(1))
    b = engine.random_affine(x, jitter, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, x, atol=1e-3)


def test_a_one_pixel_shift_moves_the_image_by_one_pixel():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    moved = engine.random_affine(x, engine.Augment(shift=1), torch.Generator().manual_seed(0))
    # The drawn shift is uniform in [-1, 1] px per axis: the mass stays, its centre moves by < 1 px.
    assert math.isclose(float(moved.sum()), 1.0, rel_tol=1e-4)
    rows = (moved[0, 0].sum(1) * torch.arange(9)).sum()
    assert abs(float(rows) - 4) <= 1.0


def test_logistic_regression_has_7850_parameters():
    assert models.count_parameters(models.build_model({"kind": "logreg"})) == 7850


def test_convnet_pooling_before_activation_is_the_same_function():
    """The ConvNet pools before its activation; for monotonic activations that equals act -> pool."""
    for activation in ("relu", "sigmoid", "tanh"):
        net = models.build_model({"kind": "convnet", "channels": [4, 8], "hidden": 16, "activation": activation}, seed=0).eval()
        act = models.ACTIVATIONS[activation]
        reference = nn.Sequential(net.conv1, act(), nn.MaxPool2d(2), net.conv2, act(), nn.MaxPool2d(2), nn.Flatten(), net.fc, act(), net.logits)
        x = torch.randn(5, 1, 28, 28)
        assert torch.allclose(net(x), reference(x), atol=1e-6)


def test_models_save_and_load_with_their_spec(tmp_path):
    spec = {"kind": "convnet", "channels": [4, 8], "hidden": 16}
    model = models.build_model(spec, seed=3)
    models.save_model(tmp_path / "m.pt", spec, model)
    loaded, loaded_spec = models.load_model(tmp_path / "m.pt")
    assert loaded_spec == spec and torch.equal(weights(loaded), weights(model))
    with pytest.raises(FileNotFoundError, match="run the stage that trains it"):
        models.load_model(tmp_path / "missing.pt")


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model kind 'resnet'"):
        models.build_model({"kind": "resnet"})
    with pytest.raises(ValueError, match="unknown optimizer"):
        engine.make_optimizer("lbfgs", [], 0.1, 0, 0)
    with pytest.raises(ValueError, match="too small"):
        models.build_model({"kind": "convnet", "image_size": 8})
