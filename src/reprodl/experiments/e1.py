"""E1. MNIST baselines: logistic regression, MLPs, the ConvNet, a hand-written perceptron.

`run_e1(cfg, ...)` trains every model named in cfg.models (a config.E1) on the prepared dataset with
the shared engine and returns the headline metrics, {"e1": {model: {"val"/"test": {"accuracy"}}}}
(plus the precision and device that ran); every split's loss and accuracy, parameter counts and wall times
go to the CSV table and the report. The stage script (stages/e1.py) writes the outputs.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torchinfo import summary

from .. import datasets, engine, io, models, plots
from ..config import E1
from ..references import E1 as REFERENCE  # the catalogue's numbers, shared with the study page
from ..tables import format_table
from ..tracking import Tracker


def run_e1(
    cfg: E1,
    prepared_dir: Path,
    *,
    models_dir: Path,
    grid_path: Path,
    table_path: Path,
    report_path: Path,
    tracker: Tracker | None = None,
    seed: int = 0,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> dict:
    meta = datasets.load_meta(prepared_dir)
    splits = {s: datasets.load_split(prepared_dir, s) for s in datasets.SPLITS}
    tensors = {s: (engine.to_tensor_images(sp.x), torch.from_numpy(sp.y)) for s, sp in splits.items()}  # (N, C, H, W), (N,)
    image_shape = tuple(meta["image_shape"])
    n_inputs, n_classes = int(np.prod(image_shape)), len(meta["classes"])

    plots.save_image_grid(splits["train"].x[: cfg.grid_images], grid_path, columns=20, upscale=2)

    results: dict[str, dict] = {}
    summaries: dict[str, str] = {}
    jobs = training_jobs(cfg, n_inputs, n_classes, image_shape, seed)
    for name, spec, train_cfg in jobs:
        model = models.build_model(spec, seed=seed)
        n_params = models.count_parameters(model)
        print(f"e1 {name}: {n_params:,} parameters")
        summaries[name] = str(summary(model, input_size=(1, *image_shape), verbose=0, col_names=("output_size", "num_params")))
        on_epoch = (lambda epoch, m, name=name: tracker.epoch(name, epoch, m)) if tracker else None
        start = time.perf_counter()
        history = engine.fit(model, tensors["train"], tensors["val"], train_cfg, on_epoch=on_epoch, progress=progress, desc=f"e1 {name}", device=device)
        seconds = time.perf_counter() - start
        # precision: what the steps ran in (auto resolves per CPU), so a metrics diff across machines explains itself
        results[name] = {"n_params": n_params, "seconds": round(seconds, 2), "precision": history.precision, "device": history.device}
        for split, (x, y) in tensors.items():
            results[name][split] = engine.evaluate(model, x, y, train_cfg.loss)
        if tracker:
            y_pred = engine.predict(model, tensors["test"][0]).argmax(1).numpy()
            tracker.confusion(name, splits["test"].y, y_pred, list(meta["classes"]))
        models.save_model(models_dir / f"{name}.pt", spec, model)
        print(f"e1 {name}: test accuracy {results[name]['test']['accuracy']:.4f} ({seconds:.1f} s, {history.precision})")

    perceptron_table = None
    if "perceptron" in cfg.models:
        pcfg = cfg.perceptron
        x_all = np.concatenate([splits[s].x for s in datasets.SPLITS]).reshape(-1, n_inputs)
        y_all = np.concatenate([splits[s].y for s in datasets.SPLITS])
        # The catalogue's re-split: all images pooled, then test_fraction held out (63,000 / 7,000 on full MNIST).
        train_idx, _, test_idx = datasets.stratified_split(y_all, (1 - pcfg.test_fraction, 0.0, pcfg.test_fraction), seed)
        start = time.perf_counter()
        W, b, perceptron_table = train_perceptron(
            x_all[train_idx] / 255.0, y_all[train_idx], n_classes, pcfg.lr, pcfg.batch_size, pcfg.epochs, seed
        )
        results["perceptron"] = {
            "n_params": int(W.numel() + b.numel()),
            "seconds": round(time.perf_counter() - start, 2),
            "train": {"accuracy": perceptron_accuracy(W, b, x_all[train_idx] / 255.0, y_all[train_idx])},
            "test": {"accuracy": perceptron_accuracy(W, b, x_all[test_idx] / 255.0, y_all[test_idx])},
        }
        print(f"e1 perceptron: test accuracy {results['perceptron']['test']['accuracy']:.4f}")
        print(format_table(perceptron_table, ("tensor", "shape", "meaning")))

    io.write_text(report_path, e1_report(meta, results, summaries, perceptron_table, {n: asdict(c) for n, _, c in jobs}))
    io.write_csv(table_path, results_table(results))
    return {"e1": headline_metrics(results)}


def headline_metrics(results: dict) -> dict:
    """Per model: val and test accuracy (the perceptron has no val split), and the precision and device that ran."""
    out = {}
    for name, r in results.items():
        out[name] = {split: {"accuracy": r[split]["accuracy"]} for split in ("val", "test") if split in r}
        for key in ("precision", "device"):  # the perceptron (NumPy) has neither
            if key in r:
                out[name][key] = r[key]
    return out


def results_table(results: dict) -> list[dict]:
    """One row per model: every split's accuracy and loss, parameters, precision, seconds."""
    rows = []
    for name, r in results.items():
        row = {"model": name, "n_params": r["n_params"], "precision": r.get("precision", "fp32"), "seconds": r["seconds"]}
        for split in datasets.SPLITS:
            for measure in ("accuracy", "loss"):
                row[f"{split}_{measure}"] = r.get(split, {}).get(measure, "")
        rows.append(row)
    return rows


def training_jobs(cfg: E1, n_inputs: int, n_classes: int, image_shape: tuple, seed: int) -> list[tuple[str, dict, engine.TrainConfig]]:
    """(name, model spec, train config) for every engine-trained model, in cfg.models order."""
    jobs = []
    for name in cfg.models:
        if name == "logreg":
            spec = {"kind": "logreg", "n_inputs": n_inputs, "n_classes": n_classes}
            jobs.append((name, spec, engine.train_config(cfg.logreg, seed=seed)))
        elif name == "mlp":
            spec = {"kind": "mlp", "hidden": cfg.mlp.hidden, "activation": cfg.mlp.activation, "n_inputs": n_inputs, "n_classes": n_classes}
            jobs.append((name, spec, engine.train_config(cfg.mlp, seed=seed)))
        elif name == "mlp_sigmoid":
            spec = {"kind": "mlp", "hidden": cfg.mlp_sigmoid.hidden, "activation": "sigmoid", "n_inputs": n_inputs, "n_classes": n_classes}
            jobs.extend(
                (f"mlp_sigmoid_lr{lr:g}".replace(".", "p"), spec, engine.train_config(cfg.mlp_sigmoid, seed=seed, lr=lr))
                for lr in cfg.mlp_sigmoid.lrs
            )
        elif name == "convnet":
            c = cfg.convnet
            spec = {
                "kind": "convnet", "channels": list(c.channels), "kernel": c.kernel, "hidden": c.hidden, "activation": c.activation,
                "dropout": c.dropout, "in_channels": image_shape[0], "image_size": image_shape[1], "n_classes": n_classes,
            }
            jobs.append((name, spec, engine.train_config(c, seed=seed)))
    return jobs


# --------------------------------------------------------------------------- perceptron


@torch.no_grad()
def train_perceptron(
    x: np.ndarray, labels: np.ndarray, n_classes: int, lr: float, batch_size: int, epochs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str, str]]]:
    """The catalogue's perceptron, with its gradient written by hand (no autograd).

    y = x W + b; grad = t - y; W += lr x^T grad; b += lr grad.sum(0). Returns W, b and a
    table (tensor, shape, meaning) whose shapes are read off the first step's real tensors.
    """
    x_all = torch.as_tensor(x, dtype=torch.float32)  # (N, D)
    t_all = torch.nn.functional.one_hot(torch.as_tensor(labels), n_classes).float()  # (N, K)
    n, d = x_all.shape
    W = torch.zeros(d, n_classes)  # (D, K)
    b = torch.zeros(1, n_classes)  # (1, K)
    generator = torch.Generator().manual_seed(seed)
    table: list[tuple[str, str, str]] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, t = x_all[idx], t_all[idx]  # (B, D), (B, K)
            y = xb @ W + b  # (B, K)
            grad = t - y  # (B, K)
            update_W = xb.T @ grad  # (D, K)
            update_b = grad.sum(0, keepdim=True)  # (1, K)
            W += lr * update_W
            b += lr * update_b
            if not table:
                table = [
                    ("x", _shape(xb), "a batch of flattened images, pixels in [0, 1]"),
                    ("t", _shape(t), "one-hot targets of the batch"),
                    ("W", _shape(W), "weights, one column per class"),
                    ("b", _shape(b), "biases, one per class"),
                    ("y = xW + b", _shape(y), "the perceptron's outputs, one score per class"),
                    ("grad = t - y", _shape(grad), "the error signal (hand-written gradient)"),
                    ("x^T grad", _shape(update_W), "the weight update, same shape as W"),
                    ("grad.sum(0)", _shape(update_b), "the bias update, same shape as b"),
                ]
    if not torch.isfinite(W).all():
        raise FloatingPointError(f"the perceptron diverged with lr {lr}; lower e1.perceptron.lr")
    return W, b, table


def perceptron_accuracy(W: torch.Tensor, b: torch.Tensor, x: np.ndarray, labels: np.ndarray) -> float:
    scores = torch.as_tensor(x, dtype=torch.float32) @ W + b
    return float((scores.argmax(1).numpy() == labels).mean())


def _shape(t: torch.Tensor) -> str:
    return " x ".join(map(str, t.shape))


# --------------------------------------------------------------------------- report


def e1_report(meta: dict, results: dict, summaries: dict, perceptron_table, configs: dict) -> str:
    profile = meta["profile"]
    rows = []
    for name, r in results.items():
        ref = REFERENCE.get(name, {})
        target = ref.get("embedded_target") if profile == "embedded" else ref.get("full")
        test = r["test"]["accuracy"]
        verdict = "" if target is None else ("met" if test >= target else "NOT met")
        rows.append((
            name,
            f"{r['n_params']:,}",
            f"{r['train']['accuracy']:.4f}",
            f"{r['val']['accuracy']:.4f}" if "val" in r else "-",
            f"{test:.4f}",
            "-" if "full" not in ref else f"{ref['full']:.4f}",
            "-" if target is None else f">= {target:.4f} ({verdict})",
            f"{r['seconds']:.1f}",
            r.get("precision", "fp32"),
        ))
    sizes = meta["sizes"]
    parts = [
        "# E1. MNIST baselines",
        "",
        f"Data: {meta['source']} ({profile} profile); train {sizes['train']:,}, val {sizes['val']:,}, "
        f"test {sizes['test']:,} images. Reference: the catalogue's full-MNIST test accuracy.",
        "",
        format_table(rows, ("model", "parameters", "train acc", "val acc", "test acc", "reference (full)", f"target ({profile})", "seconds", "precision")),
        "",
        "precision: what the training steps ran in; `auto` (e1.<model>.precision) is bf16 autocast on a CPU with native bf16, "
        "fp32 elsewhere, so the same params can give slightly different numbers on different CPUs.",
    ]
    if perceptron_table:
        parts += ["", "## Perceptron tensors (hand-written gradient)", "", format_table(perceptron_table, ("tensor", "shape", "meaning"))]
    for name, text in summaries.items():
        parts += ["", f"## {name}", "", f"Training: `{configs[name]}`", "", "```", text, "```"]
    return "\n".join(parts) + "\n"
