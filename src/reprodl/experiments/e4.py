"""E4. Manifold untangling: 2-D maps of the test set, raw and through the trained E1 models.

Each representation (raw pixels, then module outputs of the E1 models taken with forward
hooks) is mapped to 2-D with t-SNE and with PCA; neighboring_hit measures how well the
classes separate in each map. Untangling: it rises from the pixels to the deep layers.

    cfg = check_params(params["e4"], data, seed)
    metrics = run_e4(cfg, "data/prepared/mnist", models_dir=Path("models/e1"), ...)
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Mapping

import torch

from .. import datasets, engine, hooks, io, manifold, models, plots
from ..params import ParamError, check_dataset_name, get, non_empty_list, positive_float, positive_int
from ..tables import format_table

PIXELS = "pixels"  # the representation with no model: the flattened images
LABELS = {"tsne": "t-SNE", "pca": "PCA"}


# --------------------------------------------------------------------------- params


def check_params(e4: Mapping, data: Mapping, seed: int) -> dict:
    """The `e4` section -> {"dataset", "layers": [(model, layer)], "perplexity", "n_jobs", "neighbors"}.

    What needs the files (layer names against the saved models, perplexity against the
    number of test images) is checked by load_inputs, still before any work.
    """
    layers = []
    for i, entry in enumerate(non_empty_list(get(e4, "layers", "e4"), "e4.layers")):
        key = f"e4.layers[{i}]"
        model, layer = get(entry, "model", key), get(entry, "layer", key)
        if not (isinstance(model, str) and re.fullmatch(r"\w+", model)):
            raise ParamError(f"{key}.model", f"must be the name of a model in models/e1 (e.g. mlp, convnet), got {model!r}")
        if not (isinstance(layer, str) and layer):
            raise ParamError(f"{key}.layer", f"must be a module name such as hidden or logits, got {layer!r}")
        layers.append((model, layer))
    if len(set(layers)) != len(layers):
        raise ParamError("e4.layers", f"lists a layer twice: {layers}")
    tsne = get(e4, "tsne", "e4")
    return {
        "dataset": check_dataset_name(get(e4, "dataset", "e4"), "e4.dataset", data, task="multiclass"),
        "layers": layers,
        "perplexity": positive_float(get(tsne, "perplexity", "e4.tsne"), "e4.tsne.perplexity"),
        "n_jobs": positive_int(get(tsne, "n_jobs", "e4.tsne"), "e4.tsne.n_jobs"),
        "neighbors": positive_int(get(e4, "neighbors", "e4"), "e4.neighbors"),
    }


def representation_name(model: str, layer: str) -> str:
    """("convnet", "hidden") -> "convnet_hidden": a metrics key without dots."""
    return f"{model}_{layer.replace('.', '_')}"


def load_inputs(cfg: dict, prepared_dir: Path, models_dir: Path) -> tuple[dict, datasets.Split, dict[str, torch.nn.Module]]:
    """Meta, test split and the hooked models, checked against the params before any work."""
    meta = datasets.load_meta(prepared_dir)
    test = datasets.load_split(prepared_dir, "test")
    n = len(test)
    if n <= cfg["neighbors"]:
        raise ParamError("e4.neighbors", f"must be below the number of test images ({n}), got {cfg['neighbors']}")
    if cfg["perplexity"] > n - 1:  # what manifold.tsne would refuse, named as a param
        raise ParamError("e4.tsne.perplexity", f"must be at most the number of test images - 1 ({n - 1}: {n} in {prepared_dir}), got {cfg['perplexity']:g}")
    loaded: dict[str, torch.nn.Module] = {}
    for i, (name, layer) in enumerate(cfg["layers"]):
        path = Path(models_dir) / f"{name}.pt"
        if name not in loaded:
            if not path.exists():
                available = ", ".join(sorted(p.stem for p in Path(models_dir).glob("*.pt"))) or "none: run the e1 stage"
                raise ParamError(f"e4.layers[{i}].model", f"is {name!r}, but there is no {path} (available: {available})")
            loaded[name] = models.load_model(path)[0]
        try:
            hooks.check_layers(loaded[name], [layer], key=str(path))
        except KeyError as err:
            raise ParamError(f"e4.layers[{i}].layer", f"is {layer!r}: {err.args[0]}") from None
    return meta, test, loaded


# --------------------------------------------------------------------------- run


def run_e4(
    cfg: dict,
    prepared_dir: Path,
    *,
    models_dir: Path,
    plots_dir: Path,
    report_path: Path,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    meta, test, loaded = load_inputs(cfg, Path(prepared_dir), Path(models_dir))
    start = time.perf_counter()
    x = engine.to_tensor_images(test.x)  # (N, C, H, W) in [0, 1]
    features = {PIXELS: x.flatten(1).numpy()}  # (N, D) per representation
    for name, model in loaded.items():
        layers = [layer for model_name, layer in cfg["layers"] if model_name == name]
        # fp32: these models are tiny, and bf16 features would make the maps depend on the CPU.
        taken = hooks.extract_features(model, x, layers, bf16=False, progress=progress, desc=f"e4 {name}")
        features.update({representation_name(name, layer): taken[layer].numpy() for layer in layers})

    views: dict[str, dict[str, manifold.Projection]] = {}
    for rep, feats in features.items():
        views[rep] = {
            method: manifold.project(feats, test.y, method, perplexity=cfg["perplexity"], seed=seed, n_jobs=cfg["n_jobs"], k=cfg["neighbors"])
            for method in manifold.METHODS
        }
        print(f"e4 {rep} ({feats.shape[1]}-d): neighboring_hit t-SNE {views[rep]['tsne'].hit:.4f}, PCA {views[rep]['pca'].hit:.4f}")

    plots_dir = Path(plots_dir)
    titles = {rep: f"{rep} ({feats.shape[1]}-d)" for rep, feats in features.items()}
    for rep, by_method in views.items():
        view = by_method["tsne"]
        panel = dict(points=view.points, labels=view.labels, ellipses=view.ellipses, title=f"t-SNE of {titles[rep]}: neighboring_hit {view.hit:.3f}")
        plots.save_embedding_grid([[panel]], plots_dir / f"tsne_{rep}.png", panel_size=6.0)
    plots.save_embedding_grid(
        [
            [dict(points=v[m].points, labels=v[m].labels, ellipses=v[m].ellipses, title=f"{LABELS[m]} {titles[rep]}\nhit {v[m].hit:.3f}") for rep, v in views.items()]
            for m in ("pca", "tsne")
        ],
        plots_dir / "pca_vs_tsne.png",
    )

    results = {
        rep: {
            "dims": int(features[rep].shape[1]),
            "test": {
                "neighboring_hit": by_method["tsne"].hit,
                "neighboring_hit_per_class": _per_class(by_method["tsne"], meta["classes"]),
                "neighboring_hit_pca": by_method["pca"].hit,
                "neighboring_hit_pca_per_class": _per_class(by_method["pca"], meta["classes"]),
            },
        }
        for rep, by_method in views.items()
    }
    seconds = time.perf_counter() - start
    io.write_text(report_path, e4_report(meta, cfg, results, seconds))
    return {"e4": results}


def _per_class(view: manifold.Projection, classes: list[str]) -> dict[str, float]:
    return {classes[c]: round(hit, 4) for c, hit in view.hit_per_class.items()}


# --------------------------------------------------------------------------- report


def e4_report(meta: dict, cfg: dict, results: dict, seconds: float) -> str:
    classes = list(meta["classes"])
    rows = [
        (rep, r["dims"], f"{r['test']['neighboring_hit']:.4f}", f"{r['test']['neighboring_hit_pca']:.4f}",
         *(f"{r['test']['neighboring_hit_per_class'][c]:.2f}" for c in classes))
        for rep, r in results.items()
    ]
    pixels = results[PIXELS]["test"]["neighboring_hit"]
    deeper = {rep: r["test"]["neighboring_hit"] for rep, r in results.items() if rep != PIXELS}
    untangled = [rep for rep, hit in deeper.items() if hit > pixels]
    return "\n".join([
        "# E4. Manifold untangling",
        "",
        f"Test split of {meta['name']} ({meta['profile']} profile, {meta['sizes']['test']:,} images). Each "
        f"representation mapped to 2-D by t-SNE (openTSNE, PCA init, perplexity {cfg['perplexity']:g}) and by PCA; "
        f"neighboring_hit: the fraction of each point's {cfg['neighbors']} nearest neighbours in the 2-D map "
        "(the point excluded) that share its label, averaged over all points (per class: over that class's points).",
        "",
        format_table(rows, ("representation", "dims", "hit t-SNE", "hit PCA", *(f"t-SNE {c}" for c in classes))),
        "",
        f"Untangling: {len(untangled)} of {len(deeper)} hooked layers separate the classes better than the pixels "
        f"(t-SNE hit {pixels:.4f})" + (f": {', '.join(untangled)}." if untangled else "."),
        "",
        "Figures: plots/e4/pca_vs_tsne.png (PCA above t-SNE, one column per representation) and "
        "plots/e4/tsne_<representation>.png, each with one ellipse per class (a full-covariance Gaussian; "
        "semi-axes sqrt(2) standard deviations).",
        "",
        f"Maps and figures: {seconds:.1f} s.",
        "",
    ])
