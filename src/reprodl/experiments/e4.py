"""E4. Manifold untangling: 2-D maps of the test set, raw and through the trained E1 models.

Each representation (raw pixels, then module outputs of the E1 models taken with forward
hooks) is mapped to 2-D with t-SNE and with PCA; neighboring_hit measures how well the
classes separate in each map. Untangling: it rises from the pixels to the deep layers.

    params = config.load_params()
    metrics = run_e4(params.e4, "data/prepared/mnist", models_dir=Path("models/e1"), ..., seed=params.seed)

Metrics (headline): the t-SNE and PCA neighboring_hit of each representation. Per class and
the dimensions: plots/e4/tables/neighboring_hit.csv and the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import datasets, engine, hooks, io, manifold, models, plots
from ..config import E4, ParamError
from ..tables import format_table

PIXELS = "pixels"  # the representation with no model: the flattened images
LABELS = {"tsne": "t-SNE", "pca": "PCA"}
TABLE = "neighboring_hit.csv"  # in tables_dir: one row per representation x method x class ("all": overall)


def representation_name(model: str, layer: str) -> str:
    """("convnet", "hidden") -> "convnet_hidden": a metrics key without dots."""
    return f"{model}_{layer.replace('.', '_')}"


# --------------------------------------------------------------------------- checks against the files


def load_inputs(cfg: E4, prepared_dir: Path, models_dir: Path) -> tuple[dict, datasets.Split, dict[str, torch.nn.Module]]:
    """Meta, test split and the hooked models, checked against the params before any work.

    ParamError (naming the dotted key) when: neighbors or the perplexity is too large for the
    test split, a model file is missing, a layer is not a module of its model, or a model
    cannot read the images of e4.dataset.
    """
    meta = datasets.load_meta(prepared_dir)
    test = datasets.load_split(prepared_dir, "test")
    n = len(test)
    if cfg.neighbors >= n:
        raise ParamError("e4.neighbors", f"must be below the number of test images ({n} in {prepared_dir}), got {cfg.neighbors}")
    if cfg.tsne.perplexity > n - 1:  # what manifold.tsne would refuse, named as a param
        raise ParamError("e4.tsne.perplexity", f"must be at most the number of test images - 1 ({n - 1}: {n} in {prepared_dir}), got {cfg.tsne.perplexity:g}")
    models_dir = Path(models_dir)
    probe = engine.to_tensor_images(test.x[:1])  # (1, C, H, W): one image, to check each model reads these
    loaded: dict[str, torch.nn.Module] = {}
    for i, ref in enumerate(cfg.layers):
        path = models_dir / f"{ref.model}.pt"
        if ref.model not in loaded:
            if not path.exists():
                available = ", ".join(sorted(p.stem for p in models_dir.glob("*.pt"))) or "none: run the e1 stage"
                raise ParamError(f"e4.layers[{i}].model", f"is {ref.model!r}, but there is no {path} (available: {available})")
            model = models.load_model(path)[0]
            try:
                with torch.no_grad():
                    model(probe)
            except RuntimeError:
                raise ParamError(
                    "e4.dataset", f"is {cfg.dataset!r}, whose {tuple(meta['image_shape'])} images {path} cannot read (it was trained on other images: e1.dataset)"
                ) from None
            loaded[ref.model] = model
        try:
            hooks.check_layers(loaded[ref.model], [ref.layer], key=str(path))
        except KeyError as err:
            raise ParamError(f"e4.layers[{i}].layer", f"is {ref.layer!r}: {err.args[0]}") from None
    return meta, test, loaded


# --------------------------------------------------------------------------- run


def run_e4(
    cfg: E4,
    prepared_dir: Path,
    *,
    models_dir: Path,
    figures_dir: Path,
    tables_dir: Path,
    report_path: Path,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Maps, figures, tables_dir/neighboring_hit.csv and the report; returns the headline metrics

    {"e4": {representation: {"test": {"neighboring_hit": t-SNE, "neighboring_hit_pca": PCA}}, "seconds": wall}}.
    """
    meta, test, loaded = load_inputs(cfg, Path(prepared_dir), Path(models_dir))  # every check first
    start = time.perf_counter()
    x = engine.to_tensor_images(test.x)  # (N, C, H, W) in [0, 1]
    features = {PIXELS: x.flatten(1).numpy()}  # (N, D) per representation
    for name, model in loaded.items():
        layers = [ref.layer for ref in cfg.layers if ref.model == name]
        # fp32: these models are tiny, and bf16 features would make the maps depend on the CPU.
        taken = hooks.extract_features(model, x, layers, bf16=False, progress=progress, desc=f"e4 {name}")
        features.update({representation_name(name, layer): taken[layer].numpy() for layer in layers})

    views: dict[str, dict[str, manifold.Projection]] = {}
    for rep, feats in features.items():
        views[rep] = {
            method: manifold.project(feats, test.y, method, perplexity=cfg.tsne.perplexity, seed=seed, n_jobs=cfg.tsne.n_jobs, k=cfg.neighbors)
            for method in manifold.METHODS
        }
        print(f"e4 {rep} ({feats.shape[1]}-d): neighboring_hit t-SNE {views[rep]['tsne'].hit:.4f}, PCA {views[rep]['pca'].hit:.4f}")

    figures_dir, tables_dir = Path(figures_dir), Path(tables_dir)
    dims = {rep: int(feats.shape[1]) for rep, feats in features.items()}
    titles = {rep: f"{rep} ({dims[rep]}-d)" for rep in features}
    for rep, by_method in views.items():
        view = by_method["tsne"]
        panel = dict(points=view.points, labels=view.labels, ellipses=view.ellipses, title=f"t-SNE of {titles[rep]}: neighboring_hit {view.hit:.3f}")
        plots.save_embedding_grid([[panel]], figures_dir / f"tsne_{rep}.png", panel_size=6.0)
    plots.save_embedding_grid(
        [
            [dict(points=v[m].points, labels=v[m].labels, ellipses=v[m].ellipses, title=f"{LABELS[m]} {titles[rep]}\nhit {v[m].hit:.3f}") for rep, v in views.items()]
            for m in ("pca", "tsne")
        ],
        figures_dir / "pca_vs_tsne.png",
    )
    sources = {PIXELS: ("", "")} | {representation_name(ref.model, ref.layer): (ref.model, ref.layer) for ref in cfg.layers}
    write_table(tables_dir / TABLE, views, dims, sources, list(meta["classes"]))

    results = {rep: {"test": {"neighboring_hit": v["tsne"].hit, "neighboring_hit_pca": v["pca"].hit}} for rep, v in views.items()}
    seconds = time.perf_counter() - start
    io.write_text(report_path, e4_report(meta, cfg, views, dims, seconds))
    return {"e4": {**results, "seconds": round(seconds, 2)}}


def write_table(path: Path, views: dict[str, dict[str, manifold.Projection]], dims: dict[str, int], sources: dict, classes: list[str]) -> None:
    """representation, model, layer, dims, method, class, neighboring_hit; class "all": over every point."""
    rows = []
    for rep, by_method in views.items():
        model, layer = sources[rep]
        for method, view in by_method.items():
            hits = [("all", view.hit)] + [(classes[c], hit) for c, hit in sorted(view.hit_per_class.items())]
            rows += [
                {"representation": rep, "model": model, "layer": layer, "dims": dims[rep], "method": method, "class": label, "neighboring_hit": round(hit, 6)}
                for label, hit in hits
            ]
    io.write_csv(path, rows)


# --------------------------------------------------------------------------- report


def _cell(hit: float | None) -> str:
    return "-" if hit is None else f"{hit:.2f}"  # "-": no test image of that class


def e4_report(meta: dict, cfg: E4, views: dict[str, dict[str, manifold.Projection]], dims: dict[str, int], seconds: float) -> str:
    classes = list(meta["classes"])
    rows = [
        (rep, dims[rep], f"{v['tsne'].hit:.4f}", f"{v['pca'].hit:.4f}", *(_cell(v["tsne"].hit_per_class.get(c)) for c in range(len(classes))))
        for rep, v in views.items()
    ]
    pixels = views[PIXELS]["tsne"].hit
    deeper = {rep: v["tsne"].hit for rep, v in views.items() if rep != PIXELS}
    untangled = [rep for rep, hit in deeper.items() if hit > pixels]
    return "\n".join([
        "# E4. Manifold untangling",
        "",
        f"Test split of {meta['name']} ({meta['profile']} profile, {meta['sizes']['test']:,} images). Each "
        f"representation mapped to 2-D by t-SNE (openTSNE, PCA init, perplexity {cfg.tsne.perplexity:g}) and by PCA; "
        f"neighboring_hit: the fraction of each point's {cfg.neighbors} nearest neighbours in the 2-D map "
        "(the point excluded) that share its label, averaged over all points (per class: over that class's points).",
        "",
        format_table(rows, ("representation", "dims", "hit t-SNE", "hit PCA", *(f"t-SNE {c}" for c in classes))),
        "",
        f"Untangling: {len(untangled)} of {len(deeper)} hooked layers separate the classes better than the pixels "
        f"(t-SNE hit {pixels:.4f})" + (f": {', '.join(untangled)}." if untangled else "."),
        "",
        "Figures: plots/e4/figures/pca_vs_tsne.png (PCA above t-SNE, one column per representation) and "
        "plots/e4/figures/tsne_<representation>.png, each with one ellipse per class (a full-covariance Gaussian; "
        f"semi-axes sqrt(2) standard deviations). Table: plots/e4/tables/{TABLE} (both methods, overall and per class).",
        "",
        f"Maps and figures: {seconds:.1f} s.",
        "",
    ])
