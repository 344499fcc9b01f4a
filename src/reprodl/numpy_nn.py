"""A small neural-network library in NumPy, written to show how backpropagation works (E6).

Every module has the course's interface:

    y = module.forward(x)                          # the output for a batch x
    module.backward_update_gradient(x, delta)     # add dL/dparams to the gradient (delta = dL/dy)
    delta_in = module.backward_delta(x, delta)    # dL/dx, passed on to the module before
    module.update_parameters(gradient_step)       # params -= gradient_step * gradient
    module.zero_grad()                            # gradient = 0

Losses have `forward(y, yhat) -> float` (the batch mean) and `backward(y, yhat) -> dL/dyhat`.
Sequential chains modules and checks that each one's output fits the next one's input;
SGD runs mini-batch gradient descent. Shapes follow torch: a batch comes first, and 1-D
signals are (B, C, L) (batch, channels, length), so every module can be checked against
torch.autograd (tests/test_numpy_nn.py).

Conv1D and MaxPool1D are vectorised: their windows are a strided view of the input
(numpy.lib.stride_tricks.sliding_window_view, no copy) and a whole batch is one tensordot,
with no Python loop over samples or positions.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class ShapeError(ValueError):
    """An array whose shape a module (or loss) cannot take."""


# --------------------------------------------------------------------------- modules


class Module:
    """Base class: a module without parameters (its gradient methods do nothing)."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_update_gradient(self, x: np.ndarray, delta: np.ndarray) -> None:
        pass

    def backward_delta(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Both backward steps at once: accumulate the gradient, return dL/dx."""
        self.backward_update_gradient(x, delta)
        return self.backward_delta(x, delta)

    def update_parameters(self, gradient_step: float = 1e-3) -> None:
        for name, param in self.params.items():
            param -= gradient_step * self.grads[name]

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0.0)

    # Shape checks: `expects` describes the input a module takes, `accepts` tests a shape.
    expects = "any shape"

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return True

    def check_input(self, x: np.ndarray) -> None:
        if not self.accepts(x.shape):
            raise ShapeError(f"{self!r} expects input {self.expects}, got {x.shape}")

    def n_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def xavier_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot & Bengio (2010): U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) keeps the
    variance of activations and of gradients about the same from layer to layer."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


class Linear(Module):
    """y = x W + b, with W (in_features, out_features) Xavier-initialised and b = 0."""

    def __init__(self, in_features: int, out_features: int, *, rng: np.random.Generator | None = None, dtype=np.float64):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.in_features, self.out_features = in_features, out_features
        self.params = {
            "W": xavier_uniform(rng, (in_features, out_features), in_features, out_features).astype(dtype),  # (D_in, D_out)
            "b": np.zeros(out_features, dtype=dtype),  # (D_out,)
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    @property
    def expects(self) -> str:
        return f"(batch, {self.in_features})"

    def accepts(self, shape):
        return len(shape) == 2 and shape[1] == self.in_features

    def forward(self, x):
        self.check_input(x)
        return x @ self.params["W"] + self.params["b"]  # (B, D_in) @ (D_in, D_out) -> (B, D_out)

    def backward_update_gradient(self, x, delta):
        self.grads["W"] += x.T @ delta  # (D_in, B) @ (B, D_out): every sample's outer product, summed
        self.grads["b"] += delta.sum(0)

    def backward_delta(self, x, delta):
        return delta @ self.params["W"].T  # (B, D_out) @ (D_out, D_in) -> (B, D_in)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


# Activations: elementwise, so dL/dx = dL/dy * f'(x), with f' written in terms of the output
# where that is cheaper (tanh' = 1 - tanh^2, sigmoid' = s (1 - s)).


class TanH(Module):
    def forward(self, x):
        return np.tanh(x)

    def backward_delta(self, x, delta):
        y = np.tanh(x)
        return delta * (1.0 - y * y)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 (1 + tanh(x / 2)) equals 1 / (1 + e^-x) without overflowing exp for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Sigmoid(Module):
    def forward(self, x):
        return _sigmoid(x)

    def backward_delta(self, x, delta):
        s = _sigmoid(x)
        return delta * s * (1.0 - s)


class ReLU(Module):
    def forward(self, x):
        return np.maximum(x, 0.0)

    def backward_delta(self, x, delta):
        return delta * (x > 0)  # the derivative at exactly 0 is taken as 0, as torch does


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)  # exp of the largest is 1: no overflow
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Softmax(Module):
    """Probabilities over the last axis. Its Jacobian is diag(s) - s s^T, so
    dL/dx = s * (delta - <delta, s>) without building the (K, K) matrix per sample."""

    def forward(self, x):
        return np.exp(_log_softmax(x))

    def backward_delta(self, x, delta):
        s = self.forward(x)
        return s * (delta - (delta * s).sum(axis=-1, keepdims=True))


class Flatten(Module):
    """(B, ...) -> (B, everything else); row-major, as torch.flatten(x, 1)."""

    expects = "(batch, ...) with at least 2 axes"

    def accepts(self, shape):
        return len(shape) >= 2

    def forward(self, x):
        self.check_input(x)
        return x.reshape(len(x), -1)

    def backward_delta(self, x, delta):
        return delta.reshape(x.shape)


def _out_length(length: int, kernel_size: int, stride: int) -> int:
    return (length - kernel_size) // stride + 1  # windows that fit entirely ("valid", no padding)


def _windows(x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """(B, C, L) -> (B, C, L_out, k): every window of every channel, a view of x (no copy)."""
    return sliding_window_view(x, kernel_size, axis=2)[:, :, ::stride]


def _first_max(windows: np.ndarray) -> np.ndarray:
    """(..., k) -> the index of each window's first maximum (a tie goes to the earlier tap, as in torch).

    One comparison per tap: NumPy's argmax and max over a short last axis of a strided view run
    an inner loop of k per window and were 5-40x slower here than k whole-array steps."""
    best = windows[..., 0]
    first = np.zeros(best.shape, dtype=np.intp)
    for j in range(1, windows.shape[-1]):
        tap = windows[..., j]
        better = tap > best  # strict: an equal later tap does not take over
        best = np.where(better, tap, best)
        first[better] = j
    return first


def _scatter_windows(window_grads: np.ndarray, length: int, stride: int) -> np.ndarray:
    """The adjoint of _windows: (B, C, L_out, k) -> (B, C, L), each window's values added back
    where the window came from (windows overlap when stride < k, so the sums matter).

    One strided slice per kernel tap j: position l * stride + j gets window l's tap j. A loop
    over the k taps (3 in E6), not over samples or positions; each step adds B * C * L_out values.
    """
    batch, channels, out_length, kernel_size = window_grads.shape
    dx = np.zeros((batch, channels, length), dtype=window_grads.dtype)
    for j in range(kernel_size):
        dx[:, :, j : j + stride * (out_length - 1) + 1 : stride] += window_grads[..., j]
    return dx


class Conv1D(Module):
    """1-D convolution (cross-correlation, like torch), no padding:
    y[b, o, l] = bias[o] + sum_{c, j} W[o, c, j] x[b, c, l * stride + j].

    x (B, C_in, L) -> y (B, C_out, L_out), L_out = (L - k) // stride + 1.
    """

    def __init__(
        self, kernel_size: int, in_channels: int, out_channels: int, stride: int = 1, *, rng: np.random.Generator | None = None, dtype=np.float64
    ):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.kernel_size, self.in_channels, self.out_channels, self.stride = kernel_size, in_channels, out_channels, stride
        shape = (out_channels, in_channels, kernel_size)  # torch's layout
        self.params = {
            "W": xavier_uniform(rng, shape, in_channels * kernel_size, out_channels * kernel_size).astype(dtype),  # (C_out, C_in, k)
            "b": np.zeros(out_channels, dtype=dtype),  # (C_out,)
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    @property
    def expects(self) -> str:
        return f"(batch, {self.in_channels}, length >= {self.kernel_size})"

    def accepts(self, shape):
        return len(shape) == 3 and shape[1] == self.in_channels and shape[2] >= self.kernel_size

    def output_length(self, length: int) -> int:
        return _out_length(length, self.kernel_size, self.stride)

    def forward(self, x):
        self.check_input(x)
        windows = _windows(x, self.kernel_size, self.stride)  # (B, C_in, L_out, k)
        # Sum over input channels and taps: (B, C_in, L_out, k) . (C_out, C_in, k) -> (B, L_out, C_out)
        y = np.tensordot(windows, self.params["W"], axes=([1, 3], [1, 2]))
        return y.transpose(0, 2, 1) + self.params["b"][:, None]  # (B, C_out, L_out)

    def backward_update_gradient(self, x, delta):
        windows = _windows(x, self.kernel_size, self.stride)  # (B, C_in, L_out, k)
        # dW[o, c, j] = sum_{b, l} delta[b, o, l] x[b, c, l * stride + j]
        self.grads["W"] += np.tensordot(delta, windows, axes=([0, 2], [0, 2]))  # (C_out, C_in, k)
        self.grads["b"] += delta.sum(axis=(0, 2))

    def backward_delta(self, x, delta):
        # Each window's gradient: dL/dwindow[b, c, l, j] = sum_o delta[b, o, l] W[o, c, j]
        window_grads = np.tensordot(delta, self.params["W"], axes=([1], [0]))  # (B, L_out, C_in, k)
        return _scatter_windows(window_grads.transpose(0, 2, 1, 3), x.shape[2], self.stride)  # (B, C_in, L)

    def __repr__(self):
        return f"Conv1D(k={self.kernel_size}, in={self.in_channels}, out={self.out_channels}, stride={self.stride})"


class MaxPool1D(Module):
    """The maximum of each window, per channel: (B, C, L) -> (B, C, L_out).

    The gradient goes to the first maximum of each window only (ties included), as torch's does.
    """

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size

    @property
    def expects(self) -> str:
        return f"(batch, channels, length >= {self.kernel_size})"

    def accepts(self, shape):
        return len(shape) == 3 and shape[2] >= self.kernel_size

    def output_length(self, length: int) -> int:
        return _out_length(length, self.kernel_size, self.stride)

    def forward(self, x):
        self.check_input(x)
        windows = _windows(x, self.kernel_size, self.stride)  # (B, C, L_out, k)
        pooled = windows[..., 0]
        for j in range(1, self.kernel_size):  # tap by tap, see _first_max
            pooled = np.maximum(pooled, windows[..., j])
        return pooled  # (B, C, L_out)

    def backward_delta(self, x, delta):
        batch, channels, length = x.shape
        winner = _first_max(_windows(x, self.kernel_size, self.stride))  # (B, C, L_out): tap of each window's maximum
        position = winner + self.stride * np.arange(winner.shape[2])  # (B, C, L_out): its index in x
        # Flat index of every winner in x; bincount adds up the deltas of windows that share a
        # winner (overlapping windows, stride < k) in one vectorised pass.
        row = np.arange(batch * channels).reshape(batch, channels, 1) * length  # (B, C, 1)
        dx = np.bincount((row + position).ravel(), weights=delta.ravel(), minlength=batch * channels * length)
        return dx.reshape(x.shape).astype(delta.dtype, copy=False)

    def __repr__(self):
        return f"MaxPool1D(k={self.kernel_size}, stride={self.stride})"


class Sequential(Module):
    """Modules applied in order. The forward pass keeps each module's input for the backward
    pass; a module whose input does not fit raises one ShapeError naming both modules and shapes."""

    def __init__(self, *modules: Module):
        super().__init__()
        self.modules = list(modules)
        self._inputs: list[np.ndarray] = []

    @property
    def expects(self) -> str:
        return self.modules[0].expects if self.modules else "any shape"

    def accepts(self, shape):
        return not self.modules or self.modules[0].accepts(shape)

    def forward(self, x):
        self._inputs = []
        for i, module in enumerate(self.modules):
            if not module.accepts(x.shape):
                given = f"module {i - 1} {self.modules[i - 1]!r} outputs" if i else "the input has"
                raise ShapeError(f"shape mismatch: {given} shape {x.shape}, but module {i} {module!r} expects {module.expects}")
            self._inputs.append(x)
            x = module.forward(x)
        return x

    def _keep_inputs_of(self, x) -> None:
        if len(self._inputs) != len(self.modules) or self._inputs[0] is not x:
            self.forward(x)  # the kept inputs belong to another batch

    def backward(self, x, delta):
        """One reverse pass: each module adds to its gradient and hands dL/d(its input) back."""
        self._keep_inputs_of(x)
        for module, module_input in zip(reversed(self.modules), reversed(self._inputs)):
            delta = module.backward(module_input, delta)
        return delta

    def backward_update_gradient(self, x, delta):
        self.backward(x, delta)

    def backward_delta(self, x, delta):
        self._keep_inputs_of(x)
        for module, module_input in zip(reversed(self.modules), reversed(self._inputs)):
            delta = module.backward_delta(module_input, delta)
        return delta

    def update_parameters(self, gradient_step=1e-3):
        for module in self.modules:
            module.update_parameters(gradient_step)

    def zero_grad(self):
        for module in self.modules:
            module.zero_grad()

    def n_parameters(self) -> int:
        return sum(m.n_parameters() for m in self.modules)

    def __repr__(self):
        return "Sequential(" + ", ".join(map(repr, self.modules)) + ")"


# --------------------------------------------------------------------------- losses


class Loss:
    """forward(y, yhat): the mean loss of the batch; backward(y, yhat): its gradient dL/dyhat."""

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_same_shape(self, y, yhat) -> None:
        if y.shape != yhat.shape:
            raise ShapeError(f"{type(self).__name__}: targets y have shape {y.shape} but predictions yhat have {yhat.shape}")


class MSELoss(Loss):
    """Mean over every element of (y - yhat)^2 (torch's MSELoss)."""

    def forward(self, y, yhat):
        self._check_same_shape(y, yhat)
        return float(np.mean((y - yhat) ** 2))

    def backward(self, y, yhat):
        self._check_same_shape(y, yhat)
        return 2.0 * (yhat - y) / y.size


class BCELoss(Loss):
    """Binary cross-entropy on probabilities yhat in (0, 1), mean over every element.
    The log is floored at -100, as in torch, so a saturated sigmoid gives a large finite loss."""

    def forward(self, y, yhat):
        self._check_same_shape(y, yhat)
        with np.errstate(divide="ignore"):  # log(0) = -inf, floored just below
            log_p = np.maximum(np.log(yhat), -100.0)
            log_not_p = np.maximum(np.log1p(-yhat), -100.0)
        return float(-np.mean(y * log_p + (1.0 - y) * log_not_p))

    def backward(self, y, yhat):
        self._check_same_shape(y, yhat)
        eps = 1e-12  # keeps the division finite where the log was floored
        return (yhat - y) / np.maximum(yhat * (1.0 - yhat), eps) / y.size


class CrossEntropyLoss(Loss):
    """Cross-entropy on log-softmax: yhat are logits (B, K), y class indices (B,).
    L = mean_b (logsumexp(yhat_b) - yhat_b[y_b]); dL/dyhat = (softmax(yhat) - onehot(y)) / B."""

    def _check(self, y, yhat):
        if yhat.ndim != 2 or y.shape != (len(yhat),):
            raise ShapeError(f"CrossEntropyLoss: logits yhat must be (batch, classes) and labels y (batch,); got yhat {yhat.shape}, y {y.shape}")

    def forward(self, y, yhat):
        self._check(y, yhat)
        log_p = _log_softmax(yhat)  # (B, K)
        return float(-log_p[np.arange(len(y)), y].mean())

    def backward(self, y, yhat):
        self._check(y, yhat)
        grad = np.exp(_log_softmax(yhat))  # (B, K): softmax
        grad[np.arange(len(y)), y] -= 1.0
        return grad / len(y)


# --------------------------------------------------------------------------- training


class SGD:
    """Mini-batch stochastic gradient descent: one step = forward, loss, backward, update."""

    def __init__(self, model: Module, loss: Loss, lr: float):
        self.model, self.loss, self.lr = model, loss, lr

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One update on the batch (x, y); returns the batch's loss before the update."""
        self.model.zero_grad()
        yhat = self.model.forward(x)
        loss = self.loss.forward(y, yhat)
        self.model.backward(x, self.loss.backward(y, yhat))
        self.model.update_parameters(self.lr)
        return loss

    def epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> float:
        """One pass over (x, y) in shuffled mini-batches (the last one may be smaller); the mean
        loss over the samples, each batch's loss taken before its update."""
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            total += self.step(x[idx], y[idx]) * len(idx)
        return total / len(x)


def predict(model: Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's outputs for x, computed batch by batch (bounded memory for large x)."""
    return np.concatenate([model.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
