"""The study on one page: reports/index.html and its Markdown twin reports/index.md.

Reads only what the experiment stages wrote (metrics/, timings/, reports/<exp>.md, plots/) and,
when a seed sweep has been aggregated (`reprodl seeds`), seeds/seeds.json; the stage passes the
validated params and the git state. For every experiment: what ran, our numbers beside the
catalogue's references (reprodl.references), its figures and curves, and its own report; above
them the course's claims, checked (reprodl.claims), and the seed sweep.

    page = build_page(params, Inputs(), git=git_state(Path(".")), html_dir=Path("reports"))
    io.write_text("reports/index.html", render_html(page)); io.write_text("reports/index.md", render_markdown(page))

Honest by construction: an experiment without its metrics file is "not run" and shows no
number; the "ours" column names the profile the numbers come from; images are linked by
relative path (no network, no copy), so the page opens from a clone.
"""

from __future__ import annotations

import html
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import claims as claims_mod
from . import io, references
from .claims import NAMES, NOT_RUN, Missing, Verdict, get

NOT_RECORDED = "not recorded"


# --------------------------------------------------------------------------- the experiments


@dataclass(frozen=True)
class Row:
    """One line of an experiment's ours-vs-reference table."""

    label: str
    key: str | None  # the dotted metric key (None: a timing or a text, never aggregated over seeds)
    value: float | str
    reference: float | str | None
    fmt: str = ".4f"

    def ours(self) -> str:
        return _fmt(self.value, self.fmt)

    def ref(self) -> str:
        return "-" if self.reference is None else _fmt(self.reference, self.fmt)


def _fmt(value: float | str, fmt: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:{fmt}}" if math.isfinite(value) else str(value)


def _rows_e1(e1: dict, timings: dict) -> list[Row]:
    return [
        Row(f"{model}: test accuracy", f"e1.{model}.test.accuracy", get(e1, f"{model}.test.accuracy"), references.E1.get(model, {}).get("full"))
        for model in e1
        if isinstance(e1[model], dict) and "test" in e1[model]
    ]


def _rows_e2(e2: dict, timings: dict) -> list[Row]:
    ref = references.E2
    best = get(e2, "best")
    return [
        Row("best by val: batch / epochs / lr / hidden", None, " / ".join(f"{best[p]:g}" for p in ("batch", "epochs", "lr", "hidden")),
            " / ".join(f"{ref['best'][p]:g}" for p in ("batch", "epochs", "lr", "hidden"))),
        Row("best: val accuracy", "e2.best.val.accuracy", get(e2, "best.val.accuracy"), ref["best"]["val_accuracy"]),
        Row("best: test accuracy", "e2.best.test.accuracy", get(e2, "best.test.accuracy"), ref["best"]["test_accuracy"]),
        *(Row(f"correlation of {p} with val accuracy", f"e2.correlation.{p}", get(e2, f"correlation.{p}"), r, "+.2f") for p, r in ref["correlation"].items()),
    ]


def _rows_e3(e3: dict, timings: dict) -> list[Row]:
    ref = references.E3
    return [
        Row("best after re-training: widths", None, str(get(e3, "best.widths")), ref["three_layers"]["widths"]),
        Row("best after re-training: val accuracy", "e3.best.val.accuracy", get(e3, "best.val.accuracy"), ref["three_layers"]["val_accuracy"]),
        Row("best after re-training: test accuracy", "e3.best.test.accuracy", get(e3, "best.test.accuracy"), ref["test_accuracy"]),
        Row("best two-layer net in the grid: val accuracy", "e3.two_layers.best.val.accuracy", get(e3, "two_layers.best.val.accuracy"), ref["two_layers"]["val_accuracy"]),
        Row("best three-layer net in the grid: val accuracy", "e3.three_layers.best.val.accuracy", get(e3, "three_layers.best.val.accuracy"), None),
    ]


def _rows_e4(e4: dict, timings: dict) -> list[Row]:
    rows = []
    for name in e4:
        rows.append(Row(f"{name}: neighboring_hit, t-SNE", f"e4.{name}.test.neighboring_hit", get(e4, f"{name}.test.neighboring_hit"), None, ".3f"))
        rows.append(Row(f"{name}: neighboring_hit, PCA", f"e4.{name}.test.neighboring_hit_pca", get(e4, f"{name}.test.neighboring_hit_pca"), None, ".3f"))
    return rows


def _rows_e5(e5: dict, timings: dict) -> list[Row]:
    rows = []
    for dataset in e5:
        mse = f"{dataset}.test.mse"
        for i, loss in enumerate(("mse", "bce")):
            for end in ("best", "worst"):
                size = get(e5, f"{mse}.{loss}_loss.{end}_bottleneck")
                ref = references.E5.get(size, (None, None))[i]
                rows.append(Row(f"{dataset}, {loss} loss: {end} test MSE (bottleneck {size})", f"e5.{mse}.{loss}_loss.{end}", get(e5, f"{mse}.{loss}_loss.{end}"), ref, ".3f"))
        rows.append(Row(f"{dataset}: mean-image baseline, test MSE", f"e5.{mse}.mean_image", get(e5, f"{mse}.mean_image"), None, ".3f"))
        test = f"{dataset}.bce_vs_mse.test"
        rows.append(Row(f"{dataset}: sizes where BCE reconstructs better", None, f"{get(e5, f'{test}.sizes_bce_better')} of {get(e5, f'{test}.sizes')}",
                        f"{len(references.E5)} of {len(references.E5)}"))
        rows.append(Row(f"{dataset}: Wilcoxon p, BCE better (one-sided)", f"e5.{test}.wilcoxon_p_bce_better", get(e5, f"{test}.wilcoxon_p_bce_better"), references.E5_P, ".5f"))
    return rows


def _rows_e6(e6: dict, timings: dict) -> list[Row]:
    rows = [
        Row("regression: weight w", "e6.regression.weight", get(e6, "regression.weight"), references.E6["regression"], ".3f"),
        Row("regression: bias b", "e6.regression.bias", get(e6, "regression.bias"), references.E6["regression"], ".3f"),
    ]
    for task in e6:
        if task != "regression":
            rows.append(Row(f"{task}: test accuracy", f"e6.{task}.test_accuracy", get(e6, f"{task}.test_accuracy"), references.E6.get(task)))
    return rows


def _rows_pretrain(pretrain: dict, timings: dict) -> list[Row]:
    return [Row(f"{arch}: source val accuracy", f"pretrain.{arch}.val.accuracy", get(pretrain, f"{arch}.val.accuracy"), None) for arch in pretrain]


def _rows_e7(e7: dict, timings: dict) -> list[Row]:
    rows = []
    for model in ("linear_pretrained", "linear_random", "finetuned"):
        ref = references.E7.get(model, {})
        for split in ("test", "train"):
            rows.append(Row(f"{model}: {split} mAP VOC07 (%)", f"e7.{model}.{split}.map_voc07", get(e7, f"{model}.{split}.map_voc07"), ref.get(split), ".2f"))
        rows.append(Row(f"{model}: test mAP sklearn (%)", f"e7.{model}.test.map_sklearn", get(e7, f"{model}.test.map_sklearn"), None, ".2f"))
    return rows


def _rows_e8(e8: dict, timings: dict) -> list[Row]:
    rows = [Row(f"{v}: val accuracy", f"e8.{v}.val.accuracy", get(e8, f"{v}.val.accuracy"), references.E8_VAL.get(v)) for v in references.E8_VAL if v in e8]
    rows += [Row(f"{v}: test accuracy", f"e8.{v}.test.accuracy", get(e8, f"{v}.test.accuracy"), None) for v in references.E8_VAL if v in e8]
    rows.append(Row("best by val: variant", None, str(get(e8, "best.variant")), claims_mod.ranked(references.E8_VAL)[0]))
    rows.append(Row("best by val: test accuracy", "e8.best.test.accuracy", get(e8, "best.test.accuracy"), references.E8_TEST))
    rows.append(Row("parameters", None, f"{get(e8, 'n_params'):,}", f"{references.E8_N_PARAMS:,}"))
    return rows


def _rows_e9(e9: dict, timings: dict) -> list[Row]:
    rows = []
    for subset, models in get(e9, "subsets").items():
        for model in (m for m, v in models.items() if isinstance(v, dict)):  # vit_minus_baseline is a number
            acc = f"subsets.{subset}.{model}"
            rows.append(Row(f"{subset} classes, {NAMES.get(model, model)}: test accuracy", f"e9.{acc}.accuracy", get(e9, f"{acc}.accuracy"), references.E9.get(model)))
            rows.append(Row(f"{subset} classes, {NAMES.get(model, model)}: top-3 accuracy", f"e9.{acc}.top3_accuracy", get(e9, f"{acc}.top3_accuracy"), None))
        ratio = timings.get("subsets", {}).get(subset)  # timings/e9.json: subsets -> <K> -> ... train_seconds_ratio
        if isinstance(ratio, dict) and "train_seconds_ratio" in ratio:
            rows.append(Row(f"{subset} classes: training time, ViT / frozen MobileNetV2 (this run's CPU)", None, f"{ratio['train_seconds_ratio']:.2f}x", None))
    return rows


@dataclass(frozen=True)
class Experiment:
    key: str  # metrics/<key>.json, its top-level key, the params section, reports/<key>.md
    title: str
    stages: tuple[str, ...]  # timings/<stage>.json (glob patterns: one stage per item of a foreach) adding up to its wall time
    plots: tuple[str, ...]  # plots/<folder>: figures/*.png and live/ curves
    key_params: tuple[str, ...]  # dotted keys of its params section shown under "what ran"
    rows: Callable[[dict, dict], list[Row]]
    report: bool = True  # writes reports/<key>.md


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("e1", "E1. MNIST baselines", ("e1",), ("e1",),
               ("models", "logreg.epochs", "mlp.epochs", "convnet.epochs", "convnet.batch_size", "convnet.lr", "convnet.precision"), _rows_e1),
    Experiment("e2", "E2. Shallow-network grid search", ("e2",), ("e2",), ("val_fraction", "grid.batch", "grid.epochs", "grid.lr", "grid.hidden"), _rows_e2),
    Experiment("e3", "E3. Deep-network grid search", ("e3",), ("e3",),
               ("lr", "batch_size", "two_layers.widths", "two_layers.epochs", "three_layers.widths", "three_layers.epochs", "top", "retrain_epochs"), _rows_e3),
    Experiment("e4", "E4. Manifold untangling", ("e4",), ("e4",), ("layers", "tsne.perplexity", "neighbors"), _rows_e4),
    Experiment("e5", "E5. Autoencoder compression", ("e5",), ("e5",), ("bottlenecks", "losses", "train.epochs", "train.batch_size", "train.lr"), _rows_e5),
    Experiment("e6", "E6. A network library from scratch (NumPy)", ("e6",), ("e6",),
               ("mnist_mlp.hidden", "mnist_mlp.epochs", "usps_mlp.hidden", "usps_conv.channels", "usps_conv.max_train_images", "xor.hidden"), _rows_e6),
    Experiment("pretrain", "Pretrain: the embedded stand-in for ImageNet weights", ("pretrain_*",), (),
               ("archs", "image_size", "max_images", "resnet50.epochs", "resnet18.epochs", "mobilenetv2_050.epochs", "vit_micro_patch8.epochs"),
               _rows_pretrain, report=False),
    Experiment("e7", "E7. Transfer learning on a multi-label set", ("e7_features", "e7_finetune", "e7"), ("e7", "e7_finetune"),
               ("arch", "weights", "image_size", "layer", "linear.epochs", "finetune.epochs", "finetune.max_train_images"), _rows_e7),
    Experiment("e8", "E8. ResNet-18 on MNIST, three ways", ("e8",), ("e8",),
               ("arch", "weights", "image_size", "max_train_images", "variants", "train.epochs", "train.lr"), _rows_e8),
    Experiment("e9", "E9. Vision transformer vs CNN", ("e9",), ("e9",),
               ("subsets", "images_per_class", "image_size", "baseline.arch", "baseline.head.epochs", "vit.arch", "vit.train.epochs", "vit.train.lr"), _rows_e9),
)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """Where the stages' outputs are (relative to the working directory, as dvc.yaml has them)."""

    metrics: Path = Path("metrics")
    timings: Path = Path("timings")
    reports: Path = Path("reports")
    plots: Path = Path("plots")
    seeds: Path = Path("seeds/seeds.json")


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None: not a git checkout
    params_modified: bool = False  # params.yaml differs from that commit (an experiment, or an uncommitted change)


def git_state(root: Path) -> GitState:
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return GitState(None)
        status = git("status", "--porcelain", "--", "params.yaml")
    except (OSError, subprocess.TimeoutExpired):
        return GitState(None)
    return GitState(head.stdout.strip(), bool(status.stdout.strip()))


def load_metrics(folder: Path) -> dict[str, dict]:
    """Every metrics/<stage>.json, merged: top-level key (e1, ..., pretrain) -> tree.

    A foreach stage writes one file per item under one top-level key (metrics/pretrain_<arch>.json,
    each {"pretrain": {arch: ...}}): their trees are merged.
    """
    merged: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        for key, tree in io.read_json(path).items():
            if isinstance(tree, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **tree}
            else:
                merged[key] = tree
    return merged


# --------------------------------------------------------------------------- the page model


@dataclass
class Curve:
    title: str  # e.g. "val accuracy"
    series: dict[str, list[tuple[float, float]]]  # model -> (step, value)


@dataclass
class Section:
    experiment: Experiment
    ran: bool
    what_ran: list[tuple[str, str]] = field(default_factory=list)  # (what, value)
    data_note: str | None = None  # the report's own statement of its data and sizes
    rows: list[Row] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    report_path: Path | None = None
    report_markdown: str | None = None
    seconds: float | None = None


@dataclass
class Page:
    profile: str
    seed: int
    git: GitState
    params: dict
    verdicts: list[Verdict]
    sections: list[Section]
    seeds: dict | None  # seeds/seeds.json, when a sweep has been aggregated
    html_dir: Path  # where the page lives: figure links are relative to it

    def link(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.html_dir)).as_posix()


def build_page(params: dict, inputs: Inputs, *, git: GitState, html_dir: Path) -> Page:
    metrics = load_metrics(inputs.metrics)
    profile = params["data"]["profile"]
    sections = [_section(exp, metrics.get(exp.key), params, inputs, profile) for exp in EXPERIMENTS]
    seeds = io.read_json(inputs.seeds) if inputs.seeds.is_file() else None
    return Page(profile, params["seed"], git, params, claims_mod.evaluate(metrics), sections, seeds, html_dir)


def _section(exp: Experiment, tree: dict | None, params: dict, inputs: Inputs, profile: str) -> Section:
    section = Section(exp, ran=tree is not None)
    if tree is None:
        return section
    timings = {p.stem: io.read_json(p) for stage in exp.stages for p in sorted(inputs.timings.glob(f"{stage}.json"))}
    try:
        section.rows = exp.rows(tree, {k: v for t in timings.values() for k, v in t.items()})
    except Missing as missing:  # a metrics file of another shape: say so rather than guess
        section.rows = [Row(f"{exp.key}.{missing.args[0]} is not in metrics/{exp.key}.json", None, "-", None)]
    seconds = [t["stage_seconds"] for t in timings.values() if "stage_seconds" in t]
    section.seconds = sum(seconds) if seconds else None
    cfg = params.get(exp.key, {})
    names = _datasets_of(cfg) or ([tree["dataset"]] if isinstance(tree.get("dataset"), str) else [])
    profile = tree.get("profile", profile) if isinstance(tree.get("profile"), str) else profile
    section.what_ran = [
        ("profile", profile),
        ("data", "; ".join(_describe(name, profile) for name in names) or "-"),
        ("key params", ", ".join(f"{k} = {_show(v)}" for k, v in _key_params(exp, cfg)) or "-"),
        ("precision", ", ".join(sorted(set(_leaves(tree, "precision")))) or NOT_RECORDED),
        ("device", ", ".join(sorted(set(_leaves(tree, "device")))) or NOT_RECORDED),  # what ran (params.yaml's device resolved)
        ("wall time", _wall_time(timings)),
    ]
    if exp.report and (report := inputs.reports / f"{exp.key}.md").is_file():
        section.report_path = report
        section.report_markdown = report.read_text()
        section.data_note = data_note(section.report_markdown)
    for folder in exp.plots:
        section.figures += sorted((inputs.plots / folder / "figures").glob("*.png"))
    curve = _curve([inputs.plots / folder / "live" / "plots" / "metrics" for folder in exp.plots])
    section.curves = [curve] if curve else []
    return section


def _datasets_of(cfg: Any) -> list[str]:
    """Every value under a `dataset` or `datasets` key of a params section, in order, once."""
    found: list[str] = []
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == "dataset" and isinstance(value, str):
                found.append(value)
            elif key == "datasets" and isinstance(value, list):
                found += [v for v in value if isinstance(v, str)]
            else:
                found += _datasets_of(value)
    return list(dict.fromkeys(found))


def _describe(name: str, profile: str) -> str:
    from .datasets import DATASETS  # the one registry of datasets, stand-ins and their counterparts

    info = DATASETS.get(name)
    if info is None or profile not in info.sources:
        return name
    return f"{name}: {info.describe(profile)}"


def _key_params(exp: Experiment, cfg: dict) -> list[tuple[str, Any]]:
    if not exp.key_params:  # a section the page has no list for: its top-level values
        return [(k, v) for k, v in cfg.items() if not isinstance(v, dict)][:10]
    out = []
    for key in exp.key_params:
        try:
            out.append((key, get(cfg, key)))
        except Missing:
            continue
    return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(".".join(str(v) for v in item.values()) if isinstance(item, dict) else _show(item) for item in value) + "]"
    if value is None:
        return "all"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _devices(page: Page) -> str:
    """Every device the metrics record (cpu, cuda), over all sections."""
    found = {d for s in page.sections for d in dict(s.what_ran).get("device", NOT_RECORDED).split(", ") if d != NOT_RECORDED}
    return ", ".join(sorted(found)) or NOT_RECORDED


def _leaves(tree: Any, key: str) -> list[str]:
    if not isinstance(tree, dict):
        return []
    found = [v for k, v in tree.items() if k == key and isinstance(v, str)]
    for value in tree.values():
        found += _leaves(value, key)
    return found


def _wall_time(timings: dict[str, dict]) -> str:
    parts = [(stage, t["stage_seconds"]) for stage, t in timings.items() if "stage_seconds" in t]
    if not parts:
        return "not recorded"
    total = f"{sum(s for _, s in parts):.1f} s"
    return total if len(parts) == 1 else total + " (" + " + ".join(f"{stage} {s:.1f}" for stage, s in parts) + ")"


def data_note(markdown: str) -> str | None:
    """The report's own statement of its data and sizes: its paragraph that starts with "Data:",
    else the first paragraph or section heading that names the profile."""
    blocks = [b.strip() for b in markdown.split("\n\n") if b.strip()]
    for block in blocks:
        if block.startswith("Data:"):
            return " ".join(block.split())
    for block in blocks:
        if "profile" in block and not block.startswith(("|", "```", "# ")):
            return " ".join(block.lstrip("#").split())
    return None


def _curve(folders: list[Path]) -> Curve | None:
    """DVCLive's per-epoch val curves (val accuracy where logged, else val loss), one series per
    model; None when no model has two points (one epoch draws no line)."""
    for measure in ("accuracy", "loss"):
        series: dict[str, list[tuple[float, float]]] = {}
        for folder in folders:
            for tsv in sorted(folder.glob(f"**/val/{measure}.tsv")):
                points = _read_tsv(tsv)
                if len(points) >= 2:
                    series[tsv.parent.parent.relative_to(folder).as_posix()] = points
        if series:
            return Curve(f"val {measure} per epoch", series)
    return None


def _read_tsv(path: Path) -> list[tuple[float, float]]:
    lines = path.read_text().splitlines()[1:]  # header: step<TAB>measure
    points = []
    for line in lines:
        step, value = line.split("\t")[:2]
        points.append((float(step), float(value)))
    return points


# --------------------------------------------------------------------------- HTML

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px;background:#fff}
h1{font-size:28px;margin:0 0 4px}h2{font-size:22px;margin:40px 0 8px;padding-top:8px;border-top:1px solid #d0d7de}
h3{font-size:17px;margin:20px 0 6px}.meta{color:#57606a;margin:0 0 12px}
nav{font-size:14px;margin:8px 0 16px}nav a{margin-right:12px}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
.banner{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px;width:100%}table.measures{width:auto;min-width:60%}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}tbody tr:nth-child(even){background:#fbfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:13px;font-weight:600;white-space:nowrap}
.holds{background:#dafbe1;color:#116329}.does-not-hold{background:#ffebe9;color:#a40e26}.not-run{background:#eaeef2;color:#57606a}
.flips{background:#fff1e5;color:#953800}
.notrun{color:#57606a;font-style:italic}
dl.ran{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0 12px;font-size:14px}
dl.ran dt{color:#57606a}dl.ran dd{margin:0}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px;margin:8px 0}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:6px;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12px;color:#57606a;margin-top:4px;word-break:break-all}
svg.curve{max-width:720px;width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px;background:#fff}
details{margin:8px 0}summary{cursor:pointer;color:#0969da}
.report{border-left:3px solid #d0d7de;padding-left:14px}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}code{font-size:90%}
"""

PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#1b7c83", "#bf3989", "#6e7781")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge {status.replace(" ", "-")}">{_e(status)}</span>'


def _commit_line(page: Page) -> str:
    if page.git.commit is None:
        return "git commit unknown (not built in a git checkout)"
    state = "params.yaml differs from that commit (an experiment or an uncommitted change)" if page.git.params_modified else "params.yaml as committed"
    return f"commit {page.git.commit[:12]}, {state}"


def _seed_column(page: Page, claim_id: str) -> str:
    if next(v for v in page.verdicts if v.claim == claim_id).status == NOT_RUN and not page.seeds:
        return "-"
    if not page.seeds:
        return f"1 seed (seed {page.seed})"
    if page.seeds.get("profile") != page.profile:  # a sweep of other data says nothing about these numbers
        return f"the sweep is of the {page.seeds.get('profile', '?')} profile"
    entry = next((c for c in page.seeds.get("claims", []) if c["id"] == claim_id), None)
    if entry is None or entry["of"] == 0:
        return "not run in the sweep"
    text = f"holds in {entry['holds']} of {entry['of']} seeds"
    return text + (": flips, not a finding" if 0 < entry["holds"] < entry["of"] else "")


def render_html(page: Page) -> str:
    profile = page.profile
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>reprodl: the study on one page</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>reprodl: the study on one page</h1>",
        f'<p class="meta">Built by the <code>report</code> stage from {_e(_commit_line(page))}; profile <b>{_e(profile)}</b>; seed {page.seed}; device {_e(_devices(page))}. '
        "Generated from metrics/, timings/, plots/ and reports/: do not edit.</p>",
    ]
    if profile == "embedded":
        out.append(
            '<p class="banner"><b>Embedded profile.</b> Every number of ours on this page comes from the embedded profile: small, offline '
            "stand-in data and backbones pretrained by the pipeline itself, with short training. The references are the catalogue's "
            "numbers on the full datasets; compare directions, not levels.</p>"
        )
    out.append("<nav>" + " ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in [("claims", "Claims"), ("seeds", "Seeds"), ("overview", "What ran")]
                                   + [(s.experiment.key, s.experiment.title.split(".")[0].split(":")[0]) for s in page.sections]) + "</nav>")
    out += _claims_html(page)
    out += _seeds_html(page)
    out += _overview_html(page)
    for section in page.sections:
        out += _section_html(page, section)
    out.append(f"<details><summary>The params this page was built from ({_e(_commit_line(page))})</summary><pre>{_e(_params_yaml(page.params))}</pre></details>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _claims_html(page: Page) -> list[str]:
    out = ['<h2 id="claims">Claims, checked</h2>',
           f"<p><b>{_e(claims_summary(page))}</b> The course reports' qualitative findings against this run's metrics ({_e(page.profile)} profile). "
           "A claim needs every number it compares; an experiment that has not run leaves its claim <i>not run</i>.</p>",
           f'<table><thead><tr><th>claim</th><th>experiment</th><th>verdict</th><th>our numbers ({_e(page.profile)})</th><th>reference</th><th>seeds</th></tr></thead><tbody>']
    for claim, verdict in zip(claims_mod.CLAIMS, page.verdicts):
        out.append(
            f'<tr data-claim="{claim.id}" data-status="{_e(verdict.status)}"><td>{_e(claim.statement)}</td>'
            f'<td><a href="#{claim.experiment}">{_e(claim.experiment.upper())}</a></td><td>{_badge(verdict.status)}</td>'
            f"<td>{_e(verdict.evidence)}</td><td>{_e(claim.reference)}</td><td>{_e(_seed_column(page, claim.id))}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def claims_summary(page: Page) -> str:
    counts = {status: sum(v.status == status for v in page.verdicts) for status in (claims_mod.HOLDS, claims_mod.FAILS, NOT_RUN)}
    text = f"{counts[claims_mod.HOLDS]} hold, {counts[claims_mod.FAILS]} do not hold, {counts[NOT_RUN]} not run"
    text += f" in this run (seed {page.seed})."
    return text + (f" The seeds column checks each over {len(page.seeds['seeds'])} seeds." if page.seeds else " One seed: no claim here is checked over seeds yet.")


SWEEP_COMMANDS = (
    "dvc exp run --queue -S 'seed=0,1,2'     # one queued experiment per seed (the whole pipeline)\n"
    "REPRODL_WORKERS=1 dvc queue start -j 2  # two at a time; dvc queue status until all succeed\n"
    "reprodl seeds                           # dvc exp show --json -> seeds/seeds.json, reports/seeds.md\n"
    "dvc repro                               # this page, with the sweep"
)


def _seeds_html(page: Page) -> list[str]:
    out = ['<h2 id="seeds">Seeds</h2>']
    seeds = page.seeds
    if not seeds:
        out.append(f"<p><b>No seed sweep yet.</b> Every number and verdict on this page comes from one seed ({page.seed}); a claim that flips "
                   "between seeds is not a finding. To check them over seeds:</p>")
        out.append(f"<pre>{_e(SWEEP_COMMANDS)}</pre>")
        return out
    out.append(f"<p>{_e(seeds_summary(seeds, page.git.commit, page.profile))} Full table: <a href=\"seeds.md\">reports/seeds.md</a>.</p>")
    out.append(f"<table><thead><tr><th>metric</th><th>mean &plusmn; std ({_e(seeds.get('profile', '?'))})</th><th>min</th><th>max</th><th>n</th></tr></thead><tbody>")
    for m in seeds["metrics"]:
        out.append(f'<tr><td>{_e(m["label"])}</td><td class="num">{_e(_mean_std(m))}</td><td class="num">{_e(_fmt(m["min"], m["fmt"]))}</td>'
                   f'<td class="num">{_e(_fmt(m["max"], m["fmt"]))}</td><td class="num">{m["n"]}</td></tr>')
    out.append("</tbody></table>")
    return out


def seeds_summary(seeds: dict, commit: str | None, profile: str | None = None) -> str:
    text = f"Sweep of {len(seeds['seeds'])} seeds ({', '.join(map(str, seeds['seeds']))}), {seeds.get('profile', '?')} profile, " \
           f"baseline commit {str(seeds['baseline'])[:12]}."
    if profile and seeds.get("profile") != profile:
        text += f" This page is of the {profile} profile: the sweep does not check its claims."
    if commit and not str(commit).startswith(str(seeds["baseline"])[:12]):
        text += " The page was built from another commit: the sweep may be out of date."
    return text


def _mean_std(m: dict) -> str:
    return f"{_fmt(m['mean'], m['fmt'])} ± {_fmt(m['std'], m['fmt'].lstrip('+'))}"


def _overview_html(page: Page) -> list[str]:
    out = ['<h2 id="overview">What ran</h2>',
           "<table><thead><tr><th>experiment</th><th>status</th><th>profile</th><th>data</th><th>precision</th><th>wall time</th></tr></thead><tbody>"]
    for s in page.sections:
        ran = dict(s.what_ran)
        status = '<span class="badge holds">ran</span>' if s.ran else _badge(NOT_RUN)
        out.append(f'<tr data-experiment="{s.experiment.key}"><td><a href="#{s.experiment.key}">{_e(s.experiment.title)}</a></td><td>{status}</td>'
                   f'<td>{_e(ran.get("profile", "-"))}</td><td>{_e(ran.get("data", "-"))}</td><td>{_e(ran.get("precision", "-"))}</td>'
                   f'<td class="num">{_e(ran.get("wall time", "-"))}</td></tr>')
    out.append("</tbody></table>")
    return out


def _section_html(page: Page, s: Section) -> list[str]:
    exp = s.experiment
    out = [f'<section id="{exp.key}" data-experiment="{exp.key}">', f"<h2>{_e(exp.title)}</h2>"]
    if not s.ran:
        out.append(f'<p class="notrun">Not run: metrics/{exp.key}.json is absent, so this page shows no number for it.</p></section>')
        return out
    out.append('<dl class="ran">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in s.what_ran) + "</dl>")
    if s.data_note:
        out.append(f'<p class="meta">From reports/{exp.key}.md: {markdown_inline(s.data_note)}</p>')
    out.append(f"<h3>Ours beside the reference</h3><p class=\"meta\">Reference: {_e(references.SOURCES.get(exp.key, 'none'))}.</p>")
    out.append(f'<table class="measures"><thead><tr><th>measure</th><th>ours ({_e(_profile_of(s, page))})</th><th>reference</th></tr></thead><tbody>')
    out += [f'<tr><td>{_e(r.label)}</td><td class="num">{_e(r.ours())}</td><td class="num">{_e(r.ref())}</td></tr>' for r in s.rows]
    out.append("</tbody></table>")
    if s.figures:
        out.append('<h3>Figures</h3><div class="figures">')
        out += [f'<figure><a href="{_e(page.link(f))}"><img src="{_e(page.link(f))}" alt="{_e(f.stem)}"></a><figcaption>{_e(f.relative_to(f.parents[2]).as_posix())}</figcaption></figure>'
                for f in s.figures]
        out.append("</div>")
    for curve in s.curves:
        out.append(f"<h3>Curves: {_e(curve.title)}</h3>{_svg(curve)}")
    if s.report_markdown is not None:
        out.append(f"<details><summary>Its report, reports/{exp.key}.md (tables, every number)</summary><div class=\"report\">{markdown_html(s.report_markdown)}</div></details>")
    out.append("</section>")
    return out


def _profile_of(s: Section, page: Page) -> str:
    return dict(s.what_ran).get("profile", page.profile)


def markdown_html(text: str) -> str:
    """A report's Markdown as HTML: GitHub-style tables, raw HTML escaped, headings moved two
    levels down so they nest under the page's own."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    return md.renderer.render(tokens, md.options, {})


def markdown_inline(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).renderInline(text)


def _svg(curve: Curve, width: int = 720, height: int = 260) -> str:
    left, right, top, bottom = 56, 170, 14, 34
    points = [p for series in curve.series.values() for p in series]
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg class="curve" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(curve.title)}">']
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end" fill="#57606a">{y:.3g}</text>')
    out.append(f'<text x="{left}" y="{height - 8}" font-size="11" fill="#57606a">epoch {x0:g}</text>'
               f'<text x="{width - right}" y="{height - 8}" font-size="11" text-anchor="end" fill="#57606a">epoch {x1:g}</text>')
    for i, (name, series) in enumerate(curve.series.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"><title>{_e(name)}</title></polyline>')
        out.append(f'<rect x="{width - right + 12}" y="{top + i * 16}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{width - right + 27}" y="{top + i * 16 + 9}" font-size="11" fill="#1f2328">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _params_yaml(params: dict) -> str:
    import yaml

    return yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=110)


# --------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """A table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(page: Page) -> str:
    out = [
        "# reprodl: the study on one page",
        "",
        f"Built by the `report` stage from {_commit_line(page)}; profile **{page.profile}**; seed {page.seed}; device {_devices(page)}. "
        "Generated from metrics/, timings/, plots/ and reports/: do not edit. The same page with its curves: [index.html](index.html).",
        "",
    ]
    if page.profile == "embedded":
        out += ["> **Embedded profile.** Every number of ours here comes from the embedded profile: small, offline stand-in data and "
                "backbones pretrained by the pipeline itself, with short training. The references are the catalogue's numbers on the "
                "full datasets; compare directions, not levels.", ""]
    out += ["## Claims, checked", "", f"**{claims_summary(page)}**", "", f"| claim | experiment | verdict | our numbers ({page.profile}) | reference | seeds |", "|---|---|---|---|---|---|"]
    for claim, verdict in zip(claims_mod.CLAIMS, page.verdicts):
        out.append(f"| {_md(claim.statement)} | {claim.experiment.upper()} | **{verdict.status}** | {_md(verdict.evidence)} | {_md(claim.reference)} | {_md(_seed_column(page, claim.id))} |")
    out += ["", "## Seeds", ""]
    if page.seeds:
        out += [seeds_summary(page.seeds, page.git.commit, page.profile) + " Every metric's mean ± std: [seeds.md](seeds.md).", ""]
    else:
        out += [f"**No seed sweep yet.** Every number and verdict here comes from one seed ({page.seed}). To check them over seeds:", "",
                "```bash", SWEEP_COMMANDS, "```", ""]
    out += ["## What ran", "", "| experiment | status | profile | data | precision | wall time |", "|---|---|---|---|---|---|"]
    for s in page.sections:
        ran = dict(s.what_ran)
        out.append(f"| [{_md(s.experiment.title)}](#{_anchor(s.experiment.title)}) | {'ran' if s.ran else NOT_RUN} | {_md(ran.get('profile', '-'))} | "
                   f"{_md(ran.get('data', '-'))} | {_md(ran.get('precision', '-'))} | {_md(ran.get('wall time', '-'))} |")
    for s in page.sections:
        out += ["", f"## {s.experiment.title}", ""]
        if not s.ran:
            out.append(f"*Not run: metrics/{s.experiment.key}.json is absent, so this page shows no number for it.*")
            continue
        out += [f"- {k}: {v}" for k, v in s.what_ran]
        if s.data_note:
            out += ["", f"From reports/{s.experiment.key}.md: {s.data_note}"]
        out += ["", f"Reference: {references.SOURCES.get(s.experiment.key, 'none')}.", "",
                f"| measure | ours ({_profile_of(s, page)}) | reference |", "|---|---|---|"]
        out += [f"| {_md(r.label)} | {_md(r.ours())} | {_md(r.ref())} |" for r in s.rows]
        if s.figures:
            out.append("")
            out += [f"![{f.stem}]({page.link(f)})" for f in s.figures]
        if s.report_path is not None:
            out += ["", f"Its report: [reports/{s.experiment.key}.md]({page.link(s.report_path)})."]
    out += ["", "## Params", "", f"The params this page was built from ({_commit_line(page)}):", "", "```yaml", _params_yaml(page.params).rstrip(), "```"]
    return "\n".join(out) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# --------------------------------------------------------------------------- the stage's entry


def write_report(params: dict, inputs: Inputs, *, git: GitState, html_path: Path, md_path: Path) -> Page:
    page = build_page(params, inputs, git=git, html_dir=html_path.parent)
    io.write_text(html_path, render_html(page))
    io.write_text(md_path, render_markdown(page))
    return page

