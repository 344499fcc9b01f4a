"""The training engine and the small models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from reprodl import config, engine, models


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


def blob(h: int, w: int, row: float, col: float, sigma: float = 1.5) -> torch.Tensor:
    """A Gaussian spot at (row, col) in pixel coordinates: its centroid is (row, col) to within float rounding."""
    rows, cols = torch.arange(h, dtype=torch.float64).view(-1, 1), torch.arange(w, dtype=torch.float64).view(1, -1)
    return torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma**2)).float()


def centroids(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) centroid of each image of a batch (B, 1, H, W)."""
    _, _, h, w = images.shape
    mass = images.sum((1, 2, 3)).double()
    rows = (images.sum((1, 3)).double() * torch.arange(h, dtype=torch.float64)).sum(1) / mass
    cols = (images.sum((1, 2)).double() * torch.arange(w, dtype=torch.float64)).sum(1) / mass
    return rows, cols


def jitter(image: torch.Tensor, augment: engine.Augment, n: int = 64, seed: int = 0) -> torch.Tensor:
    return engine.random_affine(image.expand(n, 1, *image.shape).clone(), augment, torch.Generator().manual_seed(seed))


def test_a_shift_of_s_pixels_moves_the_image_by_at_most_s_pixels_in_each_axis():
    # Not square, so that a shift scaled by the wrong side would show; the spot is far from the borders.
    h, w, s = 17, 25, 2.0
    image = blob(h, w, 8, 12)
    moved = jitter(image, engine.Augment(shift=s))
    assert torch.allclose(moved.sum((1, 2, 3)), image.sum().expand(64), rtol=1e-3), "a shift keeps the mass"
    rows, cols = centroids(moved)
    d_row, d_col = rows - 8, cols - 12
    assert d_row.abs().max() <= s + 0.01 and d_col.abs().max() <= s + 0.01, (d_row.abs().max(), d_col.abs().max())
    # It does move: both ways along both axes, up to nearly s, the axes drawn independently.
    for d in (d_row, d_col):
        assert d.max() > 0.75 * s and d.min() < -0.75 * s, d
        assert (d.abs() > 0.05).float().mean() > 0.9
    assert not torch.allclose(d_row, d_col, atol=0.1)
    assert not torch.allclose(moved, image.expand_as(moved), atol=1e-2)


def polar(images: torch.Tensor, centre: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius (px) and angle (degrees) of each image's centroid about the image centre."""
    rows, cols = centroids(images)
    return torch.hypot(rows - centre, cols - centre), torch.rad2deg(torch.atan2(rows - centre, cols - centre))


def test_a_rotation_of_r_degrees_turns_the_image_by_at_most_r_degrees():
    size, r = 33, 15.0
    centre = (size - 1) / 2  # pixel centres at 0..32: the image's centre is pixel 16
    image = blob(size, size, centre, centre + 8)  # 8 px right of the centre: angle 0, radius 8
    radius, angle = polar(jitter(image, engine.Augment(rotate=r)), centre)
    assert torch.allclose(radius, torch.full_like(radius, 8.0), atol=0.1), "a rotation about the centre keeps the radius"
    assert angle.abs().max() <= r + 0.5, angle.abs().max()
    assert angle.max() > 0.75 * r and angle.min() < -0.75 * r, angle
    assert (angle.abs() > 0.5).float().mean() > 0.9, "with rotate > 0 the output differs from the input"
    still, _ = centroids(jitter(blob(size, size, centre, centre), engine.Augment(rotate=r)))
    assert torch.allclose(still, torch.full_like(still, centre), atol=1e-3), "and moves nothing at the centre"


def test_a_scale_of_z_zooms_the_image_by_at_most_z():
    size, z = 33, 0.2
    centre = (size - 1) / 2
    image = blob(size, size, centre, centre + 8)
    radius, angle = polar(jitter(image, engine.Augment(scale=z)), centre)
    ratio = radius / 8
    assert ratio.min() >= 1 - z - 0.01 and ratio.max() <= 1 + z + 0.01, (ratio.min(), ratio.max())
    assert ratio.max() > 1 + 0.75 * z and ratio.min() < 1 - 0.75 * z, "zooms in and out"
    assert ((ratio - 1).abs() > 0.01).float().mean() > 0.9, "with scale > 0 the output differs from the input"
    assert angle.abs().max() < 0.5, "a zoom about the centre turns nothing"


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


# test_no_dead_params.py checks that adamw and onecycle change the weights relative to sgd at a
# constant rate; here every optimiser and schedule the config accepts trains and learns.
OPTIMIZER_LR = {"sgd": 0.1, "adam": 0.01, "adamw": 0.01, "adadelta": 1.0}


@pytest.mark.parametrize("optimizer", config.OPTIMIZERS)
def test_every_optimiser_the_config_accepts_trains_and_learns(optimizer):
    x, y = blobs()
    model = models.build_model({"kind": "mlp", "n_inputs": 16, "hidden": 8, "n_classes": 2}, seed=0)
    start = weights(model).clone()
    cfg = engine.TrainConfig(epochs=4, batch_size=20, lr=OPTIMIZER_LR[optimizer], optimizer=optimizer, weight_decay=1e-4)
    history = engine.fit(model, (x, y), (x[:50], y[:50]), cfg, progress=False)
    assert type(engine.make_optimizer(optimizer, model.parameters(), 0.1, 0.0, 0.0)).__name__.lower() == optimizer
    after = weights(model)
    assert torch.isfinite(after).all() and not torch.equal(after, start), "the weights moved"
    loss = history.train_loss
    assert all(b < a for a, b in zip(loss, loss[1:])) and loss[-1] < 0.6 * loss[0], loss
    assert history.val_accuracy[-1] > 0.9, "two well-separated blobs (chance: 0.5)"


def test_the_optimisers_are_four_different_updates():
    """Adam and AdamW differ in their weight decay only (L2 in the gradient, or decoupled): give them some."""
    x, y = blobs()
    trained = {}
    for optimizer in config.OPTIMIZERS:
        model = models.build_model({"kind": "mlp", "n_inputs": 16, "hidden": 8, "n_classes": 2}, seed=0)
        engine.fit(model, (x, y), None, engine.TrainConfig(epochs=2, batch_size=20, lr=OPTIMIZER_LR[optimizer], optimizer=optimizer,
                                                          weight_decay=0.05), progress=False)
        trained[optimizer] = weights(model)
    names = list(trained)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(trained[a], trained[b], atol=1e-4), f"{a} and {b} trained the same weights"


def test_the_cosine_schedule_anneals_from_lr_to_zero_per_step():
    model = nn.Linear(2, 2)
    optimizer = engine.make_optimizer("sgd", model.parameters(), 0.4, 0.0, 0.0)
    schedule = engine.make_schedule("cosine", optimizer, 0.4, total_steps=8)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    rates.append(optimizer.param_groups[0]["lr"])
    expected = [0.2 * (1 + math.cos(math.pi * t / 8)) for t in range(9)]
    assert rates == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("schedule", config.SCHEDULES)
def test_every_schedule_trains_learns_and_gives_its_own_weights(schedule):
    x, y = blobs()
    results = {}
    for name in dict.fromkeys(("constant", schedule)):
        model = models.build_model({"kind": "mlp", "n_inputs": 16, "hidden": 8, "n_classes": 2}, seed=0)
        history = engine.fit(model, (x, y), (x[:50], y[:50]), engine.TrainConfig(epochs=3, batch_size=20, lr=0.1, schedule=name), progress=False)
        loss = history.train_loss
        assert all(b < a for a, b in zip(loss, loss[1:])) and loss[-1] < 0.7 * loss[0], (name, loss)
        assert history.val_accuracy[-1] > 0.9, "two well-separated blobs (chance: 0.5)"
        results[name] = weights(model)
    if schedule != "constant":
        assert not torch.equal(results[schedule], results["constant"]), f"{schedule} trained like a constant rate"


# ---------------------------------------------------------------- found by mutation testing (docs/mutation.md)


@pytest.mark.parametrize("optimizer", config.OPTIMIZERS)
def test_make_optimizer_passes_lr_weight_decay_and_sgds_momentum_on(optimizer):
    made = engine.make_optimizer(optimizer, nn.Linear(2, 2).parameters(), 0.125, 0.75, 0.0625)
    group = made.param_groups[0]
    assert group["lr"] == 0.125 and group["weight_decay"] == 0.0625
    if optimizer == "sgd":
        assert group["momentum"] == 0.75


def test_make_optimizer_and_schedule_errors_list_the_allowed_names():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'; allowed: sgd, adam, adamw, adadelta$"):
        engine.make_optimizer("lbfgs", [], 0.1, 0, 0)
    optimizer = engine.make_optimizer("sgd", nn.Linear(2, 2).parameters(), 0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"unknown schedule 'step'; allowed: constant, onecycle, cosine$"):
        engine.make_schedule("step", optimizer, 0.1, total_steps=4)
    with pytest.raises(ValueError, match=r"unknown loss 'l1'; allowed: cross_entropy, bce_with_logits, mse$"):
        engine.loss_function("l1")


def test_the_constant_schedule_is_no_scheduler():
    optimizer = engine.make_optimizer("sgd", nn.Linear(2, 2).parameters(), 0.1, 0.0, 0.0)
    assert engine.make_schedule("constant", optimizer, 0.1, total_steps=4) is None


def test_the_onecycle_schedule_peaks_at_lr_lasts_total_steps_and_keeps_the_momentum():
    optimizer = engine.make_optimizer("sgd", nn.Linear(2, 2).parameters(), 0.4, 0.9, 0.0)
    schedule = engine.make_schedule("onecycle", optimizer, 0.4, total_steps=20)
    rates, momenta = [], []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        schedule.step()
    assert max(rates) == pytest.approx(0.4) and rates[0] < 0.4 / 10, "warms up from a small rate to lr"
    assert rates.index(max(rates)) < 10 and rates[-1] < rates[0], "then anneals below its start"
    assert momenta == [0.9] * 20, "the momentum param is not cycled"
    with pytest.raises(ValueError, match="total steps"):  # the cycle is exactly total_steps long
        optimizer.step()
        schedule.step()


def test_loss_functions_are_the_named_formulas():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25]])
    classes = torch.tensor([0, 1])
    log_softmax = logits - logits.exp().sum(1, keepdim=True).log()
    assert engine.loss_function("cross_entropy")(logits, classes) == pytest.approx(float(-(log_softmax[0, 0] + log_softmax[1, 1]) / 2))
    multi_hot = torch.tensor([[1, 0], [1, 1]])  # integer labels: the loss converts them
    p = torch.sigmoid(logits)
    bce = -(multi_hot * p.log() + (1 - multi_hot) * (1 - p).log()).mean()
    assert engine.loss_function("bce_with_logits")(logits, multi_hot) == pytest.approx(float(bce))
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert engine.loss_function("mse")(logits, target) == pytest.approx(float(((logits - target) ** 2).mean()))


def test_train_config_copies_every_block_field_and_the_call_arguments():
    """Each field set away from its TrainConfig default, so a field dropped or nulled shows."""
    block = config.Train(epochs=3, batch_size=7, lr=0.25, optimizer="adamw", weight_decay=0.5, schedule="cosine",
                         augment=config.Augment(shift=1.5, rotate=2.5, scale=0.125), precision="bf16", max_batches=4)
    made = engine.train_config(block, seed=11, loss="mse", eval_batch_size=64, channels_last=False)
    assert made == engine.TrainConfig(
        epochs=3, batch_size=7, lr=0.25, optimizer="adamw", momentum=0.0, weight_decay=0.5, schedule="cosine", loss="mse",
        augment=engine.Augment(shift=1.5, rotate=2.5, scale=0.125), seed=11, eval_batch_size=64, max_batches=4,
        channels_last=False, precision="bf16",
    )
    sgd = config.Train(epochs=1, batch_size=1, lr=0.25, momentum=0.5)
    assert engine.train_config(sgd, seed=0).momentum == 0.5
    assert engine.train_config(sgd, seed=0, lr=0.75).lr == 0.75, "an explicit lr wins over the block's"


def test_train_config_refuses_an_unknown_loss_listing_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown loss 'l1'; allowed: cross_entropy, bce_with_logits, mse$"):
        engine.train_config(config.Train(epochs=1, batch_size=1, lr=0.1), seed=0, loss="l1")
