"""E7. Transfer learning on a multi-label set: ResNet50 hook features, linear heads, fine-tuning.

Three steps, three stages, so that heads re-train without the backbone:

- `extract_features`: ResNet50 outputs after global average pooling (module `avgpool`, 2,048-d),
  taken with the shared forward-hook helper for train/val/test, once with the pretrained
  weights and once from a random initialisation -> data/features/e7/{pretrained,random}.pt.
- `finetune`: the same ResNet50 with its last layer replaced and re-initialised, every layer
  trained with the same loss (binary cross-entropy on logits) and optimiser as the heads,
  checkpointed every epoch (resumable, and DDP under torchrun) -> its scores on every split.
- `run_heads`: a linear layer on each cached feature set (the engine's fit on the feature
  tensors), then per-class AP and mAP of all three models, train and test, in both
  definitions (VOC07 11-point and non-interpolated), "difficult" ignored as in VOC07.
  The metrics hold the mAPs (headline numbers); per-class AP goes to a CSV table and the report.

Each step takes the `e7` section (config.E7) and the seed; what needs files or the model
(the hooked layer, a weights file, the cached inputs of the next step) is checked at the
start of the step, before any work, as a config.ParamError naming the dotted key.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import backbones, datasets, engine, io, metrics, precision
from ..config import E7, ParamError
from ..hooks import CompileUnavailable, extract_split_features, use_compile
from ..images import Images
from ..references import E7 as REFERENCE  # the catalogue's numbers, shared with the study page
from ..tables import format_table
from ..tracking import Tracker

FEATURE_KINDS = ("pretrained", "random")
MODELS = ("linear_pretrained", "linear_random", "finetuned")
AP_METHODS = {"voc07": "VOC07 11-point interpolated", "sklearn": "non-interpolated (sklearn average_precision_score)"}


LOSS = "bce_with_logits"  # multi-label: one sigmoid per class, heads and fine-tuning alike


def linear_config(cfg: E7, seed: int) -> engine.TrainConfig:
    return engine.train_config(cfg.linear, seed=seed, loss=LOSS)


def finetune_config(cfg: E7, seed: int) -> engine.TrainConfig:
    return engine.train_config(cfg.finetune, seed=seed, loss=LOSS)


# --------------------------------------------------------------------------- data


def load_scenes(prepared_dir: Path, image_size: int | None = None, max_train_images: int | None = None, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Every split as images (uint8, made (B, 3, S, S) standardised floats per batch; none when image_size is None: labels only),
    multi-hot `present` (N, K), `difficult` (N, K) and `index`, the rows kept of the prepared
    split: all, except a seeded subset of max_train_images train scenes (the time budget)."""
    out = {}
    for split in datasets.SPLITS:
        sp = datasets.load_split(prepared_dir, split)
        index = datasets.subsample(sp.y, max_train_images if split == "train" else None, seed)
        difficult = sp.difficult if sp.difficult is not None else np.zeros_like(sp.y)
        out[split] = {
            "index": torch.from_numpy(index),
            "present": torch.from_numpy(sp.y[index].astype(np.float32)),
            "difficult": torch.from_numpy(difficult[index].astype(bool)),
        }
        if image_size is not None:
            out[split]["x"] = Images(torch.from_numpy(sp.x[index]), image_size)
    return out


# --------------------------------------------------------------------------- features


def extract_features(
    cfg: E7, prepared_dir: Path, out_dir: Path, *, seed: int = 0, progress: bool = True, device: torch.device | str = "cpu",
) -> dict:
    """Hook features of every split, pretrained and random-init backbones -> out_dir/<kind>.pt.

    out_dir/info.json says how they were made (layer, arch, size, precision and device that ran, dims);
    the returned info adds each kind's wall "seconds" (kept out of info.json: a re-run with
    the same params writes the same file).
    """
    backbones.check_layer(cfg.arch, cfg.layer, "e7.layer", arch_key="e7.arch")  # before any work
    backbones.check_weights(cfg.weights, "e7.weights")
    scenes = load_scenes(Path(prepared_dir), cfg.image_size, cfg.max_train_images, seed)
    bf16 = precision.use_bf16(cfg.feature_precision, device)
    try:  # per backbone: every split through one compiled graph
        compiled = use_compile(cfg.feature_compile, sum(len(s["x"]) for s in scenes.values()) * cfg.image_size**2, device)
    except CompileUnavailable as error:
        raise ParamError("e7.feature_compile", f"is {cfg.feature_compile!r}, but {error}; use auto or never") from None
    info: dict[str, Any] = {
        "layer": cfg.layer, "arch": cfg.arch, "image_size": cfg.image_size, "precision": "bf16" if bf16 else "fp32",
        "compiled": compiled, "device": engine.device_name(device),
    }
    timings: dict[str, float] = {}
    for kind in FEATURE_KINDS:
        weights = cfg.weights if kind == "pretrained" else backbones.RANDOM
        model = backbones.load_backbone(cfg.arch, weights, key="e7.weights", arch_key="e7.arch", seed=seed)
        start = time.perf_counter()
        features = {
            split: taken[cfg.layer]
            for split, taken in extract_split_features(
                model, {split: s["x"] for split, s in scenes.items()}, [cfg.layer], batch_size=cfg.feature_batch_size, bf16=bf16,
                progress=progress, desc=f"e7 {kind}", device=device, compile=compiled,
            ).items()
        }  # split -> (N, D)
        seconds = time.perf_counter() - start
        io.save_torch(Path(out_dir) / f"{kind}.pt", {"weights": weights, "train_index": scenes["train"]["index"], **features})
        n = sum(len(f) for f in features.values())
        info[kind] = {"weights": weights, "dim": int(features["train"].shape[1]), "images": n}
        timings[kind] = round(seconds, 2)
        print(f"e7 features ({kind}, {weights}, {info['precision']}{', compiled' if compiled else ''}): {n} images -> {features['train'].shape[1]}-d in {seconds:.1f} s ({n / seconds:.0f} images/s)")
    io.write_json(Path(out_dir) / "info.json", info)
    return {**info, **{kind: {**info[kind], "seconds": timings[kind]} for kind in FEATURE_KINDS}}


def load_features(path: Path) -> dict[str, torch.Tensor]:
    """{split: (N, D)} and train_index, the prepared train rows the train features belong to."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found; run the e7_features stage first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {key: saved[key] for key in (*datasets.SPLITS, "train_index")}


# --------------------------------------------------------------------------- linear heads


def train_linear_head(
    features: dict[str, torch.Tensor], present: dict[str, torch.Tensor], train_cfg: engine.TrainConfig,
    *, seed: int, on_epoch=None, progress: bool = True, desc: str = "e7 linear", device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], engine.History]:
    """A linear layer on features standardised with the train statistics; its scores (N, K) per
    split and its training history (per-epoch curves, the precision that ran).

    Standardising lets one learning rate serve features of any scale (a random-init ResNet50's
    pooled features are far larger than a trained one's).
    """
    mean, std = features["train"].mean(0), features["train"].std(0).clamp_min(1e-6)  # (D,)
    z = {split: (features[split] - mean) / std for split in datasets.SPLITS}
    torch.manual_seed(seed)
    head = nn.Linear(z["train"].shape[1], present["train"].shape[1])
    history = engine.fit(head, (z["train"], present["train"]), (z["val"], present["val"]), train_cfg, on_epoch=on_epoch, progress=progress, desc=desc, device=device)
    return {split: engine.predict(head, zs) for split, zs in z.items()}, history


# --------------------------------------------------------------------------- fine-tuning


def fingerprint(*parts: Any) -> str:
    """md5 of plain values and files: a checkpoint resumes only for the same inputs."""
    h = hashlib.md5()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.read_bytes() if part.is_file() else str(part).encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def finetune(
    cfg: E7, prepared_dir: Path, checkpoint: Path, *, seed: int = 0, tracker: Tracker | None = None, progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], dict]:
    """Fine-tune every layer of the backbone with a new head; its scores (N, K) per split and run info
    (train_index, train_images, epochs, precision and device that ran, seconds, val_loss per epoch)."""
    backbones.check_weights(cfg.weights, "e7.weights")  # before any work
    train_cfg = finetune_config(cfg, seed)
    prepared_dir = Path(prepared_dir)
    scenes = load_scenes(prepared_dir, cfg.image_size, cfg.finetune.max_train_images, seed)
    model = backbones.load_backbone(cfg.arch, cfg.weights, key="e7.weights", arch_key="e7.arch", seed=seed)
    backbones.replace_head(model, scenes["train"]["present"].shape[1], seed)
    train = scenes["train"]
    weights_file = Path(cfg.weights) if cfg.weights not in (backbones.HUB, backbones.RANDOM) else cfg.weights
    run_key = fingerprint(cfg.arch, weights_file, cfg.image_size, train["index"].tolist(), seed, prepared_dir / "train.npz", prepared_dir / "val.npz")
    on_epoch = (lambda epoch, m: tracker.epoch("finetuned", epoch, m)) if tracker else None
    start = time.perf_counter()
    history = engine.fit(
        model, (train["x"], train["present"]), (scenes["val"]["x"], scenes["val"]["present"]), train_cfg,
        on_epoch=on_epoch, progress=progress, desc="e7 finetune", checkpoint=checkpoint, run_key=run_key, device=device,
    )
    seconds = time.perf_counter() - start
    scores = {split: engine.predict(model, s["x"], train_cfg.eval_batch_size) for split, s in scenes.items()}
    info = {
        "train_index": train["index"], "train_images": len(train["index"]), "epochs": train_cfg.epochs,
        "precision": history.precision, "device": history.device, "seconds": round(seconds, 2), "val_loss": history.val_loss,
    }
    return scores, info


def save_finetune_scores(path: Path, scores: dict[str, torch.Tensor], info: dict) -> None:
    """What the e7 stage reads back: the scores of every split, the train rows, precision, device and seconds."""
    io.save_npz(
        path, **{split: v.numpy() for split, v in scores.items()},
        train_index=info["train_index"].numpy(), precision=np.array(info["precision"]), device=np.array(info["device"]),
        seconds=np.array(info["seconds"]),
    )


# --------------------------------------------------------------------------- AP, report


def ap_table(scores: dict[str, torch.Tensor], labels: dict[str, dict[str, torch.Tensor]], classes: list[str]) -> dict:
    """{split: {"map_voc07", "map_sklearn", "ap_voc07": {class: AP}, "ap_sklearn": {...}}} for train and test (AP in %).

    labels: {split: {"present", "difficult"}} of the same rows as the scores.
    """
    out = {}
    for split in ("train", "test"):
        row: dict[str, Any] = {}
        for method in AP_METHODS:
            ap = metrics.per_class_ap(scores[split].numpy(), labels[split]["present"].numpy(), labels[split]["difficult"].numpy(), method) * 100
            row[f"map_{method}"] = round(float(np.nanmean(ap)), 2)
            row[f"ap_{method}"] = {c: round(float(a), 2) for c, a in zip(classes, ap)}
        out[split] = row
    return out


def _labels_of_rows(scenes: dict, train_index: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """The labels of every split, the train split cut to the rows a model's train scores cover."""
    position = {int(i): p for p, i in enumerate(scenes["train"]["index"].tolist())}
    rows = torch.tensor([position[int(i)] for i in train_index.tolist()], dtype=torch.long)
    return {**scenes, "train": {key: value[rows] for key, value in scenes["train"].items()}}


def run_heads(
    cfg: E7, prepared_dir: Path, features_dir: Path, finetune_scores: Path, *, report_path: Path, figure_path: Path,
    table_path: Path, tracker: Tracker | None = None, seed: int = 0, progress: bool = True, device: torch.device | str = "cpu",
) -> dict:
    """Linear heads on the cached features; AP of them and of the fine-tuned model; the report.

    Returns the headline metrics, {"e7": {model: {"train_images", "precision", "device", "seconds",
    "train": {"map_voc07", "map_sklearn"}, "test": {...}}, "features": {"precision", "device"}}};
    per-class AP goes to table_path (CSV: model, split, method, class, ap), the figure and the report.
    """
    prepared_dir, features_dir = Path(prepared_dir), Path(features_dir)
    for path, stage in [*((features_dir / f"{kind}.pt", "e7_features") for kind in FEATURE_KINDS), (Path(finetune_scores), "e7_finetune")]:
        if not path.exists():  # before any head is trained
            raise FileNotFoundError(f"{path} not found; run the {stage} stage first")
    train_cfg = linear_config(cfg, seed)
    meta = datasets.load_meta(prepared_dir)
    classes = list(meta["classes"])
    scenes = load_scenes(prepared_dir)  # labels of every row
    tables: dict[str, dict] = {}  # model -> ap_table (per-class AP included)
    results: dict[str, dict] = {}
    for kind in FEATURE_KINDS:
        name = f"linear_{kind}"
        features = load_features(features_dir / f"{kind}.pt")
        labels = _labels_of_rows(scenes, features["train_index"])
        present = {split: labels[split]["present"] for split in datasets.SPLITS}
        on_epoch = (lambda epoch, m, name=name: tracker.epoch(name, epoch, m)) if tracker else None
        start = time.perf_counter()
        scores, history = train_linear_head(features, present, train_cfg, seed=seed, on_epoch=on_epoch, progress=progress, desc=f"e7 {name}", device=device)
        tables[name] = ap_table(scores, labels, classes)
        results[name] = {
            "train_images": len(features["train"]), "precision": history.precision, "device": history.device,
            "seconds": round(time.perf_counter() - start, 2),
        }
    saved = io.load_npz(finetune_scores)
    scores = {s: torch.from_numpy(saved[s]) for s in datasets.SPLITS}
    labels = _labels_of_rows(scenes, torch.from_numpy(saved["train_index"]))
    tables["finetuned"] = ap_table(scores, labels, classes)
    results["finetuned"] = {
        "train_images": len(saved["train_index"]),
        "precision": str(saved["precision"]) if "precision" in saved else "unknown",
        "device": str(saved["device"]) if "device" in saved else "unknown",
        "seconds": float(saved["seconds"]),
    }
    for name in MODELS:
        for split in ("train", "test"):
            results[name][split] = {f"map_{method}": tables[name][split][f"map_{method}"] for method in AP_METHODS}
    info_path = features_dir / "info.json"
    feature_info = io.read_json(info_path) if info_path.exists() else {}
    features = {
        "precision": feature_info.get("precision", "fp32"), "compiled": bool(feature_info.get("compiled", False)),
        "device": feature_info.get("device", "unknown"),
    }
    write_ap_csv(tables, table_path)
    _ap_figure(tables, classes, figure_path)
    io.write_text(report_path, e7_report(meta, cfg, results, tables, features, train_cfg, finetune_config(cfg, seed)))
    return {"e7": {**results, "features": features}}


def write_ap_csv(tables: dict[str, dict], path: Path) -> None:
    """Per-class AP (%) of every model, split and AP definition, one row each (a DVC plot source)."""
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("model", "split", "method", "class", "ap"))
        for name, table in tables.items():
            for split, row in table.items():
                for method in AP_METHODS:
                    for cls, ap in row[f"ap_{method}"].items():
                        writer.writerow((name, split, method, cls, ap))


def _ap_figure(tables: dict, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(MODELS)
    for i, name in enumerate(MODELS):
        ap = list(tables[name]["test"]["ap_voc07"].values())
        ax.bar(np.arange(len(classes)) + (i - 1) * width, ap, width, label=f"{name} (mAP {tables[name]['test']['map_voc07']:.1f})")
    ax.set_xticks(np.arange(len(classes)), classes)
    ax.set_ylabel("test AP, VOC07 11-point (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="lower right")
    io.save_figure(fig, path)


def e7_report(
    meta: dict, cfg: E7, results: dict, tables: dict, features: dict,
    linear_cfg: engine.TrainConfig, finetune_cfg: engine.TrainConfig,
) -> str:
    sizes, profile = meta["sizes"], meta["profile"]
    rows = []
    for name in MODELS:
        r, ref = results[name], REFERENCE.get(name, {})
        rows.append((
            name,
            f"{r['train']['map_voc07']:.2f}", f"{r['test']['map_voc07']:.2f}",
            f"{r['train']['map_sklearn']:.2f}", f"{r['test']['map_sklearn']:.2f}",
            f"{ref['train']:.2f} / {ref['test']:.2f}" if ref else "-",
            r["precision"],
            f"{r['seconds']:.1f}",
        ))
    classes = list(meta["classes"])
    per_class = [
        (name, method, *[f"{a:.1f}" for a in tables[name]["test"][f"ap_{method}"].values()])
        for method in AP_METHODS for name in MODELS
    ]
    lp, lr, ft = (results[n]["test"]["map_voc07"] for n in MODELS)
    parts = [
        "# E7. Transfer learning on a multi-label set",
        "",
        f"Data: {meta['source']} ({profile} profile); train {sizes['train']:,}, val {sizes['val']:,}, test {sizes['test']:,} images "
        f"at {cfg.image_size} px. Backbone: torchvision {cfg.arch}, weights `{cfg.weights}`; features after `{cfg.layer}`, "
        f"extracted in {features['precision']} (e7.feature_precision: {cfg.feature_precision}), "
        f"{'compiled' if features['compiled'] else 'eager'} (e7.feature_compile: {cfg.feature_compile}).",
        "",
        "mAP in %, train and test, both definitions. \"Difficult\" (VOC07): an image whose class is present only as difficult "
        "objects is left out of that class's ranking (neither positive nor negative); heads are trained on every present class.",
        "",
        format_table(rows, ("model", "train mAP VOC07", "test mAP VOC07", "train mAP sklearn", "test mAP sklearn", "reference (full, train / test)", "precision", "seconds")),
        "",
        f"Pretrained features vs random-init features (linear head, test VOC07 mAP): {lp:.2f} vs {lr:.2f} "
        f"({'pretrained better' if lp > lr else 'pretrained NOT better'}, {lp - lr:+.2f}). Fine-tuned vs linear head: {ft:.2f} vs {lp:.2f} "
        f"({'fine-tuning better' if ft > lp else 'fine-tuning NOT better'}).",
        "",
        "Full-profile targets (ImageNet ResNet50 on VOC2007 at 224 px, 20 epochs): beat 83.40 test mAP with the linear head and "
        "87.23 with fine-tuning (literature: linear SVM 87.17, fine-tuned ResNet-101 at 448 px 91.7-93.0).",
        "",
        "## Test AP per class (%)",
        "",
        "Both definitions; every model, split and definition is in plots/e7/tables/ap_per_class.csv.",
        "",
        format_table(per_class, ("model", "AP", *classes)),
        "",
        f"Training: linear heads `{linear_cfg}` on {results['linear_pretrained']['train_images']} train images; "
        f"fine-tuning `{finetune_cfg}` on {results['finetuned']['train_images']} train images (train mAP: on those images).",
    ]
    return "\n".join(parts) + "\n"
