"""E9. Vision transformer vs CNN on a fine-grained set.

Balanced subsets of a fine-grained set (Stanford Dogs in the full profile; two-digit numbers
in the embedded one), `cfg.subsets` classes each, drawn by seed from the classes that have
enough images (one seeded order of classes: each subset holds the smaller ones), with
`cfg.images_per_class` images per class taken split by split from the prepared dataset (split
by data.fine_grained_split, the catalogue's: a quarter to test, a quarter of the rest to val).

- baseline: a CNN (MobileNetV2) with frozen pretrained features and a new linear head. The
  frozen backbone runs once per image in eval mode (BatchNorm statistics frozen too, as a
  frozen Keras base does) and the head trains on the cached features: the same result as
  training the head behind the frozen backbone without augmentation, at a fraction of the cost.
  Its training time is the feature pass over train and val plus the head's training.
- vit: a vision transformer, every layer fine-tuned with weight decay (AdamW).

Reported per subset and model: accuracy and top-3 accuracy on the test split, the test
split's evaluation time, the training time and the ViT / baseline training-time ratio; the
probability confusion matrix M[i, j] = mean predicted probability of class j over the test
images of true class i; the five least-well-predicted classes (lowest M[i, i]), each with the
two classes it is most often taken for (largest M[i, j], j != i).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import backbones, datasets, engine, io, models, references
from ..config import E9, ParamError
from ..images import Images, model_input
from ..tables import format_table
from ..tracking import Tracker

MODELS = ("baseline", "vit")
LEAST_PREDICTED = 5  # classes listed per model and subset
CONFUSED_WITH = 2  # classes named per least-predicted class


def check_e9(cfg: E9) -> None:
    """Before any work: the weights files exist and the ViT's patch grid takes the image size."""
    backbones.check_image_size(cfg.vit.arch, cfg.image_size, "e9.image_size", "e9.vit.arch")
    backbones.check_weights(cfg.baseline.weights, "e9.baseline.weights")
    backbones.check_weights(cfg.vit.weights, "e9.vit.weights")


def eligible_classes(splits: dict[str, datasets.Split], meta: dict, images_per_class: int) -> tuple[list[int], tuple[int, int, int]]:
    """(classes with enough images in every split, images per class per split).

    A class is eligible when each prepared split holds at least its share of images_per_class
    (shared out by the fractions the dataset was split with, meta["fractions"]).
    """
    counts = datasets.split_counts(images_per_class, meta["fractions"])
    n_classes = len(meta["classes"])
    enough = np.ones(n_classes, dtype=bool)
    for split, need in zip(datasets.SPLITS, counts):
        enough &= np.bincount(splits[split].y, minlength=n_classes) >= need
    return [int(c) for c in np.flatnonzero(enough)], counts


def draw_subset(splits: dict[str, datasets.Split], classes: list[int], counts: tuple[int, int, int], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split, `count` seeded images of each class in `classes`; labels renumbered 0..K-1 in that order."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in zip(datasets.SPLITS, counts):
        sp = splits[split]
        picks = [rng.choice(np.flatnonzero(sp.y == c), size=count, replace=False) for c in classes]
        index = np.concatenate(picks)
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), count)
        out[split] = (sp.x[index], labels)
    return out


def probability_confusion(probs: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """M[i, j] = mean predicted probability of class j over the images of true class i; (K, K)."""
    matrix = np.zeros((n_classes, n_classes))
    for i in range(n_classes):
        rows = probs[y == i]
        matrix[i] = rows.mean(0) if len(rows) else np.nan
    return matrix


def least_predicted(matrix: np.ndarray, names: list[str], n: int = LEAST_PREDICTED, confused: int = CONFUSED_WITH) -> list[dict]:
    """The n classes with the lowest M[i, i], each with the `confused` classes of largest M[i, j], j != i.

    Ties are broken by class order (stable sorts), so the list is a function of M alone.
    """
    diagonal = np.diag(matrix)
    rows = []
    for i in np.argsort(diagonal, kind="stable")[:n]:
        others = [j for j in np.argsort(-matrix[i], kind="stable") if j != i][:confused]
        rows.append({
            "class": names[i], "probability": float(diagonal[i]),
            "taken_for": [{"class": names[j], "probability": float(matrix[i, j])} for j in others],
        })
    return rows


def top_k_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(1).mean())


def model_inputs(data: dict, arch: str, image_size: int) -> tuple[dict[str, Images], dict[str, torch.Tensor]]:
    """A drawn subset: images (uint8, made (B, 3, S, S) floats standardised as `arch`'s weights expect per batch), labels (N,)."""
    mean, std = backbones.input_stats(arch)
    images = {split: Images(torch.from_numpy(x), image_size, mean, std) for split, (x, _) in data.items()}
    return images, {split: torch.from_numpy(y) for split, (_, y) in data.items()}


@torch.no_grad()
def frozen_features(model: nn.Module, x: torch.Tensor | Images, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The pooled features before the classifier, eval mode, computed on `device` (the model is
    moved there); (N, C, H, W) -> (N, D) on the CPU."""
    model.eval().to(device)
    parts = [model.forward_head(model.forward_features(model_input(x[i : i + batch_size].to(device))), pre_logits=True) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).float().cpu()


def run_baseline(cfg: E9, data: dict, n_classes: int, seed: int, progress: bool, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Frozen backbone, linear head on cached features -> {"probs", "train_seconds", "eval_seconds", ...}."""
    block = cfg.baseline
    images, labels = model_inputs(data, block.arch, cfg.image_size)
    backbone = backbones.load_timm_backbone(
        block.arch, block.weights, n_classes, key="e9.baseline.weights", arch_key="e9.baseline.arch", seed=seed
    )
    train_cfg = engine.train_config(block.head, seed=seed)
    start = time.perf_counter()
    feats = {split: frozen_features(backbone, images[split], block.feature_batch_size, device) for split in ("train", "val")}
    torch.manual_seed(seed)
    head = nn.Linear(feats["train"].shape[1], n_classes)
    history = engine.fit(head, (feats["train"], labels["train"]), (feats["val"], labels["val"]), train_cfg, progress=progress, desc="e9 baseline head", device=device)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probs = torch.softmax(engine.predict(head, frozen_features(backbone, images["test"], block.feature_batch_size, device)), 1).numpy()
    eval_seconds = time.perf_counter() - start
    return {
        "probs": probs, "history": history, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "n_params": models.count_parameters(backbone), "n_trainable": models.count_parameters(head), "feature_dim": int(feats["train"].shape[1]),
    }


def run_vit(cfg: E9, data: dict, n_classes: int, seed: int, progress: bool, on_epoch=None, device: torch.device | str = "cpu") -> dict[str, Any]:
    block = cfg.vit
    images, labels = model_inputs(data, block.arch, cfg.image_size)
    model = backbones.load_timm_backbone(
        block.arch, block.weights, n_classes, image_size=cfg.image_size, key="e9.vit.weights", arch_key="e9.vit.arch", seed=seed
    )
    train_cfg = engine.train_config(block.train, seed=seed)
    start = time.perf_counter()
    history = engine.fit(model, (images["train"], labels["train"]), (images["val"], labels["val"]), train_cfg,
                         on_epoch=on_epoch, progress=progress, desc="e9 vit", device=device)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probs = torch.softmax(engine.predict(model, images["test"], batch_size=256).float(), 1).numpy()
    eval_seconds = time.perf_counter() - start
    n = models.count_parameters(model)
    return {"probs": probs, "history": history, "train_seconds": train_seconds, "eval_seconds": eval_seconds, "n_params": n, "n_trainable": n}


def run_e9(
    cfg: E9, prepared_dir: Path, *, report_path: Path, figures_dir: Path, tables_dir: Path,
    tracker: Tracker | None = None, seed: int = 0, progress: bool = True, device: torch.device | str = "cpu",
) -> tuple[dict, dict]:
    """Every subset, both models -> (metrics tree, timings tree); writes the report, figures and tables.

    metrics: {"e9": {"dataset", "profile", "images_per_class", "split": {"train", "val", "test"},
    "subsets": {"<K>": {"baseline" | "vit": {"accuracy", "top3_accuracy", "val_accuracy", "precision", "device"},
    "vit_minus_baseline": accuracy difference}}}}
    timings: {"subsets": {"<K>": {model: {"train_seconds", "eval_seconds"}, "train_seconds_ratio": vit / baseline}}}
    """
    check_e9(cfg)
    prepared_dir = Path(prepared_dir)
    meta = datasets.load_meta(prepared_dir)
    splits = {split: datasets.load_split(prepared_dir, split) for split in datasets.SPLITS}  # read once
    eligible, counts = eligible_classes(splits, meta, cfg.images_per_class)
    largest = max(cfg.subsets)
    if largest > len(eligible):
        raise ParamError(
            "e9.subsets",
            f"asks for {largest} classes, but only {len(eligible)} of the {len(meta['classes'])} classes of {meta['name']} have "
            f"{cfg.images_per_class} images ({counts[0]} train / {counts[1]} val / {counts[2]} test): lower it or e9.images_per_class",
        )
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]  # one order: 13 inside 28
    names_all = list(meta["classes"])
    metrics: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for k in sorted(cfg.subsets):
        classes = order[:k]
        names = [names_all[c] for c in classes]
        data = draw_subset(splits, classes, counts, seed)
        y_test = data["test"][1]
        results = {
            "baseline": run_baseline(cfg, data, k, seed, progress, device),
            "vit": run_vit(cfg, data, k, seed, progress, on_epoch=(lambda e, m, k=k: tracker.epoch(f"vit_{k}", e, m)) if tracker else None, device=device),
        }
        entry, times = {}, {}
        for model_name, result in results.items():
            probs = result["probs"]
            matrix = probability_confusion(probs, y_test, k)
            result.update(matrix=matrix, least=least_predicted(matrix, names))
            entry[model_name] = {
                "accuracy": float((probs.argmax(1) == y_test).mean()),
                "top3_accuracy": top_k_accuracy(probs, y_test, 3),
                "val_accuracy": result["history"].val_accuracy[-1],
                "precision": result["history"].precision,
                "device": result["history"].device,
            }
            times[model_name] = {"train_seconds": round(result["train_seconds"], 2), "eval_seconds": round(result["eval_seconds"], 3)}
            save_probability_confusion(matrix, names, figures_dir / f"probability_confusion_{k}_{model_name}.png",
                                       f"{model_name} ({cfg.vit.arch if model_name == 'vit' else cfg.baseline.arch}), {k} classes")
            io.write_csv(tables_dir / f"least_predicted_{k}_{model_name}.csv", [
                {"class": row["class"], "probability": row["probability"],
                 **{f"taken_for_{i + 1}": f"{t['class']} ({t['probability']:.3f})" for i, t in enumerate(row["taken_for"])}}
                for row in result["least"]
            ])
            if tracker:
                tracker.confusion(f"{model_name}_{k}", y_test, probs.argmax(1), names)
        entry["vit_minus_baseline"] = entry["vit"]["accuracy"] - entry["baseline"]["accuracy"]
        times["train_seconds_ratio"] = round(results["vit"]["train_seconds"] / max(results["baseline"]["train_seconds"], 1e-9), 2)
        metrics[str(k)], timings[str(k)], details[str(k)] = entry, times, results
        print(f"e9 {k} classes: baseline acc {entry['baseline']['accuracy']:.4f} (top-3 {entry['baseline']['top3_accuracy']:.4f}), "
              f"vit acc {entry['vit']['accuracy']:.4f} (top-3 {entry['vit']['top3_accuracy']:.4f}); "
              f"train {times['baseline']['train_seconds']:.1f} s vs {times['vit']['train_seconds']:.1f} s")
    tree = {
        "dataset": meta["name"], "profile": meta["profile"], "images_per_class": cfg.images_per_class,
        "split": dict(zip(datasets.SPLITS, counts)), "subsets": metrics,
    }
    io.write_text(report_path, e9_report(cfg, meta, counts, metrics, timings, details, figures_dir))
    return {"e9": tree}, {"subsets": timings}


def save_probability_confusion(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    k = len(names)
    size = max(4.0, 0.28 * k + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted class j")
    ax.set_ylabel("true class i")
    ax.set_title(f"mean predicted probability M[i, j]\n{title}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)


def e9_report(cfg: E9, meta: dict, counts, metrics: dict, timings: dict, details: dict, figures_dir: Path) -> str:
    profile = meta["profile"]
    rows = []
    for k, entry in metrics.items():
        for model_name in MODELS:
            arch = cfg.vit.arch if model_name == "vit" else cfg.baseline.arch
            ref, ref_what = references.E9[model_name], references.E9_WHAT[model_name]
            rows.append((
                k, model_name, arch, f"{details[k][model_name]['n_params']:,}", f"{details[k][model_name]['n_trainable']:,}",
                f"{entry[model_name]['accuracy']:.4f}", f"{entry[model_name]['top3_accuracy']:.4f}",
                f"{timings[k][model_name]['train_seconds']:.1f}", f"{timings[k][model_name]['eval_seconds']:.2f}",
                f"{ref:.3f} ({ref_what})",
            ))
    ratio_rows = [(k, f"{timings[k]['train_seconds_ratio']:.2f}", f"{entry['vit_minus_baseline']:+.4f}") for k, entry in metrics.items()]
    wins = [k for k, entry in metrics.items() if entry["vit_minus_baseline"] > 0]
    differences = ", ".join(f"{k} classes: {entry['vit_minus_baseline']:+.4f}" for k, entry in metrics.items())
    where = "every subset" if len(wins) == len(metrics) else f"{len(wins)} of {len(metrics)} subsets"
    verdict = f"The fine-tuned ViT beats the frozen baseline on {where} (test accuracy difference {differences}), on one seed."
    parts = [
        "# E9. Vision transformer vs CNN on a fine-grained set",
        "",
        f"Data: {meta['source']} ({profile} profile). Balanced subsets of {', '.join(map(str, metrics))} classes drawn by seed from the classes "
        f"with enough images; {cfg.images_per_class} images per class: {counts[0]} train / {counts[1]} val / {counts[2]} test, each taken "
        f"from the prepared split of that name; {cfg.image_size} px.",
        f"Baseline: `{cfg.baseline.arch}` (weights `{cfg.baseline.weights}`), features frozen (eval mode, computed once), a new "
        f"linear head trained on them: `{engine.train_config(cfg.baseline.head, seed=0)}`.",
        f"Method: `{cfg.vit.arch}` (weights `{cfg.vit.weights}`), every layer fine-tuned: `{engine.train_config(cfg.vit.train, seed=0)}`.",
        "",
        f"Test accuracy, top-3 accuracy, training and evaluation seconds (this run's CPU); the references are the catalogue's literature figures "
        f"on all 120 breeds at full size, not comparable with the {profile} profile's numbers.",
        "",
        format_table(rows, ("classes", "model", "arch", "parameters", "trained", "accuracy", "top-3", "train s", "eval s (test)", "reference accuracy")),
        "",
        format_table(ratio_rows, ("classes", "training time ViT / baseline", "accuracy ViT - baseline")),
        "",
        verdict,
        "",
        "## Least-well-predicted classes",
        "",
        "Lowest mean probability of the true class (M[i, i]), with the two classes each is most often taken for (M[i, j]).",
    ]
    for k in metrics:
        for model_name in MODELS:
            least_rows = [
                (row["class"], f"{row['probability']:.3f}", *(f"{t['class']} ({t['probability']:.3f})" for t in row["taken_for"]))
                for row in details[k][model_name]["least"]
            ]
            header = ("class", "M[i, i]", *(f"taken for ({i + 1})" for i in range(CONFUSED_WITH)))
            parts += ["", f"### {k} classes, {model_name}", "", format_table([r + ("",) * (len(header) - len(r)) for r in least_rows], header)]
    parts += ["", f"Probability confusion matrices: `{figures_dir}/probability_confusion_<classes>_<model>.png`."]
    return "\n".join(parts) + "\n"
