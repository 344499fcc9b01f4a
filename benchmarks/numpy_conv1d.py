"""Benchmark: reprodl.numpy_nn.Conv1D (vectorised) vs loops over samples and positions, and torch.

One forward + backward pass (the parameter gradient and the input gradient) of E6's conv layer
(params.yaml e6.usps_conv: kernel, channels, stride, batch_size) on a batch of USPS-sized signals
(16 x 16 = 256 samples, one channel), float32, three ways, in this one run:

- loops: the straightforward implementation the course's reference had, a Python loop over the
  samples of the batch and the positions of the output, NumPy for the channels of one window;
- ours: numpy_nn.Conv1D, strided window views and one tensordot per step, no loop over samples
  or positions;
- torch: torch.nn.functional.conv1d forward and autograd backward, the ceiling.

All three compute the same numbers (checked before timing). One thread each (BLAS via threadpoolctl,
torch.set_num_threads). Prints the CPU, seconds per pass of each, and the speed-up of ours over
the loops.

The limit: the three matrix products a pass amounts to (forward: (B L_out, C_in k) x (C_in k, C_out);
the weight gradient: (C_out, B L_out) x (B L_out, C_in k); the input's: (B L_out, C_out) x
(C_out, C_in k)) on pre-made arrays, one thread, both as torch.mm and as np.matmul (the BLAS
ours calls), timed in turns with ours and torch; the faster of the two is the limit. Prints the fraction of it ours reaches and a verdict (no ratio target).
--quick: shorter timing slices (a few seconds in all).

    python benchmarks/numpy_conv1d.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from threadpoolctl import threadpool_limits

from reprodl import numpy_nn as nn
from timing import (Gemm, gemm_work, interleaved_seconds_per_call, machine_line, print_record, report_limit,  # benchmarks/timing.py
                    seconds_per_call)

ROOT = Path(__file__).resolve().parents[1]
USPS_LENGTH = 16 * 16  # samples: a full-profile USPS image as a 1-D signal


class LoopConv1D:
    """Conv1D the direct way: for every sample, for every output position, one window at a time."""

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int):
        self.W, self.b, self.stride = W, b, stride  # (C_out, C_in, k), (C_out,)
        self.dW, self.db = np.zeros_like(W), np.zeros_like(b)

    def forward(self, x):
        batch, _, length = x.shape
        c_out, _, k = self.W.shape
        out_length = (length - k) // self.stride + 1
        y = np.empty((batch, c_out, out_length), dtype=x.dtype)
        for n in range(batch):
            for l in range(out_length):
                window = x[n, :, l * self.stride : l * self.stride + k]  # (C_in, k)
                y[n, :, l] = np.tensordot(self.W, window, axes=([1, 2], [0, 1])) + self.b
        return y

    def backward(self, x, delta):
        """Adds to dW, db; returns dL/dx."""
        k = self.W.shape[2]
        dx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for l in range(delta.shape[2]):
                start = l * self.stride
                window = x[n, :, start : start + k]  # (C_in, k)
                self.dW += delta[n, :, l][:, None, None] * window[None]  # (C_out, C_in, k)
                self.db += delta[n, :, l]
                dx[n, :, start : start + k] += np.tensordot(delta[n, :, l], self.W, axes=(0, 0))  # (C_in, k)
        return dx


def assert_same(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Equal up to float32 rounding: dW sums batch x positions products, in a different order each way."""
    error = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert error < 1e-5, f"{what}: the implementations disagree (max error {error:.1e} of the largest value)"


def conv_gemms(batch: int, c_in: int, c_out: int, k: int, out_length: int) -> list[Gemm]:
    """The matrix products of one forward + both gradients of Conv1D, as numpy_nn computes them."""
    rows, window = batch * out_length, c_in * k
    return [Gemm(rows, c_out, window), Gemm(c_out, window, rows), Gemm(rows, window, c_out)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timing slices (a few seconds)")
    parser.add_argument("--seconds", type=float, help="timing slice per implementation (default 0.5 with --quick, else 3)")
    args = parser.parse_args(argv)
    slice_seconds = args.seconds if args.seconds is not None else 0.5 if args.quick else 3.0

    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())["e6"]["usps_conv"]
    k, c_out, stride, batch = cfg["kernel"], cfg["channels"], cfg["stride"], cfg["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, USPS_LENGTH), dtype=np.float32)  # (B, C_in, L)
    ours = nn.Conv1D(k, 1, c_out, stride, rng=rng, dtype=np.float32)
    ours.params["b"][:] = rng.standard_normal(c_out)
    delta = rng.standard_normal((batch, c_out, ours.output_length(USPS_LENGTH))).astype(np.float32)  # (B, C_out, L_out)
    loops = LoopConv1D(ours.params["W"], ours.params["b"], stride)
    W_t = torch.tensor(ours.params["W"], requires_grad=True)
    b_t = torch.tensor(ours.params["b"], requires_grad=True)
    x_t, delta_t = torch.tensor(x, requires_grad=True), torch.tensor(delta)

    def step_ours():
        ours.forward(x)
        ours.backward_update_gradient(x, delta)
        return ours.backward_delta(x, delta)

    def step_loops():
        loops.forward(x)
        return loops.backward(x, delta)

    def step_torch():
        W_t.grad = b_t.grad = x_t.grad = None
        F.conv1d(x_t, W_t, b_t, stride=stride).backward(delta_t)
        return x_t.grad

    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        # The same numbers three ways, before any timing.
        ours.zero_grad()
        dx = step_ours()
        assert_same(ours.forward(x), loops.forward(x), "forward")
        assert_same(dx, step_loops(), "dx")
        assert_same(ours.grads["W"], loops.dW, "dW")
        assert_same(dx, step_torch().numpy(), "dx vs torch")
        assert_same(ours.grads["W"], W_t.grad.numpy(), "dW vs torch")

        print(machine_line(1) + f"; numpy {np.__version__}, torch {torch.__version__}")
        print(f"Conv1D(k={k}, in=1, out={c_out}, stride={stride}) on a batch of {batch} x 1 x {USPS_LENGTH} (float32), "
              f"forward + both gradients")
        gemms = conv_gemms(batch, 1, c_out, k, ours.output_length(USPS_LENGTH))
        limits = {backend: gemm_work(gemms, what=f"the same 3 GEMMs alone ({name})", backend=backend)
                  for backend, name in (("torch", "torch.mm"), ("numpy", "np.matmul"))}
        times = {"loops (per sample, per position)": seconds_per_call(step_loops, slice_seconds)}
        turns = interleaved_seconds_per_call({"ours": step_ours, "torch": step_torch, **{f"limit {b}": w.step for b, w in limits.items()}},
                                             4 * slice_seconds, rounds=5, warmup=3)
        times["ours (numpy_nn.Conv1D)"], times["torch conv1d + autograd"] = turns["ours"], turns["torch"]
        fastest = min(limits, key=lambda b: turns[f"limit {b}"])
        limit = limits[fastest].at(turns[f"limit {fastest}"])
    for name, seconds in times.items():
        print(f"{name:34s} {seconds * 1e3:9.3f} ms per pass")
    loops_s, ours_s, torch_s = times.values()
    print(f"time ratio ours / torch conv1d: {ours_s / torch_s:.2f}")
    ratio = loops_s / ours_s
    print(f"speed-up, loops / ours: {ratio:.0f}x")
    result = report_limit(limit.flops / ours_s, limit, baseline_rate=limit.flops / loops_s)
    print_record("numpy_conv1d", ratio=ratio, target="none", threads=1, precision="fp32", limit=result,
                 torch_gflops=round(limit.flops / torch_s / 1e9, 3))


if __name__ == "__main__":
    main()
