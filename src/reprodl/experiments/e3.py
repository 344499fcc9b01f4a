"""E3. Deep-network grid search: two and three hidden ReLU layers, a grid over each layer's width.

lr and batch size are fixed (SGD, cross-entropy); the two-layer grid trains for its epochs,
the three-layer grid for its own. The top models by val accuracy (both depths together) are
re-trained for longer, and the best of them by val accuracy is scored on the test split.
Same data protocol and initialisation as E2 (reprodl.experiments.e2): the prepared train
split minus a seeded 20% for validation; every model starts as `torch.manual_seed(seed);
models.mlp(widths)` would, so a re-trained model retraces its grid run for the first epochs.

Stacks: models that share their widths past the first layer train together (their first
layers sit side by side without padding; only layer 2's input is padded to the widest).

`run_e3(cfg, ...)` (cfg: a config.E3) returns the metrics tree {"e3": {...}}: headline numbers
only (the grid's size, the best model of each depth by val, the re-trained best and its test
accuracy; wall times under "*seconds" keys, which the stage moves to timings/). Every model's
numbers go to plots/e3/tables/results.csv (the grid) and plots/e3/tables/top.csv (the re-trained models).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import datasets, grid, io, plots
from ..config import E3
from ..references import E3 as REFERENCE  # the catalogue's numbers, shared with the study page
from ..tables import format_table
from .e2 import _round, check_split_sizes, load_grid_data

DEPTHS = {"two_layers": 2, "three_layers": 3}


def grid_widths(cfg: E3) -> dict[str, list[tuple[int, ...]]]:
    """Every model of the grid, per depth: each combination of the depth's widths list per layer."""
    return {name: list(itertools.product(getattr(cfg, name).widths, repeat=depth)) for name, depth in DEPTHS.items()}


def _stack_jobs(
    widths_list: list[tuple[int, ...]], cfg: E3, data: dict, n_classes: int, epochs: int, progress: bool, tag: str, *, seed: int,
    eval_test: bool = False, device="cpu",
) -> list[dict]:
    """One fit_stack job per group of models that share every width past the first."""
    groups: dict[tuple, list[tuple[int, ...]]] = {}
    for widths in widths_list:
        groups.setdefault((len(widths), widths[1:]), []).append(widths)
    # Costliest stacks first: the worker pool hands them out in order.
    n_inputs = data["train"][0].shape[1]
    ordered = sorted(groups.values(), key=lambda ws: -sum(n_inputs * w[0] + sum(a * b for a, b in zip(w, w[1:])) for w in ws))
    return [
        dict(
            specs=[grid.ModelSpec(w, cfg.lr, seed) for w in group], train=data["train"], val=data["val"],
            batch_size=cfg.batch_size, epochs=epochs, seed=seed, n_classes=n_classes,
            snapshot_epochs=[epochs] if eval_test else [], eval_sets={"test": data["test"]} if eval_test else None,
            progress=progress, desc=f"e3 {tag} {'x'.join(map(str, group[0][1:]))}", device=device,
        )
        for group in ordered
    ]


def _rows(results: list[grid.StackResult], epochs: int) -> list[dict]:
    rows = []
    for result in results:
        for m, spec in enumerate(result.specs):
            rows.append({
                "depth": len(spec.widths),
                "widths": "-".join(map(str, spec.widths)),
                **{f"width{i + 1}": w for i, w in enumerate(spec.widths)},
                "epochs": epochs, "lr": spec.lr,
                "val_accuracy": result.val_accuracy[m, -1],
                "val_loss": result.val_loss[m, -1],
                "train_loss": result.train_loss[m, -1],
                "diverged": bool(result.diverged_epoch[m]),
                "train_loss_curve": json.dumps([_round(v) for v in result.train_loss[m]]),
                "val_loss_curve": json.dumps([_round(v) for v in result.val_loss[m]]),
            })
    return rows


def run_e3(
    cfg: E3, prepared_dir: Path, *, figures_dir: Path, tables_dir: Path, report_path: Path, seed: int = 0, workers: int = 1, progress: bool = True,
    device="cpu",
) -> dict:
    meta = datasets.load_meta(prepared_dir)
    check_split_sizes(meta, cfg.val_fraction, "e3.val_fraction")  # before any work
    data = load_grid_data(prepared_dir, cfg.val_fraction, seed, "e3.val_fraction")
    n_classes = len(meta["classes"])
    show = progress and workers == 1
    start = time.perf_counter()
    tables, grid_seconds = [], {}
    for name, widths in grid_widths(cfg).items():
        epochs = getattr(cfg, name).epochs
        jobs = _stack_jobs(widths, cfg, data, n_classes, epochs, show, name, seed=seed, device=device)
        started = time.perf_counter()
        tables.append(pd.DataFrame(_rows(grid.fit_stacks(jobs, workers), epochs)))
        grid_seconds[name] = round(time.perf_counter() - started, 2)
        print(f"e3 {name}: {len(widths)} models x {epochs} epochs ({time.perf_counter() - start:.1f} s so far)")
    table = pd.concat(tables, ignore_index=True)
    ranked = rank(table)

    # Re-train the top models for retrain_epochs; the best of them by val goes to test.
    top_widths = [tuple(int(w) for w in s.split("-")) for s in ranked["widths"].head(cfg.top)]
    jobs = _stack_jobs(top_widths, cfg, data, n_classes, cfg.retrain_epochs, show, "top", seed=seed, eval_test=True, device=device)
    started = time.perf_counter()
    results = grid.fit_stacks(jobs, workers)
    grid_seconds["retrain"] = round(time.perf_counter() - started, 2)
    retrained = pd.DataFrame(_rows(results, cfg.retrain_epochs))
    retrained["test_accuracy"] = np.concatenate([r.snapshots[cfg.retrain_epochs]["test_accuracy"] for r in results])
    retrained = rank(retrained)
    seconds = time.perf_counter() - start
    best = retrained.iloc[0]
    print(f"e3 best: {best['widths']} val {best['val_accuracy']:.4f} test {best['test_accuracy']:.4f} ({seconds:.1f} s)")

    with io.atomic_path(tables_dir / "results.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    with io.atomic_path(tables_dir / "top.csv", suffix=".csv") as tmp:
        retrained.drop(columns="test_accuracy").to_csv(tmp, index=False)  # test only for the one best model
    two = table[table["depth"] == 2].pivot(index="width1", columns="width2", values="val_accuracy")
    plots.accuracy_heatmap(two, figures_dir / "two_layers.png", title=f"E3: val accuracy, two layers, {cfg.two_layers.epochs} epochs")
    curves = {f"{r['widths']} ({r['val_accuracy']:.4f})": (json.loads(r["train_loss_curve"]), json.loads(r["val_loss_curve"])) for _, r in retrained.iterrows()}
    plots.loss_curves(curves, figures_dir / "top_curves.png", title=f"E3: top {cfg.top} re-trained, train (solid) and val (dashed) loss")

    metrics: dict = {"n_models": len(table), "n_diverged": int(table["diverged"].sum()), "device": results[0].device}  # where the stacks trained
    for name, depth in DEPTHS.items():
        r = ranked[ranked["depth"] == depth].iloc[0]
        metrics[name] = {"best": {"widths": r["widths"], "val": {"accuracy": float(r["val_accuracy"])}}}
    metrics["best"] = {
        "widths": best["widths"], "depth": int(best["depth"]), "epochs": cfg.retrain_epochs,
        "val": {"accuracy": float(best["val_accuracy"]), "loss": float(best["val_loss"])},
        "test": {"accuracy": float(best["test_accuracy"])},
    }
    metrics["seconds"] = round(seconds, 1)  # -> timings/e3.json (stages/common.write_outputs)
    metrics["step_seconds"] = grid_seconds  # per grid and for the re-training
    io.write_text(report_path, e3_report(meta, cfg, ranked, retrained, metrics))
    return {"e3": metrics}


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """Best first: val accuracy down, ties by val loss up, diverged models (NaN) last."""
    return table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], na_position="last").reset_index(drop=True)


def e3_report(meta: dict, cfg: E3, ranked: pd.DataFrame, retrained: pd.DataFrame, metrics: dict) -> str:
    def rows(frame: pd.DataFrame) -> list[tuple]:
        return [(r["widths"], int(r["epochs"]), f"{r['val_accuracy']:.4f}", f"{r['val_loss']:.4f}", "yes" if r["diverged"] else "") for _, r in frame.iterrows()]

    header = ("widths", "epochs", "val acc", "val loss", "diverged")
    best = metrics["best"]
    parts = [
        "# E3. Deep-network grid search",
        "",
        f"Data: {meta['source']} ({meta['profile']} profile), the same train / val split as E2. SGD lr {cfg.lr}, batch "
        f"{cfg.batch_size}. Two layers: widths {cfg.two_layers.widths} each, {cfg.two_layers.epochs} epochs; "
        f"three layers: widths {cfg.three_layers.widths} each, {cfg.three_layers.epochs} epochs "
        f"({metrics['n_models']} models, {metrics['n_diverged']} diverged); top {cfg.top} re-trained for "
        f"{cfg.retrain_epochs} epochs. {metrics['seconds']:.1f} s in all (reprodl.grid).",
        "",
        "## Best after re-training, then its test accuracy",
        "",
        format_table(
            [
                ("this run", best["widths"], best["epochs"], f"{best['val']['accuracy']:.4f}", f"{best['test']['accuracy']:.4f}"),
                ("reference (full MNIST)", REFERENCE["three_layers"]["widths"], 50, f"{REFERENCE['three_layers']['val_accuracy']:.4f}", f"{REFERENCE['test_accuracy']:.4f}"),
            ],
            ("", "widths", "epochs", "val acc", "test acc"),
        ),
        "",
        f"Best two-layer model in the grid: {metrics['two_layers']['best']['widths']} (val {metrics['two_layers']['best']['val']['accuracy']:.4f}; "
        f"reference {REFERENCE['two_layers']['widths']}, {REFERENCE['two_layers']['val_accuracy']:.4f}). "
        f"Best three-layer: {metrics['three_layers']['best']['widths']} (val {metrics['three_layers']['best']['val']['accuracy']:.4f}).",
        "",
        f"## Top {cfg.top} re-trained for {cfg.retrain_epochs} epochs",
        "",
        format_table(rows(retrained), header),
        "",
        "## Grid: top 10",
        "",
        format_table(rows(ranked.head(10)), header),
        "",
        "## Grid: bottom 5",
        "",
        format_table(rows(ranked[ranked["val_accuracy"].notna()].tail(5)), header),
        "",
        "Figures: plots/e3/figures/two_layers.png (val accuracy over the two-layer grid), plots/e3/figures/top_curves.png. "
        "Tables: plots/e3/tables/results.csv (every grid model, per-epoch losses as JSON lists), plots/e3/tables/top.csv (re-trained).",
    ]
    return "\n".join(parts) + "\n"
