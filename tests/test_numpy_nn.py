"""reprodl.numpy_nn against torch.autograd: forward, parameter gradients and input gradients of
every module and loss, in float64 on random inputs, to 1e-10 relative."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprodl import numpy_nn as nn

RTOL = 1e-10


def assert_close(ours: np.ndarray, theirs: torch.Tensor, what: str) -> None:
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    scale = max(np.abs(theirs).max(), 1e-300)
    error = np.abs(ours - theirs).max() / scale
    assert error <= RTOL, f"{what}: max relative error {error:.2e}"


def check_module(module: nn.Module, torch_fn, x: np.ndarray, seed: int = 0) -> None:
    """forward == torch_fn(x, **params); for a random upstream delta, the parameter gradients and
    dL/dx equal autograd's for L = sum(y * delta)."""
    x_t = torch.tensor(x, requires_grad=True)
    params_t = {name: torch.tensor(p, requires_grad=True) for name, p in module.params.items()}
    y_t = torch_fn(x_t, **params_t)
    y = module.forward(x)
    assert_close(y, y_t, f"{module!r} forward")

    delta = np.random.default_rng(seed).standard_normal(y.shape)
    (y_t * torch.tensor(delta)).sum().backward()
    module.zero_grad()
    module.backward_update_gradient(x, delta)
    for name, p_t in params_t.items():
        assert_close(module.grads[name], p_t.grad, f"{module!r} d{name}")
    assert_close(module.backward_delta(x, delta), x_t.grad, f"{module!r} dx")


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- modules


def test_linear_matches_autograd():
    module = nn.Linear(7, 5, rng=np.random.default_rng(1))
    check_module(module, lambda x, W, b: x @ W + b, random(11, 7))


def test_linear_gradients_accumulate_until_zero_grad():
    module = nn.Linear(3, 2, rng=np.random.default_rng(0))
    x, delta = random(4, 3), random(4, 2, seed=1)
    module.backward_update_gradient(x, delta)
    module.backward_update_gradient(x, delta)
    np.testing.assert_allclose(module.grads["W"], 2 * x.T @ delta)
    module.zero_grad()
    assert not module.grads["W"].any() and not module.grads["b"].any()


def test_xavier_init_bounds():
    W = nn.Linear(300, 100, rng=np.random.default_rng(0)).params["W"]
    bound = np.sqrt(6 / 400)
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.95 * bound
    assert abs(W.std() - bound / np.sqrt(3)) < 0.01 * bound  # the uniform's std


@pytest.mark.parametrize(
    "module, torch_fn",
    [
        (nn.TanH(), lambda x: torch.tanh(x)),
        (nn.Sigmoid(), lambda x: torch.sigmoid(x)),
        (nn.ReLU(), lambda x: torch.relu(x)),
        (nn.Softmax(), lambda x: torch.softmax(x, dim=-1)),
        (nn.Flatten(), lambda x: torch.flatten(x, 1)),
    ],
    ids=lambda m: type(m).__name__ if isinstance(m, nn.Module) else "",
)
def test_parameter_free_modules_match_autograd(module, torch_fn):
    shape = (6, 3, 5) if isinstance(module, nn.Flatten) else (6, 9)
    check_module(module, torch_fn, 3 * random(*shape))


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise"):
        y = nn.Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize(
    "batch, c_in, c_out, length, k, stride",
    [
        (4, 1, 32, 64, 3, 1),  # E6's USPS layer on the 8x8 stand-in
        (3, 2, 5, 17, 3, 2),  # odd length, stride 2: the last input sample falls in no window
        (2, 3, 4, 20, 5, 3),  # stride 3: windows skip samples
        (5, 4, 2, 9, 4, 1),  # even kernel, odd length
        (1, 2, 3, 4, 4, 2),  # one window exactly the length
        (2, 3, 2, 11, 2, 5),  # stride larger than the kernel: gaps
    ],
)
def test_conv1d_matches_torch(batch, c_in, c_out, length, k, stride):
    module = nn.Conv1D(k, c_in, c_out, stride, rng=np.random.default_rng(2))
    module.params["b"][:] = random(c_out, seed=3)  # non-zero, so the bias term is checked too
    check_module(module, lambda x, W, b: F.conv1d(x, W, b, stride=stride), random(batch, c_in, length))


def test_conv1d_xavier_uses_channels_times_kernel():
    W = nn.Conv1D(3, 4, 8, rng=np.random.default_rng(0)).params["W"]
    assert W.shape == (8, 4, 3)
    assert np.abs(W).max() <= np.sqrt(6 / (4 * 3 + 8 * 3))


@pytest.mark.parametrize(
    "length, k, stride",
    [(64, 2, 2), (17, 2, 2), (15, 3, 2), (16, 3, 1), (10, 4, 3), (5, 5, 1)],
)
def test_maxpool1d_matches_torch(length, k, stride):
    module = nn.MaxPool1D(k, stride)
    check_module(module, lambda x: F.max_pool1d(x, k, stride), random(3, 4, length))


def test_maxpool1d_ties_send_the_gradient_to_the_first_maximum_like_torch():
    # Small integers: many windows hold their maximum twice; overlapping windows (stride 1)
    # can pick the same sample, whose gradient is then the sum of both windows' deltas.
    x = np.random.default_rng(0).integers(0, 3, size=(4, 3, 21)).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, 3, axis=2)
    assert ((windows == windows.max(-1, keepdims=True)).sum(-1) > 1).any(), "the input has ties"
    for stride in (1, 2, 3):
        check_module(nn.MaxPool1D(3, stride), lambda x: F.max_pool1d(x, 3, stride), x)
    constant = np.ones((1, 1, 6))
    dx = nn.MaxPool1D(2, 2).backward_delta(constant, np.ones((1, 1, 3)))
    np.testing.assert_array_equal(dx, [[[1, 0, 1, 0, 1, 0]]])


def test_sequential_matches_the_same_torch_net_end_to_end():
    rng = np.random.default_rng(4)
    net = nn.Sequential(
        nn.Conv1D(3, 2, 4, stride=2, rng=rng), nn.ReLU(), nn.MaxPool1D(2, 2), nn.Flatten(),
        nn.Linear(4 * 3, 5, rng=rng), nn.TanH(), nn.Linear(5, 3, rng=rng),
    )
    conv, lin1, lin2 = net.modules[0], net.modules[4], net.modules[6]
    x, labels = random(6, 2, 15, seed=5), np.array([0, 1, 2, 2, 1, 0])
    loss = nn.CrossEntropyLoss()

    t = {name: torch.tensor(m.params[p], requires_grad=True) for name, m, p in
         [("cW", conv, "W"), ("cb", conv, "b"), ("W1", lin1, "W"), ("b1", lin1, "b"), ("W2", lin2, "W"), ("b2", lin2, "b")]}
    x_t = torch.tensor(x, requires_grad=True)
    h = F.max_pool1d(torch.relu(F.conv1d(x_t, t["cW"], t["cb"], stride=2)), 2, 2).flatten(1)  # (6, 12)
    logits_t = torch.tanh(h @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"]
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()

    logits = net.forward(x)
    assert_close(logits, logits_t, "logits")
    assert abs(loss.forward(labels, logits) - loss_t.item()) <= RTOL * loss_t.item()
    net.zero_grad()
    dx = net.backward(x, loss.backward(labels, logits))
    assert_close(dx, x_t.grad, "dx")
    for name, module, param in [("cW", conv, "W"), ("cb", conv, "b"), ("W1", lin1, "W"), ("W2", lin2, "W"), ("b2", lin2, "b")]:
        assert_close(module.grads[param], t[name].grad, name)
    assert net.n_parameters() == 4 * 2 * 3 + 4 + 12 * 5 + 5 + 5 * 3 + 3


def test_sequential_backward_delta_alone_leaves_the_gradients_untouched():
    net = nn.Sequential(nn.Linear(3, 4, rng=np.random.default_rng(0)), nn.TanH(), nn.Linear(4, 2, rng=np.random.default_rng(1)))
    x, delta = random(5, 3), random(5, 2, seed=1)
    net.forward(x)
    dx = net.backward_delta(x, delta)
    assert all(not g.any() for m in net.modules for g in m.grads.values())
    np.testing.assert_allclose(dx, net.backward(x, delta))


# --------------------------------------------------------------------------- losses


def assert_loss_matches_torch(loss, target, prediction, torch_loss, torch_target, what: str) -> None:
    """loss.forward (the batch mean) and loss.backward (d/dprediction) against torch.autograd."""
    prediction_t = torch.tensor(prediction, requires_grad=True)
    loss_t = torch_loss(prediction_t, torch_target)
    loss_t.backward()
    assert abs(loss.forward(target, prediction) - loss_t.item()) <= RTOL * loss_t.item()
    assert_close(loss.backward(target, prediction), prediction_t.grad, what)


def test_mse_matches_torch():
    y, yhat = random(8, 3), random(8, 3, seed=1)
    assert_loss_matches_torch(nn.MSELoss(), y, yhat, F.mse_loss, torch.tensor(y), "MSE dyhat")


def test_bce_matches_torch():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(10, 1)).astype(np.float64)
    yhat = rng.uniform(0.02, 0.98, size=(10, 1))
    assert_loss_matches_torch(nn.BCELoss(), y, yhat, F.binary_cross_entropy, torch.tensor(y), "BCE dyhat")


def test_bce_of_a_saturated_prediction_is_finite_like_torch():
    y, yhat = np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])
    assert nn.BCELoss().forward(y, yhat) == pytest.approx(F.binary_cross_entropy(torch.tensor(yhat), torch.tensor(y)).item())
    assert np.isfinite(nn.BCELoss().backward(y, yhat)).all()


def test_cross_entropy_on_log_softmax_matches_torch():
    logits, labels = 5 * random(9, 4), np.random.default_rng(1).integers(0, 4, 9)
    logits[0] += 800.0  # large logits: the log-softmax must not overflow
    assert_loss_matches_torch(nn.CrossEntropyLoss(), labels, logits, F.cross_entropy, torch.tensor(labels), "CE dlogits")


# --------------------------------------------------------------------------- shape errors


def test_a_shape_mismatch_names_both_modules_and_both_shapes():
    # The catalogue's USPS net sized for 16x16 images (Linear 4064), fed the 8x8 stand-in (length 64).
    net = nn.Sequential(nn.Conv1D(3, 1, 32), nn.MaxPool1D(2, 2), nn.Flatten(), nn.Linear(4064, 100), nn.ReLU(), nn.Linear(100, 10))
    with pytest.raises(nn.ShapeError) as err:
        net.forward(np.zeros((5, 1, 64)))
    message = str(err.value)
    assert message == (
        "shape mismatch: module 2 Flatten() outputs shape (5, 992), but module 3 Linear(4064, 100) expects (batch, 4064)"
    )


def test_a_bad_input_to_the_first_module_says_so():
    net = nn.Sequential(nn.Conv1D(3, 2, 4), nn.Flatten())
    with pytest.raises(nn.ShapeError, match=r"the input has shape \(5, 64\), but module 0 Conv1D\(k=3, in=2, out=4, stride=1\) expects \(batch, 2, length >= 3\)"):
        net.forward(np.zeros((5, 64)))


def test_a_module_alone_rejects_a_bad_shape():
    with pytest.raises(nn.ShapeError, match=r"Linear\(3, 2\) expects input \(batch, 3\), got \(4, 5\)"):
        nn.Linear(3, 2).forward(np.zeros((4, 5)))
    with pytest.raises(nn.ShapeError, match="length >= 4"):
        nn.MaxPool1D(4).forward(np.zeros((1, 1, 3)))


def test_losses_reject_mismatched_targets():
    with pytest.raises(nn.ShapeError, match=r"MSELoss: targets y have shape \(4,\) but predictions yhat have \(4, 1\)"):
        nn.MSELoss().forward(np.zeros(4), np.zeros((4, 1)))
    with pytest.raises(nn.ShapeError, match="CrossEntropyLoss"):
        nn.CrossEntropyLoss().forward(np.zeros((4, 1), dtype=int), np.zeros((4, 3)))


# --------------------------------------------------------------------------- training


def test_sgd_fits_a_line_with_one_neuron():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(200, 1))
    y = -20 * x - 10
    neuron = nn.Linear(1, 1, rng=rng)
    optimizer = nn.SGD(neuron, nn.MSELoss(), lr=0.1)
    losses = [optimizer.epoch(x, y, batch_size=20, rng=rng) for _ in range(100)]
    assert losses[-1] < 1e-6 < losses[0]
    assert neuron.params["W"].item() == pytest.approx(-20, abs=1e-3)
    assert neuron.params["b"].item() == pytest.approx(-10, abs=1e-3)


def test_sgd_step_is_params_minus_lr_times_gradient():
    net = nn.Linear(3, 2, rng=np.random.default_rng(0))
    x, y = random(4, 3), random(4, 2, seed=1)
    W0 = net.params["W"].copy()
    nn.SGD(net, nn.MSELoss(), lr=0.5).step(x, y)
    expected_grad = x.T @ (2 * (x @ W0 - y) / y.size)
    np.testing.assert_allclose(net.params["W"], W0 - 0.5 * expected_grad)
