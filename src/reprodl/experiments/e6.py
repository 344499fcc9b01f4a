"""E6. The course's experiments on reprodl.numpy_nn, a NumPy library with hand-written backprop.

`run_e6(cfg, prepared_root, ...)` trains, each with the library's mini-batch SGD:

- regression: one neuron on y = slope x + intercept + noise (MSE): the weights it finds;
- blobs: two Gaussian blobs, a linear classifier (Linear -> Sigmoid, BCE);
- xor: four Gaussians at (+-1, +-1), Linear -> TanH -> Linear -> Sigmoid, full batch and mini-batches;
- mnist_mlp, usps_mlp: MLPs with cross-entropy on log-softmax, on data/prepared/<dataset>;
- usps_conv: Conv1D -> MaxPool1D -> Flatten -> Linear -> ReLU -> Linear on the images as 1-D signals,
  the Linear layer after Flatten sized from the data.

It returns {"e6": {task: headline numbers}}, draws the 2-D tasks (plots/e6/figures/*.png), sends the
per-epoch curves to the tracker and writes the report. The stage script is stages/e6.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import datasets, io, numpy_nn as nn
from ..config import E6, E6MLP, E6Blobs, E6Conv, E6Regression, E6Xor, ParamError
from ..references import E6 as REFERENCE  # the catalogue's numbers, shared with the study page
from ..tables import format_table
from ..tracking import Tracker

ACTIVATIONS = {"tanh": nn.TanH, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
# The image tasks train in float32: half the memory traffic of float64 and about twice the matrix
# products per second, with no change in accuracy at these sizes. The gradient checks run in float64.
IMAGE_DTYPE = np.float32


def run_e6(
    cfg: E6,
    prepared_root: Path,
    *,
    figures_dir: Path,
    report_path: Path,
    tracker: Tracker | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """prepared_root holds data/prepared/<dataset> for the image tasks' datasets."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the matrix products here are small (at most 32 x 992 x 100), and splitting
    # them costs more than it saves. On the shared 2-core machine two OpenBLAS threads made the
    # whole run 8x slower (44 s against 5.6 s).
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_e6(cfg, Path(prepared_root), Path(figures_dir), Path(report_path), tracker, seed, progress)


def _run_e6(cfg: E6, prepared_root: Path, figures_dir: Path, report_path: Path, tracker: Tracker | None, seed: int, progress: bool) -> dict:
    results: dict[str, dict] = {}
    details: dict[str, dict] = {}  # what the report shows beyond the metrics
    curves: dict[str, list[float]] = {}  # train loss per epoch, for the loss-curve figure

    def log(task: str, epoch: int, measures: dict[str, float]) -> None:
        curves.setdefault(task, []).append(measures["train_loss"])
        if tracker:
            tracker.epoch(task, epoch, measures)
        if progress and (epoch == 1 or epoch % 10 == 0):
            print(f"e6 {task}: epoch {epoch}, " + ", ".join(f"{k} {v:.4f}" for k, v in measures.items()))

    # The image data first: a missing prepared dataset stops the run before any training.
    image_tasks = {"mnist_mlp": cfg.mnist_mlp, "usps_mlp": cfg.usps_mlp, "usps_conv": cfg.usps_conv}
    metas = {name: datasets.load_meta(prepared_root / c.dataset) for name, c in image_tasks.items()}
    data = {name: {s: datasets.load_split(prepared_root / c.dataset, s) for s in datasets.SPLITS} for name, c in image_tasks.items()}
    conv_output_length(cfg.usps_conv, math.prod(metas["usps_conv"]["image_shape"][1:]))  # ParamError if the images are too small

    # Each task has its own seeded generators, so changing one task's params leaves the others alone.
    start = time.perf_counter()
    results["regression"], details["regression"] = regression(cfg.regression, figures_dir / "regression.png", _rng(seed, 0), log)
    results["regression"]["seconds"] = _since(start)

    start = time.perf_counter()
    results["blobs"], details["blobs"] = blobs(cfg.blobs, figures_dir / "blobs.png", _rng(seed, 1), log)
    results["blobs"]["seconds"] = _since(start)

    for name, batch_size in (("xor_full_batch", None), ("xor_minibatch", cfg.xor.batch_size)):
        start = time.perf_counter()
        results[name], details[name] = xor(cfg.xor, batch_size, name, figures_dir / f"{name}.png", _rng(seed, 2), log)
        results[name]["seconds"] = _since(start)

    for index, (name, task_cfg) in enumerate(image_tasks.items(), start=3):
        start = time.perf_counter()
        n_classes = len(metas[name]["classes"])
        results[name], details[name] = image_task(name, task_cfg, data[name], n_classes, _rng(seed, index), log)
        results[name]["seconds"] = _since(start)
        print(f"e6 {name}: test accuracy {results[name]['test_accuracy']:.4f} ({results[name]['seconds']:.1f} s)")

    draw_loss_curves(curves, figures_dir / "loss_curves.png")
    io.write_text(report_path, e6_report(cfg, results, details, metas))
    return {"e6": results}


def _rng(seed: int, task: int) -> np.random.Generator:
    return np.random.default_rng([seed, task])


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def train(optimizer: nn.SGD, x, y, epochs: int, batch_size: int, rng, task: str, log, evaluate=None) -> None:
    """`epochs` passes of mini-batch SGD; after each, log the train loss and evaluate()'s measures."""
    for epoch in range(1, epochs + 1):
        measures = {"train_loss": optimizer.epoch(x, y, batch_size, rng)}
        if evaluate:
            measures |= evaluate()
        log(task, epoch, measures)


# --------------------------------------------------------------------------- the 2-D tasks


def regression(cfg: E6Regression, figure: Path, rng: np.random.Generator, log) -> tuple[dict, dict]:
    x = rng.uniform(-1.0, 1.0, size=(cfg.points, 1))  # (N, 1)
    y = cfg.slope * x + cfg.intercept + cfg.noise * rng.standard_normal((cfg.points, 1))  # (N, 1)
    neuron = nn.Linear(1, 1, rng=rng)
    train(nn.SGD(neuron, nn.MSELoss(), cfg.lr), x, y, cfg.epochs, cfg.batch_size, rng, "regression", log)
    w, b = float(neuron.params["W"].item()), float(neuron.params["b"].item())
    # The best any fit can do on this sample: ordinary least squares, in closed form.
    design = np.hstack([x, np.ones_like(x)])  # (N, 2)
    (w_ols, b_ols), *_ = np.linalg.lstsq(design, y[:, 0], rcond=None)
    draw_regression(x, y, (w, b), (cfg.slope, cfg.intercept), figure)
    return {"weight": round(w, 4), "bias": round(b, 4)}, {"least_squares": (float(w_ols), float(b_ols))}


def two_blobs(n: int, centre: float, std: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """n points, class 0 around (-centre, -centre), class 1 around (centre, centre): (N, 2), (N, 1)."""
    labels = (np.arange(n) >= n // 2).astype(np.float64)[:, None]  # (N, 1)
    means = np.where(labels == 1, centre, -centre)  # (N, 1), broadcast over both coordinates
    return means + std * rng.standard_normal((n, 2)), labels


def four_gaussians(n: int, std: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """n points around the corners (+-1, +-1), a quarter each: class 1 around (1, 1) and (-1, -1),
    class 0 around (1, -1) and (-1, 1), the XOR of the coordinates' signs: (N, 2), (N, 1)."""
    corners = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    which = np.arange(n) % 4
    x = corners[which] + std * rng.standard_normal((n, 2))
    labels = (which < 2).astype(np.float64)[:, None]
    return x, labels


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def blobs(cfg: E6Blobs, figure: Path, rng, log) -> tuple[dict, dict]:
    x_train, y_train = two_blobs(cfg.points, cfg.centre, cfg.std, rng)
    x_test, y_test = two_blobs(cfg.points, cfg.centre, cfg.std, rng)
    model = nn.Sequential(nn.Linear(2, 1, rng=rng), nn.Sigmoid())
    train(nn.SGD(model, nn.BCELoss(), cfg.lr), x_train, y_train, cfg.epochs, cfg.batch_size, rng, "blobs", log,
          evaluate=lambda: {"test_accuracy": binary_accuracy(model, x_test, y_test)})
    accuracy = binary_accuracy(model, x_test, y_test)
    draw_decision_boundary(model, x_test, y_test, figure, f"Two blobs, linear classifier: test accuracy {accuracy:.3f}")
    # The best possible accuracy: each centre lies centre sqrt(2) / std standard deviations from the boundary x1 + x2 = 0.
    bayes = _normal_cdf(cfg.centre * math.sqrt(2.0) / cfg.std)
    return {"test_accuracy": accuracy}, {"train_accuracy": binary_accuracy(model, x_train, y_train), "bayes": bayes}


def xor(cfg: E6Xor, batch_size: int | None, name: str, figure: Path, rng, log) -> tuple[dict, dict]:
    """The full-batch and mini-batch runs get generators seeded alike: the same points, the same initial weights."""
    x_train, y_train = four_gaussians(cfg.points, cfg.std, rng)
    x_test, y_test = four_gaussians(cfg.points, cfg.std, rng)
    model = nn.Sequential(nn.Linear(2, cfg.hidden, rng=rng), nn.TanH(), nn.Linear(cfg.hidden, 1, rng=rng), nn.Sigmoid())
    batch = batch_size or cfg.points
    train(nn.SGD(model, nn.BCELoss(), cfg.lr), x_train, y_train, cfg.epochs, batch, rng, name, log,
          evaluate=lambda: {"test_accuracy": binary_accuracy(model, x_test, y_test)})
    accuracy = binary_accuracy(model, x_test, y_test)
    label = "full batch" if batch_size is None else f"mini-batches of {batch_size}"
    draw_decision_boundary(model, x_test, y_test, figure, f"XOR, {label}: test accuracy {accuracy:.3f}")
    # Best possible: a point is on its corner's side of both axes with probability p each.
    p = _normal_cdf(1.0 / cfg.std)
    bayes = p * p + (1 - p) * (1 - p)
    return {"test_accuracy": accuracy}, {"train_accuracy": binary_accuracy(model, x_train, y_train), "bayes": bayes, "batch": batch,
                                         "steps": cfg.epochs * math.ceil(cfg.points / batch)}


def binary_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return round(float(((model.forward(x) > 0.5) == (y > 0.5)).mean()), 4)


# --------------------------------------------------------------------------- the image tasks


def image_task(name: str, cfg: E6MLP | E6Conv, splits: dict, n_classes: int, rng, log) -> tuple[dict, dict]:
    pixels = {s: sp.x.astype(IMAGE_DTYPE) / IMAGE_DTYPE(255.0) for s, sp in splits.items()}  # (N, C, H, W) in [0, 1]
    labels = {s: sp.y for s, sp in splits.items()}
    image_shape = splits["train"].x.shape[1:]
    train_images = len(labels["train"])
    if isinstance(cfg, E6Conv):
        # Each image as a 1-D signal of its pixels, row after row: (N, C, H * W).
        inputs = {s: p.reshape(len(p), image_shape[0], -1) for s, p in pixels.items()}
        model = conv_net(cfg, inputs["train"].shape[1:], n_classes, rng)
        if cfg.max_train_images is not None and cfg.max_train_images < train_images:
            keep = datasets.subsample(labels["train"], cfg.max_train_images, int(rng.integers(2**31)))
            inputs["train"], labels["train"] = inputs["train"][keep], labels["train"][keep]
            train_images = len(keep)
    else:
        inputs = {s: p.reshape(len(p), -1) for s, p in pixels.items()}  # (N, C * H * W)
        model = mlp(inputs["train"].shape[1], cfg.hidden, cfg.activation, n_classes, rng)
    loss = nn.CrossEntropyLoss()

    def evaluate() -> dict:
        logits = nn.predict(model, inputs["val"])
        return {"val_loss": loss.forward(labels["val"], logits), "val_accuracy": accuracy(logits, labels["val"])}

    train(nn.SGD(model, loss, cfg.lr), inputs["train"], labels["train"], cfg.epochs, cfg.batch_size, rng, name, log, evaluate)
    result = {"test_accuracy": accuracy(nn.predict(model, inputs["test"]), labels["test"])}
    if isinstance(cfg, E6Conv):
        result["train_images"] = train_images
        detail_flat = {"flat_features": model.modules[3].in_features}  # the Linear after Flatten
    else:
        detail_flat = {}
    detail = {
        "architecture": repr(model),
        "parameters": model.n_parameters(),
        "train_images": train_images,
        "image_shape": tuple(int(d) for d in image_shape),
        "train_accuracy": accuracy(nn.predict(model, inputs["train"]), labels["train"]),
        "val_accuracy": accuracy(nn.predict(model, inputs["val"]), labels["val"]),
        **detail_flat,
    }
    return result, detail


def mlp(n_inputs: int, hidden: list[int], activation: str, n_classes: int, rng) -> nn.Sequential:
    """Linear -> activation for each hidden width, then Linear to the logits (the softmax is in the loss)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_inputs, width, rng=rng, dtype=IMAGE_DTYPE), ACTIVATIONS[activation]()]
        n_inputs = width
    return nn.Sequential(*layers, nn.Linear(n_inputs, n_classes, rng=rng, dtype=IMAGE_DTYPE))


def conv_net(cfg: E6Conv, signal_shape: tuple[int, int], n_classes: int, rng) -> nn.Sequential:
    """Conv1D -> MaxPool1D -> Flatten -> Linear(flat, hidden) -> ReLU -> Linear(hidden, n_classes).

    `flat` comes from the data: channels x the pooled length (32 x 127 = 4064 on 16x16 USPS, the
    catalogue's number; 32 x 31 = 992 on the 8x8 stand-in).
    """
    in_channels, length = signal_shape
    flat = cfg.channels * conv_output_length(cfg, length)
    return nn.Sequential(
        nn.Conv1D(cfg.kernel, in_channels, cfg.channels, cfg.stride, rng=rng, dtype=IMAGE_DTYPE),
        nn.MaxPool1D(cfg.pool, cfg.pool),
        nn.Flatten(),
        nn.Linear(flat, cfg.hidden, rng=rng, dtype=IMAGE_DTYPE), nn.ReLU(), nn.Linear(cfg.hidden, n_classes, rng=rng, dtype=IMAGE_DTYPE),
    )


def conv_output_length(cfg: E6Conv, length: int) -> int:
    """The length after Conv1D and MaxPool1D of a signal of `length` samples; ParamError when nothing is left."""
    after_conv = (length - cfg.kernel) // cfg.stride + 1
    after_pool = (after_conv - cfg.pool) // cfg.pool + 1
    if after_conv < 1 or after_pool < 1:
        raise ParamError(
            "e6.usps_conv",
            f"leaves nothing of a {length}-sample image: kernel {cfg.kernel}, stride {cfg.stride} -> {max(after_conv, 0)} "
            f"samples, then pool {cfg.pool} -> {max(after_pool, 0)}; use a smaller kernel, stride or pool",
        )
    return after_pool


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return round(float((logits.argmax(1) == labels).mean()), 4)


# --------------------------------------------------------------------------- figures


def draw_regression(x, y, fitted: tuple[float, float], truth: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(x[:, 0], y[:, 0], s=8, alpha=0.5, label="training points")
    line = np.array([-1.0, 1.0])
    ax.plot(line, truth[0] * line + truth[1], "k--", label=f"generating line y = {_line(*truth)}")
    ax.plot(line, fitted[0] * line + fitted[1], "r", label=f"one neuron: y = {_line(*fitted, '.3f')}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Linear regression, one neuron, MSE")
    ax.legend(fontsize=8)
    io.save_figure(fig, path)


def draw_decision_boundary(model: nn.Module, x: np.ndarray, y: np.ndarray, path: Path, title: str) -> None:
    """The model's P(class 1) over the plane, its 0.5 contour, and the test points by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = x.min(0) - 0.5, x.max(0) + 0.5
    g1, g2 = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))  # (200, 200) each
    prob = model.forward(np.column_stack([g1.ravel(), g2.ravel()])).reshape(g1.shape)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.contourf(g1, g2, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.4)
    ax.contour(g1, g2, prob, levels=[0.5], colors="k", linewidths=1.5)
    for cls, marker in ((0, "o"), (1, "^")):
        points = x[y[:, 0] == cls]
        ax.scatter(points[:, 0], points[:, 1], s=8, marker=marker, c="tab:blue" if cls == 0 else "tab:red", label=f"class {cls}")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    io.save_figure(fig, path)


def draw_loss_curves(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter

    columns = 4
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    for ax, (task, losses) in zip(axes.flat, curves.items()):
        ax.plot(np.arange(1, len(losses) + 1), losses)
        if max(losses) > 10 * min(losses):  # a log axis over less than a decade has no labelled tick
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    io.save_figure(fig, path)


# --------------------------------------------------------------------------- report


def _line(slope: float, intercept: float, number: str = "g") -> str:
    """'-20 x - 10', not '-20 x + -10'."""
    return f"{slope:{number}} x {'-' if intercept < 0 else '+'} {abs(intercept):{number}}"


def e6_report(cfg: E6, results: dict, details: dict, metas: dict) -> str:
    reg = results["regression"]
    w_ols, b_ols = details["regression"]["least_squares"]
    usps_meta = metas["usps_conv"]
    stand_in = usps_meta["name"] != "usps"
    rows = []
    for task in ("blobs", "xor_full_batch", "xor_minibatch"):
        d = details[task]
        ref = REFERENCE[task]
        rows.append((task, f"{d['train_accuracy']:.4f}", "-", f"{results[task]['test_accuracy']:.4f}",
                     "-" if ref is None else f"{ref:.3f}", f"{d['bayes']:.4f}", f"{results[task]['seconds']:.1f}"))
    for task in ("mnist_mlp", "usps_mlp", "usps_conv"):
        d = details[task]
        rows.append((task, f"{d['train_accuracy']:.4f}", f"{d['val_accuracy']:.4f}", f"{results[task]['test_accuracy']:.4f}",
                     f"{REFERENCE[task]:.3f}", "-", f"{results[task]['seconds']:.1f}"))
    arch_rows = [(task, details[task]["architecture"], f"{details[task]['parameters']:,}", f"{details[task]['train_images']:,}",
                  " x ".join(map(str, details[task]["image_shape"]))) for task in ("mnist_mlp", "usps_mlp", "usps_conv")]
    xor_cfg = cfg.xor
    parts = [
        "# E6. A neural-network library from scratch (NumPy)",
        "",
        "Every model here is built from `reprodl.numpy_nn`: modules with hand-written forward and backward passes "
        "(Linear, TanH, Sigmoid, ReLU, Softmax, Flatten, Conv1D, MaxPool1D), the losses MSE, BCE and cross-entropy "
        "on log-softmax, Sequential, and mini-batch SGD. `tests/test_numpy_nn.py` checks every forward pass, parameter "
        "gradient and input gradient against torch.autograd in float64 (1e-10 relative), Conv1D and MaxPool1D with "
        "odd lengths, strides above 1 and ties in the pool.",
        "",
        "## Linear regression (one neuron)",
        "",
        f"{cfg.regression.points} points, x uniform in [-1, 1], y = {_line(cfg.regression.slope, cfg.regression.intercept)} "
        f"+ N(0, {cfg.regression.noise:g}^2); Linear(1, 1), MSE, {cfg.regression.epochs} epochs of SGD "
        f"(batch {cfg.regression.batch_size}, lr {cfg.regression.lr:g}).",
        "",
        format_table(
            [("one neuron (SGD)", f"{reg['weight']:.4f}", f"{reg['bias']:.4f}"),
             ("least squares on the same points", f"{w_ols:.4f}", f"{b_ols:.4f}"),
             ("generating line (reference)", f"{cfg.regression.slope:g}", f"{cfg.regression.intercept:g}")],
            ("fit", "weight w", "bias b"),
        ),
        "",
        "## Classification",
        "",
        "Test accuracy of every classifier next to the catalogue's. The image tasks train in float32 and report the "
        "test split of data/prepared/<dataset>; their val accuracy is the per-epoch curve's last point.",
        "",
        f"Two blobs: {cfg.blobs.points} points per split around (+-{cfg.blobs.centre:g}, +-{cfg.blobs.centre:g}), std "
        f"{cfg.blobs.std:g}; Linear(2, 1) -> Sigmoid, BCE. XOR: {xor_cfg.points} points per split, four Gaussians "
        f"(std {xor_cfg.std:g}) at (+-1, +-1); Linear(2, {xor_cfg.hidden}) -> TanH -> Linear({xor_cfg.hidden}, 1) -> "
        f"Sigmoid, BCE, {xor_cfg.epochs} epochs at lr {xor_cfg.lr:g}, full batch "
        f"({details['xor_full_batch']['steps']} steps) and mini-batches of {xor_cfg.batch_size} "
        f"({details['xor_minibatch']['steps']} steps), from the same points and initial weights. "
        "The catalogue does not give its Gaussians' spread; the Bayes column is the best accuracy any classifier "
        "can reach on these distributions, so a test accuracy is read against it.",
        "",
        format_table(rows, ("task", "train acc", "val acc", "test acc", "reference", "Bayes", "seconds")),
        "",
        "The catalogue's nets end in Softmax; here the softmax is inside the loss (cross-entropy on log-softmax, "
        "which stays finite for large logits) and the last Linear gives the logits. `numpy_nn.Softmax` turns them "
        "into probabilities where needed. References: MNIST on the full 60,000 training images, USPS on 7,291 "
        "(its conv net on 500 of them).",
        "",
        format_table(arch_rows, ("task", "model", "parameters", "train images", "image")),
        "",
        f"Data: mnist: {metas['mnist_mlp']['source']}; usps: {usps_meta['source']}.",
    ]
    if stand_in:
        parts += [
            "",
            f"**USPS stand-in.** In the {usps_meta['profile']} profile the USPS tasks run on `{usps_meta['name']}`, "
            f"{' x '.join(map(str, usps_meta['image_shape'][1:]))} images instead of USPS's 16 x 16, so their accuracies "
            f"are not the reference's; the conv net's signal is {math.prod(details['usps_conv']['image_shape'][1:])} samples "
            "long and its Linear layer after Flatten "
            f"takes {details['usps_conv']['flat_features']:,} inputs instead of 4,064.",
        ]
    parts += [
        "",
        f"**Conv net, whole training split.** The reference cut USPS to 500 training images because its Python loops "
        f"over samples and positions were too slow; this Conv1D and MaxPool1D are vectorised (strided window views and "
        f"one tensordot per batch) and train on {details['usps_conv']['train_images']:,} images "
        f"(e6.usps_conv.max_train_images; benchmarks/numpy_conv1d.py measures the speed-up).",
    ]
    return "\n".join(parts) + "\n"
