"""The full profile's heavy stages (E7, E8, E9 at 224 px): time on this machine, extrapolated.

For each stage's network at the full profile's size, this run measures the images per second of
this machine (inference, or a training step: forward, backward and Adam's update) on a small
batch, in fp32 (the training stages' precision; bf16 where native would be faster for E7's
features), and counts the forward FLOPs of one image with torch.utils.flop_counter. Then it
multiplies by the images and passes the stage makes with the full-profile values of params.yaml's
comments (the images per split from reprodl.datasets.memory_plan):

- this CPU: images / measured images per second (measured here, extrapolated by counts);
- one GPU: FLOPs / an assumed sustained rate (ASSUMED_GPU_FLOPS, bf16): an estimate, not a
  measurement; no GPU has been lent to this project.

Training counts 3x the forward FLOPs (forward, backward for inputs and for weights). The weights
are random (no download): the time does not depend on their values.

A second table extrapolates the light stages (E1-E6, pretrain), measuring nothing: their networks
and image sizes are those of the embedded profile (E6's USPS tasks: counted by multiply-adds), only
the data grows. Each timed part of a stage's last embedded run (timings/<stage>.json; E1's models:
plots/e1/tables/results.csv of the same run) is multiplied by full work / embedded work, the work
being 3 x images trained + images scored, per epoch as the stage runs them (data/prepared/*/meta.json
against memory_plan's full split sizes); the rest of stage_seconds (start-up, loading, writing) is
kept as it is. No network, no weights; it needs the prepared embedded data's meta.json files.

    python benchmarks/full_profile_time.py               # about a minute
    python benchmarks/full_profile_time.py --quick       # shorter measurements (make bench)
    python benchmarks/full_profile_time.py --light-only  # the light stages' table alone (no measurement)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from reprodl import backbones, datasets
from reprodl.config import Params, load_params
from reprodl.experiments import e1, e2, e6
from timing import machine_line, seconds_per_call

SIZE = 224  # the full profile's e7 / e8 / e9 image size
# One data-centre GPU (H100/H200 class) in bf16 on these mid-sized convnets: about what ResNet-50
# training at ~3,000 images/s is (3,000 x 24.5 GFLOP), a few percent of the dense bf16 peak
# (989 TFLOP/s). An assumption, not a measurement: data loading and small layers may well cut it.
ASSUMED_GPU_FLOPS = 70e12


@dataclass
class Work:
    stage: str
    what: str
    arch: str
    channels: int
    n_classes: int
    train: bool
    images: int  # images x passes


def full_profile_work(data) -> list[Work]:
    """The heavy work of E7, E8 and E9 with the full-profile values of params.yaml's comments."""
    plan = {n: datasets.memory_plan(n, SIZE, data.split.fractions, fine_grained_fractions=data.fine_grained_split.fractions)
            for n in ("voc2007", "mnist")}
    voc, mnist = plan["voc2007"].images, plan["mnist"].images
    voc_all = sum(voc.values())
    # E9: subsets [13, 28] of 150 images per class, split 84 / 28 / 38 per class (e9's defaults).
    classes, per_class = 13 + 28, {"train": 84, "val": 28, "test": 38}
    vit_epochs, e7_epochs, e8_epochs = 5, 20, 5
    return [
        Work("e7_features", "pretrained + random features, every image", "resnet50", 3, 1000, False, 2 * voc_all),
        Work("e7_finetune", f"{e7_epochs} epochs of the train split", "resnet50", 3, 20, True, e7_epochs * voc["train"]),
        Work("e7_finetune", "val each epoch, then every split scored", "resnet50", 3, 20, False, e7_epochs * voc["val"] + voc_all),
        Work("e8", f"3 variants x {e8_epochs} epochs of the train split", "resnet18", 1, 10, True, 3 * e8_epochs * mnist["train"]),
        Work("e8", "3 variants: val each epoch, then test", "resnet18", 1, 10, False, 3 * (e8_epochs * mnist["val"] + mnist["test"])),
        Work("e9", "MobileNetV2 features of both subsets", "mobilenetv2_100", 3, 13, False, classes * sum(per_class.values())),
        Work("e9", f"ViT-B/16: {vit_epochs} epochs of both subsets' train", "vit_base_patch16_224.augreg_in21k", 3, 28, True,
             vit_epochs * classes * per_class["train"]),
        Work("e9", "ViT-B/16: val each epoch, then test", "vit_base_patch16_224.augreg_in21k", 3, 28, False,
             classes * (vit_epochs * per_class["val"] + per_class["test"])),
    ]


def build(work: Work) -> nn.Module:
    if work.arch in backbones.TIMM_SPECS:
        return backbones.load_timm_backbone(work.arch, "none", work.n_classes, image_size=SIZE)
    model = backbones.build_backbone(work.arch, work.n_classes, seed=0)
    return backbones.grey_stem(model) if work.channels == 1 else model


def images_per_second(model: nn.Module, work: Work, batch: int, seconds: float) -> float:
    x = torch.randn(batch, work.channels, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    if not work.train:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)
    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        y = torch.randint(0, work.n_classes, (batch,))

        def step():
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return batch / seconds_per_call(step, seconds=seconds, warmup=1, min_calls=2)


def forward_flops(model: nn.Module, work: Work) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(torch.randn(1, work.channels, SIZE, SIZE))
    return counter.get_total_flops()


def _hours(seconds: float, minute_digits: int = 0) -> str:
    """A duration in h, min or s; minute_digits: decimals of minutes (the light stages' table shows tenths)."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.{minute_digits}f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --------------------------------------------------------------------------- the light stages, extrapolated

TRAIN_PASSES = 3  # a trained image costs about 3 forward passes (as the GPU estimate above counts it)
# The full profile's dataset where the embedded one is a stand-in (the README's full-profile command:
# e6.usps_*.dataset=usps, pretrain.dataset=stanford_dogs); the others keep their names.
FULL_NAME = {"sklearn_digits": "usps", "colour_digits": "stanford_dogs"}
E5_FULL_ADDS = ("fashion_mnist",)  # params.yaml's e5.datasets comment: add it with data.profile: full
E6_2D_TASKS = ("regression", "blobs", "xor_full_batch", "xor_minibatch")  # drawn from params: the same in both profiles


@dataclass(frozen=True)
class Sizes:
    name: str
    train: int
    val: int
    test: int
    shape: tuple[int, ...]  # one image, (C, H, W)

    def label(self) -> str:
        return f"{self.name} {'x'.join(map(str, self.shape[1:]))} {self.train:,}/{self.val:,}/{self.test:,}"


@dataclass
class Part:
    """One timed part of a stage: its seconds in the embedded run and its work in each profile."""
    what: str
    seconds: float
    embedded: float
    full: float

    @property
    def scale(self) -> float:
        return self.full / self.embedded


@dataclass
class LightRow:
    stage: str
    data: str  # embedded -> full
    stage_seconds: float  # measured, embedded profile
    parts: list[Part]
    note: str = ""  # printed under the table: what the scale leaves out

    @property
    def fixed(self) -> float:
        """Start-up, loading, writing: what the timed parts leave of stage_seconds, kept unscaled."""
        return self.stage_seconds - sum(p.seconds for p in self.parts)

    @property
    def full_seconds(self) -> float:
        return self.fixed + sum(p.seconds * p.scale for p in self.parts)

    def scale_label(self) -> str:
        """Each kind of part with its scale (seconds-weighted where one kind has several parts)."""
        kinds: dict[str, list[Part]] = {}
        for p in self.parts:
            kinds.setdefault(p.what, []).append(p)
        return ", ".join(
            f"{what} x{sum(p.seconds * p.scale for p in ps) / sum(p.seconds for p in ps):.1f}" if sum(p.seconds for p in ps) > 0
            else f"{what} x{ps[0].scale:.1f}"
            for what, ps in kinds.items()
        )


def fit_work(epochs: int, train: int, val: int, test: int = 0) -> float:
    """engine.fit and the grid stacks: each epoch trains on `train` images and scores `val`; `test` scored once."""
    return epochs * (TRAIN_PASSES * train + val) + test


def mlp_macs(n_inputs: int, hidden: list[int], n_classes: int = 10) -> int:
    """Multiply-adds of one image through E6's MLP (the activations are cheap beside them)."""
    widths = [n_inputs, *hidden, n_classes]
    return sum(a * b for a, b in zip(widths, widths[1:]))


def conv_macs(cfg, shape: tuple[int, ...], n_classes: int = 10) -> int:
    """Multiply-adds of one image through E6's Conv1D net (the image a 1-D signal of its pixels)."""
    channels, length = shape[0], math.prod(shape[1:])
    after_conv = (length - cfg.kernel) // cfg.stride + 1
    flat = cfg.channels * e6.conv_output_length(cfg, length)
    return after_conv * cfg.kernel * channels * cfg.channels + flat * cfg.hidden + cfg.hidden * n_classes


def _grid_split(s: Sizes, val_fraction: float) -> tuple[int, int]:
    """E2 / E3: the prepared train split cut into train and val (e2.load_grid_data)."""
    n_val = e2.val_count(s.train, val_fraction, "val_fraction")
    return s.train - n_val, n_val


def _tsne_method(n: int) -> str:
    """What openTSNE's "auto" settings pick for n points (its thresholds: 10,000 for FFT, 1,000 for approximate neighbours)."""
    return f"{'Barnes-Hut' if n < 10_000 else 'FFT'} with {'exact' if n < 1_000 else 'approximate'} neighbours"


def _full(name: str) -> str:
    return FULL_NAME.get(name, name)


def light_stage_rows(params: Params, timings: dict[str, dict], embedded: dict[str, Sizes], full: dict[str, Sizes],
                     e1_model_seconds: dict[str, float] | None = None) -> list[LightRow]:
    """One row per light stage whose timings are given (a stage without them is left out).

    timings: {stage: the contents of timings/<stage>.json}; embedded / full: split sizes per dataset name
    (the prepared meta.json files; memory_plan); e1_model_seconds: {model: seconds} of E1's results table
    from the same run (E1's timings hold only stage_seconds: without it, E1 is left out)."""
    rows = []
    c1 = params.e1
    if "e1" in timings and e1_model_seconds:
        e, f = embedded[c1.dataset], full[_full(c1.dataset)]
        jobs = e1.training_jobs(c1, math.prod(e.shape), 10, e.shape, params.seed)  # for the names and epochs (the specs unused)
        parts = [Part("engine models", e1_model_seconds[name], fit_work(cfg.epochs, e.train, e.val), fit_work(cfg.epochs, f.train, f.val))
                 for name, _, cfg in jobs if name in e1_model_seconds]
        if "perceptron" in e1_model_seconds:  # all splits pooled, then test_fraction held out
            tf = c1.perceptron.test_fraction
            pooled = [datasets.split_counts(s.train + s.val + s.test, (1 - tf, 0.0, tf))[0] for s in (e, f)]
            parts.append(Part("perceptron", e1_model_seconds["perceptron"], c1.perceptron.epochs * pooled[0], c1.perceptron.epochs * pooled[1]))
        rows.append(LightRow("e1", f"{e.label()} -> {f.label()}", timings["e1"]["stage_seconds"], parts,
                             "the models' seconds from plots/e1/tables/results.csv (same run); scoring every split after "
                             "training and the image grid sit in the unscaled rest"))

    for stage in ("e2", "e3"):
        if stage not in timings:
            continue
        cfg, t = getattr(params, stage), timings[stage]
        e, f = embedded[cfg.dataset], full[_full(cfg.dataset)]
        (et, ev), (ft, fv) = _grid_split(e, cfg.val_fraction), _grid_split(f, cfg.val_fraction)
        if stage == "e2":  # one run to the largest epoch count per stack; test scored at each epoch count
            g = cfg.grid
            parts = [Part("grid", t["e2"]["seconds"], fit_work(max(g.epochs), et, ev, len(g.epochs) * e.test),
                          fit_work(max(g.epochs), ft, fv, len(g.epochs) * f.test))]
        else:
            epochs = {"two_layers": cfg.two_layers.epochs, "three_layers": cfg.three_layers.epochs, "retrain": cfg.retrain_epochs}
            tests = {"retrain": (e.test, f.test)}  # the re-trained top models are scored on test
            parts = [Part("grids", seconds, fit_work(epochs[step], et, ev, tests.get(step, (0, 0))[0]),
                          fit_work(epochs[step], ft, fv, tests.get(step, (0, 0))[1]))
                     for step, seconds in t["e3"]["step_seconds"].items()]
        rows.append(LightRow(stage, f"{e.label()} -> {f.label()}", t["stage_seconds"], parts))

    if "e4" in timings:  # maps of the test split; t-SNE taken as linear in the points (see the note under the table)
        e, f = embedded[params.e4.dataset], full[_full(params.e4.dataset)]
        n_log_n = f.test * math.log(f.test) / (e.test * math.log(e.test))
        rows.append(LightRow("e4", f"{e.name} test {e.test:,} -> {f.test:,}", timings["e4"]["stage_seconds"],
                             [Part("maps", timings["e4"]["e4"]["seconds"], e.test, f.test)],
                             f"t-SNE taken as linear in the points: openTSNE runs {_tsne_method(e.test)} on {e.test:,} points, "
                             f"{_tsne_method(f.test)} on {f.test:,} (FFT: about O(n) an iteration; approximate neighbours: "
                             f"O(n log n)); n log n would scale the maps x{n_log_n:.1f} instead"))

    if "e5" in timings:
        c5, t = params.e5, timings["e5"]
        names = [_full(n) for n in c5.datasets]
        names += [n for n in E5_FULL_ADDS if n not in names]
        epochs, points = c5.train.epochs, c5.tsne.points
        train, rest, work = 0.0, 0.0, {"train": [0.0, 0.0], "maps": [0.0, 0.0]}
        for i, group in enumerate((c5.datasets, names)):
            for n in group:
                s = (embedded, full)[i][n]
                work["train"][i] += fit_work(epochs, s.train, s.val)
                work["maps"][i] += min(points, s.train) + min(points, s.test)  # capped by e5.tsne.points
        for n in c5.datasets:
            trained = sum(t["e5"][n]["train_seconds"].values())
            train, rest = train + trained, rest + t["e5"][n]["seconds"] - trained
        counts = list(dict.fromkeys(f"{full[n].train:,}/{full[n].val:,}/{full[n].test:,}" for n in names))
        data = f"{', '.join(embedded[n].label() for n in c5.datasets)} -> {' and '.join(names)}, " + \
               (f"{counts[0]} each" if len(counts) == 1 else ", ".join(counts))
        rows.append(LightRow("e5", data, t["stage_seconds"], [Part("training", train, *work["train"]), Part("maps and the rest", rest, *work["maps"])],
                             f"the maps' points are capped (e5.tsne.points = {points}), so that part grows with the datasets only; "
                             "it also holds forward passes over whole splits and the PCA baselines, which grow with the data: a low side"))

    if "e6" in timings:
        c6, t = params.e6, timings["e6"]["e6"]
        parts = [Part("2-D tasks", sum(t[k]["seconds"] for k in E6_2D_TASKS), 1, 1)]
        labels = []
        for task in ("mnist_mlp", "usps_mlp", "usps_conv"):
            cfg = getattr(c6, task)
            e, f = embedded[cfg.dataset], full[_full(cfg.dataset)]
            cap = getattr(cfg, "max_train_images", None) or math.inf
            macs = (lambda s: conv_macs(cfg, s.shape)) if task == "usps_conv" else (lambda s: mlp_macs(math.prod(s.shape), cfg.hidden))
            parts.append(Part(task, t[task]["seconds"], fit_work(cfg.epochs, min(cap, e.train), e.val, e.test) * macs(e),
                              fit_work(cfg.epochs, min(cap, f.train), f.val, f.test) * macs(f)))
            label = f"{e.label()} -> {f.label()}"
            labels += [label] if label not in labels else []
        rows.append(LightRow("e6", "; ".join(labels), timings["e6"]["stage_seconds"], parts,
                             "the USPS tasks' work also x the multiply-adds of one image (16x16 against 8x8 inputs); where "
                             "NumPy's per-step overhead dominates these small nets, a high side"))

    cp = params.pretrain
    for arch in cp.archs:
        if f"pretrain_{arch}" not in timings:
            continue
        t, cfg = timings[f"pretrain_{arch}"], getattr(cp, arch)
        e, f = embedded[cp.dataset], full[_full(cp.dataset)]
        cap = cp.max_images or math.inf
        trained = [min(cap, s.train) for s in (e, f)]
        # Same 32 px input in both profiles (pretrain.image_size); only the head grows (10 -> 120 classes).
        parts = [Part("training", t["pretrain"][arch]["seconds"], fit_work(cfg.epochs, trained[0], e.val), fit_work(cfg.epochs, trained[1], f.val))]
        data = f"{e.name} train {trained[0]:,} of {e.train:,} (pretrain.max_images), val {e.val:,} -> {f.name} {trained[1]:,} of {f.train:,}, val {f.val:,}"
        rows.append(LightRow(f"pretrain@{arch}", data, t["stage_seconds"], parts,
                             "training capped by pretrain.max_images, the val split scored each epoch grows; loading the 224 px "
                             "Stanford Dogs splits and resizing them to 32 px are not in the embedded time"))
    return rows


def load_light_inputs(root: Path = Path(".")) -> tuple | None:
    """(params, timings, embedded sizes, full sizes, E1's model seconds) from the committed files; None
    (and why) when the prepared embedded data's meta.json files are missing."""
    params = load_params(root / "params.yaml")
    p, c6 = params, params.e6
    names = {p.e1.dataset, p.e2.dataset, p.e3.dataset, p.e4.dataset, *p.e5.datasets, p.pretrain.dataset,
             c6.mnist_mlp.dataset, c6.usps_mlp.dataset, c6.usps_conv.dataset}
    metas = {n: root / "data" / "prepared" / n / "meta.json" for n in sorted(names)}
    missing = [n for n, path in metas.items() if not path.exists()]
    if missing:
        print(f"\nLight stages: skipped, no data/prepared/<name>/meta.json for {', '.join(missing)} (dvc pull, or dvc repro prepare).")
        return None
    embedded = {}
    for n, path in metas.items():
        meta = json.loads(path.read_text())
        if meta["profile"] != "embedded":  # the embedded run's sizes are what the timings measured
            print(f"\nLight stages: skipped, {path} is of the {meta['profile']} profile, not the embedded one the timings measured.")
            return None
        embedded[n] = Sizes(n, *(meta["sizes"][s] for s in datasets.SPLITS), tuple(meta["image_shape"]))
    d = params.data
    full = {}
    for n in sorted({_full(n) for n in names} | set(E5_FULL_ADDS)):
        plan = datasets.memory_plan(n, d.image_size, d.split.fractions, fine_grained_fractions=d.fine_grained_split.fractions,
                                    official_test=d.official_test)
        full[n] = Sizes(n, *(plan.images[s] for s in datasets.SPLITS), tuple(plan.shape))
    timings = {path.stem: json.loads(path.read_text()) for path in sorted((root / "timings").glob("*.json"))}
    table = root / "plots" / "e1" / "tables" / "results.csv"  # committed with timings/e1.json by the same run
    e1_seconds = None
    if table.exists():
        with table.open() as fh:
            e1_seconds = {row["model"]: float(row["seconds"]) for row in csv.DictReader(fh)}
    return params, timings, embedded, full, e1_seconds


def print_light_table(root: Path = Path(".")) -> list[LightRow]:
    inputs = load_light_inputs(root)
    if inputs is None:
        return []
    rows = light_stage_rows(*inputs)
    if "e1" in inputs[1] and not inputs[4]:
        print("\nE1 left out: plots/e1/tables/results.csv (its models' seconds) is missing.")
    print("\nLight stages at full scale on this CPU, extrapolated from timings/<stage>.json (not run): each timed part x "
          "(full work / embedded work), work = 3 x images trained + images scored, per epoch; the rest of the stage kept as measured.\n")
    print("| stage | data, embedded -> full | measured here (embedded) | scale | full profile, this CPU (extrapolated) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.stage} | {r.data} | {r.stage_seconds:.1f} s ({r.stage_seconds - r.fixed:.1f} s timed) | {r.scale_label()} | {_hours(r.full_seconds, 1)} |")
    print(f"| all | | {sum(r.stage_seconds for r in rows):.0f} s | | **{_hours(sum(r.full_seconds for r in rows), 1)}** |")
    notes = dict.fromkeys(f"{r.stage.split('@')[0]}: {r.note}" for r in rows if r.note)
    print("\n" + "\n".join(f"- {n}." for n in notes))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="time each network for 0.3 s instead of 2 s (a smoke check)")
    parser.add_argument("--light-only", action="store_true", help="only the light stages' table (extrapolated, nothing measured)")
    args = parser.parse_args(argv)
    if args.light_only:
        print_light_table()
        return
    data = load_params("params.yaml").data
    print(machine_line(torch.get_num_threads()))
    rows, cpu_total, gpu_total, cache = [], 0.0, 0.0, {}
    for work in full_profile_work(data):
        key = (work.arch, work.channels, work.n_classes, work.train)
        if key not in cache:
            model = build(work)
            cache[key] = (images_per_second(model, work, batch=8 if work.train else 16, seconds=0.3 if args.quick else 2.0), forward_flops(model, work))
        rate, flops = cache[key]
        passes = 3 if work.train else 1
        cpu, gpu = work.images / rate, work.images * passes * flops / ASSUMED_GPU_FLOPS
        cpu_total, gpu_total = cpu_total + cpu, gpu_total + gpu
        rows.append(f"| {work.stage} | {work.what} | {work.arch} | {work.images:,} | {passes * flops / 1e9:.1f} | {rate:.1f} | "
                    f"{_hours(cpu)} | {_hours(gpu)} |")
    print(f"\nFull profile at {SIZE} px, fp32 on this CPU (measured images/s, extrapolated by counts); one GPU: "
          f"FLOPs / {ASSUMED_GPU_FLOPS / 1e12:.0f} TFLOP/s sustained, an estimate, not measured.\n")
    print("| stage | work | network | images x passes | GFLOP per image | this CPU, images/s | this CPU | one GPU (estimate) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"| all | | | | | | **{_hours(cpu_total)}** | **{_hours(gpu_total)}** |")
    print_light_table()


if __name__ == "__main__":
    main()
