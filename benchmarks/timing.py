"""What the benchmark scripts share: timing a step, naming the CPU, and this machine's limit.

The limit: a ratio to a baseline says how much faster ours is, not whether more was there to
gain. So each benchmark also times, in the same run, the operations that carry its FLOPs alone:

- `gemm_work`: the same matrix products (shapes, layout, dtype, threads) as torch.mm / bmm on
  pre-made tensors into pre-made outputs, FLOPs counted as 2 m n k each;
- `layer_work`: the same convolutions and linear layers as a model runs (captured with forward
  hooks: shapes, strides, memory format, dtype), each alone on pre-made tensors, forward only or
  forward + backward; FLOPs counted from the layers' shapes (tests/test_benchmarks.py checks the
  count against torch.utils.flop_counter).

and `report_limit` prints the fraction of that throughput ours reaches, then a verdict: where the
ratio falls short of its target, is it our slack (ours far below the limit) or the hardware (ours
near it, or the target out of reach even at the limit)? `gemm_peak` gives the machine's large-GEMM
throughput for context, and `machine_line` names the CPU, its vector ISA and whether it computes
bf16 natively (the avx512_bf16 / amx_bf16 flags).

Each benchmark ends with one `record: {...}` JSON line (`print_record`), which
benchmarks/record.py collects into the rows of docs/performance.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

HARDWARE_AT = 0.70  # ours at or above this fraction of the limit: what is left is the hardware's


def seconds_per_call(step, seconds: float, warmup: int = 1, min_calls: int = 2, rounds: int = 1) -> float:
    """Seconds per call of step(), over at least `seconds` (and `min_calls` calls) after a warm-up.

    rounds > 1: the time is cut into that many slices and the median slice's time per call is
    returned, so that one stall of a shared machine does not move the figure.
    """
    for _ in range(warmup):
        step()
    per_round = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < seconds / rounds:
            step()
            calls += 1
        per_round.append((time.perf_counter() - start) / calls)
    return statistics.median(per_round)


def interleaved_seconds_per_call(steps: dict[str, Callable[[], object]], seconds: float, rounds: int = 5,
                                 warmup: int = 1, min_calls: int = 1) -> dict[str, float]:
    """Seconds per call of each step, timed in turns (`rounds` slices of each, who goes first
    alternating), the median slice of each: a slow spell of a shared machine hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            times[name].append(seconds_per_call(steps[name], seconds / rounds / len(steps), warmup=0, min_calls=min_calls))
    return {name: statistics.median(values) for name, values in times.items()}


# --------------------------------------------------------------------------- the CPU


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_name() -> str:
    """The CPU's model name, with the architecture and logical CPU count."""
    return f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} logical CPUs)"


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_flags() -> list[str]:
    """The CPU flags that mean native bf16 arithmetic (what reprodl.precision tests for)."""
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in cpu_flags()]


def vector_isa() -> str:
    """The widest vector ISA the CPU has, as the tables name it."""
    flags = cpu_flags()
    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("asimd", "NEON")):
        if flag in flags:
            return name
    return platform.machine()


def cpu_kind() -> str:
    """The CPU kind of a table row: model and ISA, e.g. "AMD EPYC, AVX2"."""
    return f"{cpu_model()}, {vector_isa()}"


def machine_line(threads: int) -> str:
    flags = bf16_flags()
    bf16 = (f"yes ({', '.join(flags)})" if flags
            else "no (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo: bf16 would be emulated here, so precision auto runs fp32)")
    return f"CPU: {cpu_name()}; vector ISA {vector_isa()}; native bf16: {bf16}; {threads} torch thread(s)"


# --------------------------------------------------------------------------- the limit


@dataclass(frozen=True)
class Limit:
    """What the machine did for the work alone: `flops` per call in `seconds` per call."""

    what: str
    flops: float
    seconds: float

    @property
    def rate(self) -> float:
        return self.flops / self.seconds


@dataclass(frozen=True)
class Work:
    """The FLOP-carrying operations of a benchmark's work, ready to time: step() runs them once."""

    what: str
    flops: float
    step: Callable[[], None]

    def at(self, seconds: float) -> Limit:
        """The limit, when step() took `seconds` per call."""
        return Limit(self.what, self.flops, seconds)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Gemm:
    """One matrix product of a step: C (m, n) = A (m, k) @ B (k, n), `batch` of them with bmm
    (0: a plain mm), A or B read through a transpose (a_t: A is stored (k, m)), accumulated into
    C in place (addmm_ / baddbmm_) or written to a fresh C, `count` times per step."""

    m: int
    n: int
    k: int
    batch: int = 0
    a_t: bool = False
    b_t: bool = False
    accumulate: bool = False
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k * max(self.batch, 1) * self.count


def gemm_flops(gemms: list[Gemm]) -> int:
    return sum(g.flops for g in gemms)


def _gemm_call(g: Gemm, dtype, backend: str = "torch") -> Callable[[], None]:
    import torch

    lead = (g.batch,) if g.batch else ()
    a = torch.randn(*lead, g.k, g.m, dtype=dtype).transpose(-1, -2) if g.a_t else torch.randn(*lead, g.m, g.k, dtype=dtype)
    b = torch.randn(*lead, g.n, g.k, dtype=dtype).transpose(-1, -2) if g.b_t else torch.randn(*lead, g.k, g.n, dtype=dtype)
    c = torch.zeros(*lead, g.m, g.n, dtype=dtype)
    if backend == "numpy":
        import numpy as np

        a, b, c = a.numpy(), b.numpy(), c.numpy()
        op = (lambda: np.subtract(c, a @ b, out=c)) if g.accumulate else (lambda: np.matmul(a, b, out=c))
    elif g.accumulate:
        op = (lambda: c.baddbmm_(a, b, alpha=-1)) if g.batch else (lambda: c.addmm_(a, b, alpha=-1))
    else:
        op = (lambda: torch.bmm(a, b, out=c)) if g.batch else (lambda: torch.mm(a, b, out=c))
    if g.count == 1:
        return op

    def repeated():
        for _ in range(g.count):
            op()

    return repeated


def gemm_work(gemms: list[Gemm], dtype=None, what: str = "the same GEMMs alone", backend: str = "torch") -> Work:
    """These GEMMs on pre-made tensors, one after another as a step runs them; backend "torch"
    (torch.mm / bmm) or "numpy" (np.matmul, float32 only)."""
    import torch

    dtype = dtype or torch.float32
    calls = [_gemm_call(g, dtype, backend) for g in gemms]

    def step():
        with torch.inference_mode():
            for call in calls:
                call()

    return Work(f"{what} ({str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} thread(s))", gemm_flops(gemms), step)


def gemm_limit(gemms: list[Gemm], dtype=None, threads: int | None = None, seconds: float = 0.3, what: str = "the same GEMMs alone") -> Limit:
    """The machine's throughput for exactly these GEMMs, one after another as a step runs them."""
    with torch_threads(threads):
        work = gemm_work(gemms, dtype, what)
        return work.at(seconds_per_call(work.step, seconds, warmup=2, min_calls=3, rounds=3))


def gemm_peak(dtype=None, threads: int | None = None, n: int = 1024, seconds: float = 0.3) -> Limit:
    """Large square GEMM throughput: the machine's practical peak for the dtype and threads."""
    import torch

    dtype = dtype or torch.float32
    return gemm_limit([Gemm(n, n, n)], dtype, threads, seconds, what=f"machine peak, one {n}x{n}x{n} mm")


@dataclass
class _Layer:
    module: object
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_grad: bool  # the real step needs the gradient of this layer's input (not the first layer)

    def with_batch(self, batch: int | None) -> "_Layer":
        if batch is None:
            return self
        return _Layer(self.module, (batch, *self.input_shape[1:]), (batch, *self.output_shape[1:]), self.input_grad)

    def flops(self, train: bool) -> int:
        """2 multiply-adds per weight per output position; a backward pass: the weight gradient,
        and the input gradient unless this is the first layer, each as many again."""
        import math

        import torch.nn as nn

        m = self.module
        if isinstance(m, nn.Linear):
            forward = 2 * math.prod(self.output_shape) * m.in_features
        else:
            forward = 2 * math.prod(self.output_shape) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
        return forward * (1 + (1 + self.input_grad if train else 0))


def capture_layers(model, run: Callable[[], object]) -> list[_Layer]:
    """The Conv1d/Conv2d/Linear layers run() calls on `model`, in order, with their shapes."""
    import torch.nn as nn

    layers: list[_Layer] = []

    def hook(module, inputs, output):
        layers.append(_Layer(module, tuple(inputs[0].shape), tuple(output.shape), inputs[0].requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return layers


def layer_flops(model, run: Callable[[], object], *, train: bool = False, batch: int | None = None) -> int:
    """FLOPs of the convolutions and linear layers of run() (at `batch` rows when given)."""
    return sum(layer.with_batch(batch).flops(train) for layer in capture_layers(model, run))


def _layer_call(layer: _Layer, dtype, channels_last: bool, train: bool) -> Callable[[], None]:
    import torch
    import torch.nn as nn

    m = layer.module
    x = torch.randn(layer.input_shape, dtype=dtype)
    w = m.weight.detach().to(dtype)
    b = None if m.bias is None else m.bias.detach().to(dtype)
    if isinstance(m, nn.Linear):
        x2 = x.reshape(-1, m.in_features)
        g = torch.randn(x2.shape[0], m.out_features, dtype=dtype)

        def linear():
            torch.nn.functional.linear(x, w, b)
            if train:
                if layer.input_grad:
                    torch.mm(g, w)  # grad of the input
                torch.mm(g.t(), x2)  # grad of the weight
                if b is not None:
                    g.sum(0)

        return linear
    if channels_last and x.dim() == 4:
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        raise ValueError(f"{m}: only explicit zero padding is supported by the limit")
    g = torch.randn(layer.output_shape, dtype=dtype)  # a gradient of the output's shape and layout
    if channels_last and g.dim() == 4:
        g = g.contiguous(memory_format=torch.channels_last)

    def conv():
        m._conv_forward(x, w, b)
        if train:
            torch.ops.aten.convolution_backward(
                g, x, w, None if b is None else [b.shape[0]], list(m.stride), list(m.padding), list(m.dilation),
                False, [0] * (x.dim() - 2), m.groups, [layer.input_grad, True, b is not None],
            )

    return conv


def layer_work(model, run: Callable[[], object], *, batch: int | None = None, dtype=None, channels_last: bool = True,
               train: bool = False) -> Work:
    """The model's own convolutions and linear layers, each alone on pre-made tensors.

    run() is one real call of the work (a forward, or a forward + backward with train=True): it
    shows which layers run on which shapes; `batch` replaces its leading dimension (run() can
    then be a cheap one-image call). Each layer runs on pre-made tensors of `dtype`
    (channels-last 4-D tensors when channels_last), forward only, or forward plus the input and
    weight gradients the real backward computes. Batch norm, activations, pooling, additions and
    everything else between the layers are left out: they carry no FLOPs in this count.
    """
    import torch

    dtype = dtype or torch.float32
    layers = [layer.with_batch(batch) for layer in capture_layers(model, run)]
    calls = [_layer_call(layer, dtype, channels_last, train) for layer in layers]

    def step():
        with contextlib.nullcontext() if train else torch.inference_mode():
            for call in calls:
                call()

    kinds = "forward + backward" if train else "forward"
    layout = ", channels-last" if channels_last and any(len(layer.input_shape) == 4 for layer in layers) else ""
    flops = sum(layer.flops(train) for layer in layers)
    what = (f"the same {len(layers)} conv/linear layers alone, {kinds}, batch {layers[0].input_shape[0]} "
            f"({str(dtype).removeprefix('torch.')}{layout}, {torch.get_num_threads()} thread(s))")
    return Work(what, flops, step)


# --------------------------------------------------------------------------- the verdict


def _times(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


def report_limit(ours_rate: float, limit: Limit, *, peak: Limit | None = None, baseline_rate: float | None = None,
                 ratio: float | None = None, target: float | None = None, fraction_target: float | None = None,
                 hardware_at: float = HARDWARE_AT) -> dict:
    """Print the limit, the fraction of it ours reaches, and the verdict; return them.

    ours_rate / baseline_rate: FLOP/s of ours and of the baseline on the same work. target: the
    ratio's target (none: no verdict on the ratio); fraction_target: the target also holds when
    ours reaches this fraction of the limit (the grid trainer's "or within 30% of the limit").
    """
    fraction = ours_rate / limit.rate
    print(f"limit: {limit.what}: {limit.rate / 1e9:.2f} GFLOP/s")
    if peak is not None:
        print(f"       {peak.what}: {peak.rate / 1e9:.2f} GFLOP/s (ours at {ours_rate / peak.rate:.0%} of it)")
    line = f"fraction of limit: ours {ours_rate / 1e9:.2f} GFLOP/s of {limit.rate / 1e9:.2f} GFLOP/s ({fraction:.0%})"
    if baseline_rate:
        line += (f"; baseline {baseline_rate / 1e9:.2f} GFLOP/s ({baseline_rate / limit.rate:.0%}), "
                 f"so at most {_times(limit.rate / baseline_rate)} over the baseline on this machine")
    print(line)
    if fraction > 1.0:
        print("       (over 100%: ours beats these operations run alone one by one; the limit is their throughput "
              "as the libraries run them here, not a bound)")
    near = fraction >= hardware_at
    where = f"ours reaches {fraction:.0%} of this machine's limit for the same work"
    holds: bool | None = None
    if target is None or ratio is None:
        verdict = f"no ratio target; {where}: " + ("at the hardware" if near else f"our slack, up to {1 / fraction:.1f}x left")
        kind = "hardware" if near else "slack"
    else:
        at_limit = ratio / fraction  # the ratio ours would have at 100% of the limit
        holds = ratio >= target or (fraction_target is not None and fraction >= fraction_target)
        if ratio >= target:
            verdict, kind = f"the ratio {ratio:.2f}x meets the {target:g}x target; {where}", "met"
        elif fraction_target is not None and fraction >= fraction_target:
            verdict, kind = (f"the ratio {ratio:.2f}x is under {target:g}x, but {where} (>= {fraction_target:.0%}): "
                             "the target holds by the fraction, the rest is the hardware"), "hardware"
        elif at_limit < target:
            verdict = (f"the ratio {ratio:.2f}x falls short of the {target:g}x target because of the hardware: even at "
                       f"100% of the limit it would be {at_limit:.2f}x; {where}")
            kind = "hardware"
            if not near:
                verdict += f", so ours also leaves up to {1 / fraction:.1f}x to our slack"
        elif near:
            verdict, kind = (f"the ratio {ratio:.2f}x falls short of the {target:g}x target because of the hardware: {where} "
                             f"(>= {hardware_at:.0%}); at 100% it would be {at_limit:.2f}x"), "hardware"
        else:
            verdict, kind = (f"the ratio {ratio:.2f}x falls short of the {target:g}x target because of our slack: {where} "
                             f"only (the rest of its time goes outside these operations); at the limit it would be {at_limit:.2f}x"), "slack"
    print(f"verdict: {verdict}")
    return {"fraction": round(fraction, 4), "ours_gflops": round(ours_rate / 1e9, 3), "limit_gflops": round(limit.rate / 1e9, 3),
            "holds": holds, "verdict": kind}


def print_record(benchmark: str, *, ratio: float, target: str, threads: int, precision: str, limit: dict | None, **extra) -> None:
    """The benchmark's one machine-readable line, for benchmarks/record.py."""
    flags = bf16_flags()
    record = {
        "benchmark": benchmark, "date": datetime.date.today().isoformat(), "cpu": cpu_kind(), "bf16_native": bool(flags),
        "threads": threads, "precision": precision, "ratio": round(ratio, 3), "target": target,
        **({} if limit is None else limit), **extra,
    }
    print("record: " + json.dumps(record))
