"""E2. Shallow-network grid search: batch x epochs x lr x hidden, one hidden ReLU layer, SGD.

Every model of the grid is trained on the prepared training split minus a seeded 20% that
serves as validation (the prepared val split is not used: the catalogue's protocol carves
validation out of the training set). All models that share a batch size train together in
one stack of reprodl.grid; their epoch counts nest (one run to the largest count, read at
each smaller one), so the 384-model grid is 6 stacked runs.

Initial weights: every model is initialised as `torch.manual_seed(seed); models.mlp(...)`
would be, so models of one width start from the same weights whatever their batch size or
learning rate (the comparison is paired), and a model's result does not depend on which
other models share its stack or on the rest of the grid.

`run_e2(cfg, ...)` (cfg: a config.E2) returns the metrics tree {"e2": {...}}: headline numbers
only (the grid's size, the best model by val and its test accuracy, the correlation of each
hyper-parameter with val accuracy; wall times under "*seconds" keys, which the stage moves to
timings/). Every model's numbers go to the results table (plots/e2/tables/results.csv, one row per
model), the figures and the report.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import datasets, engine, grid, io, plots
from ..config import E2, ParamError
from ..references import E2 as REFERENCE  # the catalogue's numbers, shared with the study page
from ..tables import format_table

HYPER_PARAMETERS = ("batch", "epochs", "lr", "hidden")


# --------------------------------------------------------------------------- data


def val_count(n_train: int, val_fraction: float, key: str) -> int:
    """Images held out for validation: round(val_fraction x n_train); ParamError (blaming `key`,
    e.g. "e2.val_fraction") when that leaves no val image or no train image."""
    n_val = round(val_fraction * n_train)
    if not 0 < n_val < n_train:
        raise ParamError(
            key, f"must leave at least one val and one train image: {val_fraction:g} of the {n_train} prepared train images is {n_val}"
        )
    return n_val


def check_split_sizes(meta: dict, val_fraction: float, key: str) -> None:
    """The checks that need the prepared data (its meta.json), made before any work: the train
    split can be cut into train and val, and there is a test split to score the best model on."""
    val_count(int(meta["sizes"]["train"]), val_fraction, key)
    if int(meta["sizes"]["test"]) < 1:
        raise ParamError("data.split.test", f"must be > 0: {key.split('.')[0]} scores its best model on the test split, which is empty")


def load_grid_data(prepared_dir: Path, val_fraction: float, seed: int, key: str = "e2.val_fraction") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The prepared train split cut into train / val (a seeded permutation), and the test split;
    images flattened to (N, D) floats in [0, 1]."""
    def flat(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = datasets.load_split(prepared_dir, split)
        return engine.to_tensor_images(s.x).flatten(1), torch.from_numpy(s.y)  # (N, D), (N,)

    x, y = flat("train")
    n_val = val_count(len(x), val_fraction, key)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val], order[n_val:]
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": flat("test")}


def correlations(table: pd.DataFrame, columns=HYPER_PARAMETERS, measure: str = "val_accuracy") -> dict[str, float | None]:
    """Pearson correlation of each column with `measure` over the finite rows; None where it is
    undefined (a column or the measure constant: a grid list of one value)."""
    corr = table[list(columns) + [measure]].corr()
    out = {}
    for c in columns:
        value = float(corr.loc[c, measure])
        out[c] = round(value, 4) if np.isfinite(value) else None
    return out


# --------------------------------------------------------------------------- run


def run_e2(
    cfg: E2,
    prepared_dir: Path,
    *,
    table_path: Path,
    figures_dir: Path,
    report_path: Path,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> dict:
    meta = datasets.load_meta(prepared_dir)
    check_split_sizes(meta, cfg.val_fraction, "e2.val_fraction")  # before any work
    g = cfg.grid
    data = load_grid_data(prepared_dir, cfg.val_fraction, seed, "e2.val_fraction")
    n_classes, max_epochs = len(meta["classes"]), max(g.epochs)
    pairs = list(itertools.product(g.lr, g.hidden))
    specs = [grid.ModelSpec((hidden,), lr, seed) for lr, hidden in pairs]
    batches = sorted(g.batch)  # smallest batch = most steps first: the pool balances better
    jobs = [
        dict(specs=specs, train=data["train"], val=data["val"], batch_size=batch, epochs=max_epochs, seed=seed, n_classes=n_classes,
             snapshot_epochs=list(g.epochs), eval_sets={"test": data["test"]}, progress=progress and workers == 1, desc=f"e2 batch {batch}",
             device=device)
        for batch in batches
    ]
    start = time.perf_counter()
    results = grid.fit_stacks(jobs, workers)
    rows, test_accuracy, stack_seconds = [], {}, {}
    for batch, result in zip(batches, results):
        stack_seconds[str(batch)] = round(float(result.seconds[-1]), 2)
        print(f"e2 batch {batch}: {len(specs)} models x {max_epochs} epochs in {result.seconds[-1]:.1f} s")
        for m, (lr, hidden) in enumerate(pairs):
            for epochs in g.epochs:
                diverged = 0 < result.diverged_epoch[m] <= epochs
                rows.append({
                    "batch": batch, "epochs": epochs, "lr": lr, "hidden": hidden,
                    "val_accuracy": result.val_accuracy[m, epochs - 1],
                    "val_loss": result.val_loss[m, epochs - 1],
                    "train_loss": result.train_loss[m, epochs - 1],
                    "diverged": bool(diverged),
                    "diverged_epoch": int(result.diverged_epoch[m]) if diverged else 0,
                    "train_loss_curve": json.dumps([_round(v) for v in result.train_loss[m, :epochs]]),
                    "val_loss_curve": json.dumps([_round(v) for v in result.val_loss[m, :epochs]]),
                })
                test_accuracy[(batch, epochs, lr, hidden)] = float(result.snapshots[epochs]["test_accuracy"][m])
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows)  # no wall times: same params, same bits (they go to timings/e2.json)
    with io.atomic_path(table_path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)

    ranked = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], na_position="last").reset_index(drop=True)
    best = ranked.iloc[0]
    best_key = (int(best["batch"]), int(best["epochs"]), float(best["lr"]), int(best["hidden"]))
    correlation = table[list(HYPER_PARAMETERS) + ["val_accuracy"]].corr()  # Pearson, over the finite rows
    plots.scatter_grid(table, HYPER_PARAMETERS, "val_accuracy", figures_dir / "scatter.png", log_x=("lr", "batch"))
    plots.correlation_heatmap(correlation, figures_dir / "correlation.png", title="E2: correlation of hyper-parameters and val accuracy")
    curves = pick_curves(ranked, best=cfg.curves.best, median=cfg.curves.median, worst=cfg.curves.worst)
    plots.loss_curves(curves, figures_dir / "loss_curves.png", title="E2: train (solid) and val (dashed) loss")

    metrics = {
        "n_models": len(table),
        "n_diverged": int(table["diverged"].sum()),
        "best": {
            "batch": best_key[0], "epochs": best_key[1], "lr": best_key[2], "hidden": best_key[3],
            "val": {"accuracy": float(best["val_accuracy"]), "loss": float(best["val_loss"])},
            "test": {"accuracy": test_accuracy[best_key]},
        },
        "correlation": correlations(table),  # None where undefined (a grid list of one value)
        "device": results[0].device,  # where the stacks trained
        "seconds": round(seconds, 1),  # -> timings/e2.json (stages/common.write_outputs)
        "stack_seconds": stack_seconds,  # per batch size, the whole stack's wall time
    }
    io.write_text(report_path, e2_report(meta, cfg, table, ranked, metrics, len(data["train"][0]), len(data["val"][0])))
    print(f"e2 best: {best_key} val {metrics['best']['val']['accuracy']:.4f} test {metrics['best']['test']['accuracy']:.4f} ({seconds:.1f} s)")
    return {"e2": metrics}


def _round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 5)


def pick_curves(ranked: pd.DataFrame, best: int, median: int, worst: int) -> dict[str, tuple[list, list]]:
    """{label: (train losses, val losses)} of the best, median and worst models by val accuracy
    (diverged models have no curve past their blow-up, so "worst" is among the finite ones)."""
    finite = ranked[ranked["val_accuracy"].notna()].reset_index(drop=True)
    middle = max(0, len(finite) // 2 - median // 2)
    picks = [("best", finite.iloc[:best]), ("median", finite.iloc[middle : middle + median]), ("worst", finite.iloc[len(finite) - worst :])]
    out = {}
    for group, rows in picks:
        for _, r in rows.iterrows():
            label = f"{group}: batch {r['batch']}, {r['epochs']} ep, lr {r['lr']:g}, hidden {r['hidden']} ({r['val_accuracy']:.3f})"
            out[label] = (json.loads(r["train_loss_curve"]), json.loads(r["val_loss_curve"]))
    return out


# --------------------------------------------------------------------------- report


def _signed(value: float | None) -> str:
    return "- (one value)" if value is None else f"{value:+.2f}"


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (int(r["batch"]), int(r["epochs"]), f"{r['lr']:g}", int(r["hidden"]), f"{r['val_accuracy']:.4f}", f"{r['val_loss']:.4f}", "yes" if r["diverged"] else "")
        for _, r in frame.iterrows()
    ]


def e2_report(meta: dict, cfg: E2, table: pd.DataFrame, ranked: pd.DataFrame, metrics: dict, n_train: int, n_val: int) -> str:
    ref, best = REFERENCE["best"], metrics["best"]
    header = ("batch", "epochs", "lr", "hidden", "val acc", "val loss", "diverged")
    finite = ranked[ranked["val_accuracy"].notna()]
    parts = [
        "# E2. Shallow-network grid search",
        "",
        f"Data: {meta['source']} ({meta['profile']} profile): the prepared train split, {n_train:,} images to train and "
        f"{n_val:,} ({cfg.val_fraction:.0%}, seeded) to validate; test: the prepared test split. "
        f"{metrics['n_models']} models (batch {cfg.grid.batch} x epochs {cfg.grid.epochs} x lr {cfg.grid.lr} "
        f"x hidden {cfg.grid.hidden}), one hidden ReLU layer, SGD, cross-entropy, trained in {metrics['seconds']:.1f} s "
        f"by the stacked trainer (reprodl.grid). Diverged (loss not finite): {metrics['n_diverged']}.",
        "",
        "## Best by val accuracy, then its test accuracy",
        "",
        format_table(
            [
                ("this run", best["batch"], best["epochs"], f"{best['lr']:g}", best["hidden"], f"{best['val']['accuracy']:.4f}", f"{best['test']['accuracy']:.4f}"),
                ("reference (full MNIST)", ref["batch"], ref["epochs"], f"{ref['lr']:g}", ref["hidden"], f"{ref['val_accuracy']:.4f}", f"{ref['test_accuracy']:.4f}"),
            ],
            ("", "batch", "epochs", "lr", "hidden", "val acc", "test acc"),
        ),
        "",
        "## Top 5",
        "",
        format_table(_rows(ranked.head(5)), header),
        "",
        "## Bottom 5 (finite models)",
        "",
        format_table(_rows(finite.tail(5)), header),
        "",
        "## Correlation with val accuracy (Pearson, over the grid)",
        "",
        format_table(
            [(p, _signed(metrics["correlation"][p]), f"{REFERENCE['correlation'][p]:+.2f}") for p in HYPER_PARAMETERS],
            ("hyper-parameter", "this run", "reference"),
        ),
        "",
        "Figures: plots/e2/figures/scatter.png (val accuracy against each hyper-parameter, coloured by each other one), "
        f"plots/e2/figures/correlation.png, plots/e2/figures/loss_curves.png (best {cfg.curves.best}, median {cfg.curves.median}, worst {cfg.curves.worst}). "
        "The whole table, one row per model with per-epoch train and val losses as JSON lists: plots/e2/tables/results.csv.",
    ]
    return "\n".join(parts) + "\n"
