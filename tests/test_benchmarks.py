"""The benchmarks: the E1 engine benchmark's two loops train the same model; every benchmark
prints its ratio and the fraction of this machine's limit (smoke runs on tiny sizes); the limit
counts the FLOPs the work really runs (speed itself is the scripts' business)."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from helpers import write_tiny_scenes
from reprodl import datasets, engine, grid, hooks, models
from reprodl.config import load_params

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load(name: str):
    """A benchmark script as a module (benchmarks/ on the path: they import timing, and the E1
    benchmark's worker processes import the script by name)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def load_benchmark():
    return load("e1_engine")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Smoke runs on one thread (a shared 2-core machine: no oversubscription), then the
    default back (numpy_conv1d sets its own and leaves it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPEC = {"kind": "convnet", "channels": [4, 8], "kernel": 5, "hidden": 16, "dropout": 0.25, "in_channels": 1, "image_size": 28, "n_classes": 10}
TRAIN = engine.TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="onecycle",
                           augment=engine.Augment(shift=2, rotate=10, scale=0.1))


def test_both_loops_train_the_same_model_from_the_same_weights(prepared_mnist, monkeypatch):
    bench = load_benchmark()
    monkeypatch.setattr(bench, "WARMUP_BATCHES", 0)  # look at the weights before any step
    split = datasets.load_split(prepared_mnist, "train")  # 240 images
    baseline = bench.BaselineLoop(SPEC, split.x, split.y, TRAIN)
    ours = bench.EngineLoop(SPEC, split.x, split.y, TRAIN)
    start = {n: p.detach().clone() for n, p in ours.model.named_parameters()}
    assert [(n, p.shape) for n, p in baseline.model.named_parameters()] == [(n, p.shape) for n, p in start.items()]
    assert all(torch.equal(p, start[n]) for n, p in baseline.model.named_parameters())
    for loop in (baseline, ours):
        images, seconds = loop.run(3)
        assert images == 3 * TRAIN.batch_size and seconds > 0
        assert any(not torch.equal(p, start[n]) for n, p in loop.model.named_parameters()), "it trained"


def test_the_baseline_jitters_each_image_as_the_engine_is_configured_to():
    bench = load_benchmark()
    images, labels = np.zeros((4, 1, 28, 28), np.uint8), np.arange(4)
    affine = bench.PilMnist(images, labels, TRAIN.augment).transform.transforms[0]
    assert isinstance(affine, transforms.RandomAffine)
    assert affine.degrees == [-10.0, 10.0] and affine.translate == (2 / 28, 2 / 28) and affine.scale == (0.9, 1.1)
    plain = bench.PilMnist(images, labels, engine.Augment()).transform.transforms
    assert not any(isinstance(t, transforms.RandomAffine) for t in plain), "no augmentation: pytorch/examples' transforms"


def test_the_baseline_loader_restarts_when_the_epoch_runs_out(prepared_mnist):
    bench = load_benchmark()
    split = datasets.load_split(prepared_mnist, "train")
    small = replace(TRAIN, batch_size=100, augment=engine.Augment())  # 3 batches an epoch, 5 of them warm-up
    images, _ = bench.BaselineLoop(SPEC, split.x, split.y, small).run(4)
    assert images > 0


# --------------------------------------------------------------------------- the limit's FLOPs


class GemmRecorder(TorchDispatchMode):
    """Every matrix product dispatched (in-place ones too, which FlopCounterMode does not count)."""

    OPS = {"mm": (0, 1), "bmm": (0, 1), "addmm": (1, 2), "addmm_": (1, 2), "baddbmm": (1, 2), "baddbmm_": (1, 2)}

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.OPS:
            a, b = (args[i] for i in self.OPS[name])
            self.flops += 2 * a.numel() * b.shape[-1]
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("widths", [[(10,), (25,), (100,)], [(10, 20), (30, 5)], [(4, 5, 6), (7, 3, 2)]])
def test_the_grid_limit_times_the_stacks_own_matrix_products(widths):
    bench = load("grid_trainer")
    stack = grid.MLPStack([grid.ModelSpec(w, 0.1, 0) for w in widths], 784, 10)
    x, onehot = torch.rand(8, 784), F.one_hot(torch.randint(0, 10, (8,)), 10).float()
    for run, gemms in ((lambda: stack.step(x, onehot), bench.step_gemms(stack, 8)),
                       (lambda: stack.evaluate(torch.rand(2100, 784), torch.randint(0, 10, (2100,))), bench.eval_gemms(stack, 2100))):
        recorder = GemmRecorder()
        with recorder:
            run()
        assert recorder.flops == sum(g.flops for g in gemms)


def test_layer_flops_are_torchs_flop_count_forward_and_training():
    timing = load("timing")
    model = models.build_model(SPEC, seed=0)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))

    def train_step():
        F.cross_entropy(model(x), y).backward()

    def forward():
        with torch.no_grad():
            model(x)

    for run, train in ((train_step, True), (forward, False)):
        counter = FlopCounterMode(display=False)
        with counter:
            run()
        assert timing.layer_flops(model, run, train=train) == counter.get_total_flops()
        assert timing.layer_flops(model, run, train=train, batch=12) == 2 * counter.get_total_flops()


def test_the_layer_limit_runs_the_layers_in_the_asked_dtype():
    timing = load("timing")
    model = models.build_model(SPEC, seed=0).to(memory_format=torch.channels_last)
    work = timing.layer_work(model, lambda: F.cross_entropy(model(torch.rand(1, 1, 28, 28)), torch.zeros(1, dtype=torch.long)).backward(),
                             batch=16, dtype=torch.bfloat16, train=True)
    assert "4 conv/linear layers alone, forward + backward, batch 16 (bfloat16, channels-last" in work.what
    work.step()
    assert work.at(0.5).rate == work.flops / 0.5


@pytest.mark.parametrize("ours, ratio, target, fraction_target, kind, holds", [
    (8.0, 4.0, 3.0, None, "met", True),  # the ratio meets the target
    (8.0, 2.5, 3.0, None, "hardware", False),  # 80% of the limit: what is left is the hardware's
    (4.0, 2.0, 3.0, None, "slack", False),  # 40%: at the limit it would be 5x: our slack
    (4.0, 1.0, 3.0, None, "hardware", False),  # even at the limit only 2.5x
    (7.5, 5.0, 20.0, 0.7, "hardware", True),  # the grid's "or within 30% of the limit"
    (5.0, None, None, None, "slack", None),  # no target
])
def test_the_verdict_says_our_slack_or_the_hardware(capsys, ours, ratio, target, fraction_target, kind, holds):
    timing = load("timing")
    limit = timing.Limit("the same work alone", 10e9, 1.0)
    result = timing.report_limit(ours * 1e9, limit, baseline_rate=2e9, ratio=ratio, target=target, fraction_target=fraction_target)
    out = capsys.readouterr().out
    assert f"fraction of limit: ours {ours:.2f} GFLOP/s of 10.00 GFLOP/s ({ours / 10:.0%}); baseline 2.00 GFLOP/s (20%)" in out
    assert result["verdict"] == kind and result["holds"] is holds and result["fraction"] == ours / 10
    assert "verdict: " in out


# --------------------------------------------------------------------------- every benchmark prints both figures


def both_figures(out: str) -> dict:
    """The ratio line and the fraction line are there; returns the record."""
    assert "speed-up" in out and "fraction of limit: " in out and "native bf16: " in out
    record = json.loads(next(line for line in out.splitlines() if line.startswith("record: ")).removeprefix("record: "))
    assert record["ratio"] > 0 and {"date", "cpu", "bf16_native", "target", "holds"} <= set(record)
    return record


def test_numpy_conv1d_prints_its_ratio_and_fraction(capsys):
    load("numpy_conv1d").main(["--seconds", "0.01"])
    record = both_figures(capsys.readouterr().out)
    assert record["fraction"] > 0 and record["target"] == "none"


def test_grid_trainer_prints_its_ratio_and_fraction(capsys):
    load("grid_trainer").main(["--seconds", "0.01", "--images", "2000"])
    out = capsys.readouterr().out
    record = both_figures(out)
    assert "machine peak" in out and record["fraction"] > 0 and "20x" in record["target"]


def test_feature_extraction_prints_its_ratio_and_fraction(tmp_path, capsys):
    scenes = write_tiny_scenes(tmp_path / "scenes", {"val": 8, "test": 8})
    load("feature_extraction").main(["--prepared", str(scenes), "--weights", "none", "--arch", "resnet18", "--image-size", "32",
                                     "--batch-size", "8", "--precision", "fp32"])
    out = capsys.readouterr().out
    record = both_figures(out)
    assert "the same 21 conv/linear layers alone, forward, batch 8 (float32, channels-last" in out
    assert record["min_cosine"] >= 0.999 and record["holds"] is None and "this is the fp32 case" in out
    assert record["compiled"] is False and "compile: no (e7.feature_compile auto, for the full profile's" in out


@pytest.mark.skipif(hooks.cpp_compiler() is None, reason="torch.compile needs a C++ compiler (g++) for its CPU kernels")
def test_feature_extraction_compiled_gives_the_same_features(tmp_path, capsys):
    scenes = write_tiny_scenes(tmp_path / "scenes", {"val": 8, "test": 12})  # batches of 8, 8 and a short 4 (padded)
    load("feature_extraction").main(["--prepared", str(scenes), "--weights", "none", "--arch", "resnet18", "--image-size", "32",
                                     "--batch-size", "8", "--precision", "fp32", "--compile", "always"])
    out = capsys.readouterr().out
    record = both_figures(out)
    assert record["compiled"] is True and "ours: compiled on its first batch" in out
    assert record["min_cosine"] >= 0.999 and record["map_baseline"] == pytest.approx(record["map_ours"], abs=0.5)


def test_tsne_says_no_flop_limit_applies(prepared_mnist, capsys):
    load("tsne").main(["--prepared", str(prepared_mnist), "--split", "train"])
    record = both_figures(capsys.readouterr().out)
    assert record["fraction"] is None


def test_e1_engine_prints_its_ratio_and_fraction(prepared_mnist, capsys):
    load("e1_engine").main(["--prepared", str(prepared_mnist), "--images", "640", "--batches", "4", "--chunk", "2"])
    out = capsys.readouterr().out
    record = both_figures(out)
    assert "4 conv/linear layers alone, forward + backward, batch 64" in out and record["fraction"] > 0


def test_record_rows_are_the_tables_columns():
    record_py = load("record")
    out = "...\nrecord: " + json.dumps({"benchmark": "grid_trainer", "date": "2026-12-03", "cpu": "AMD EPYC, AVX2", "bf16_native": False,
                                        "threads": 1, "precision": "fp32", "ratio": 22.2, "target": ">= 20x", "fraction": 0.56,
                                        "ours_gflops": 1.72, "limit_gflops": 3.05, "holds": True, "verdict": "met"})
    row = record_py.row(record_py.parse_record(out), "shared machine")
    assert row == ("| 2026-12-03 | AMD EPYC, AVX2 | no | 22.20x | 56% (1.72 of 3.05 GFLOP/s, met) | >= 20x | yes "
                   "| shared machine, fp32, 1 thread(s) |")
    assert row.count("|") == record_py.HEADER.splitlines()[0].count("|")
    compiled = record_py.row({**record_py.parse_record(out), "compiled": True}, "quiet machine")
    assert compiled.endswith("| quiet machine, fp32, compiled, 1 thread(s) |")


# --------------------------------------------------------------------------- full_profile_time: the light stages


def test_light_rows_scale_each_timed_part_by_the_work_and_keep_the_rest():
    bench = load("full_profile_time")
    params = load_params(ROOT / "params.yaml")
    assert {params.e1.dataset, params.e2.dataset, params.e3.dataset, params.e4.dataset} == {"mnist"}
    # Every split 10x larger: every part's work is 10x (E2 / E3 cut their val out of train by a fraction).
    embedded = {"mnist": bench.Sizes("mnist", 4_000, 500, 500, (1, 28, 28))}
    full = {"mnist": bench.Sizes("mnist", 40_000, 5_000, 5_000, (1, 28, 28))}
    timings = {
        "e2": {"stage_seconds": 25.0, "e2": {"seconds": 20.0}},
        "e3": {"stage_seconds": 30.0, "e3": {"seconds": 27.0, "step_seconds": {"two_layers": 6.0, "three_layers": 15.0, "retrain": 6.0}}},
        "e4": {"stage_seconds": 10.0, "e4": {"seconds": 8.0}},
    }
    rows = {r.stage: r for r in bench.light_stage_rows(params, timings, embedded, full)}
    assert set(rows) == {"e2", "e3", "e4"}  # E1 without its models' seconds, E5, E6, pretrain without timings: left out
    for stage, fixed, compute in (("e2", 5.0, 20.0), ("e3", 3.0, 27.0)):
        assert rows[stage].fixed == pytest.approx(fixed)
        assert rows[stage].full_seconds == pytest.approx(fixed + compute * 10)
    # E4 maps the test split only: 500 -> 5,000 points.
    assert rows["e4"].full_seconds == pytest.approx(2.0 + 8.0 * 10)


def test_light_rows_e1_counts_models_and_the_pooled_perceptron():
    bench = load("full_profile_time")
    params = load_params(ROOT / "params.yaml")
    embedded = {"mnist": bench.Sizes("mnist", 4_000, 500, 500, (1, 28, 28))}
    full = {"mnist": bench.Sizes("mnist", 40_000, 5_000, 5_000, (1, 28, 28))}
    seconds = {"logreg": 1.0, "convnet": 4.0, "perceptron": 0.5}
    [row] = bench.light_stage_rows(params, {"e1": {"stage_seconds": 8.0}}, embedded, full, seconds)
    assert row.fixed == pytest.approx(2.5)
    assert row.full_seconds == pytest.approx(2.5 + 5.5 * 10)


def test_a_stage_whose_training_images_are_capped_gets_a_scale_of_1():
    bench = load("full_profile_time")
    params = load_params(ROOT / "params.yaml")
    cap, source = params.pretrain.max_images, params.pretrain.dataset
    assert cap is not None
    # Both train splits above pretrain.max_images, the val splits equal: the same work in both profiles.
    embedded = {source: bench.Sizes(source, cap + 1_000, 500, 500, (3, 32, 32))}
    full = {bench.FULL_NAME[source]: bench.Sizes(bench.FULL_NAME[source], cap + 50_000, 500, 5_000, (3, 224, 224))}
    arch = params.pretrain.archs[0]
    timings = {f"pretrain_{arch}": {"stage_seconds": 12.0, "pretrain": {arch: {"seconds": 9.0}}}}
    [row] = bench.light_stage_rows(params, timings, embedded, full)
    assert [p.scale for p in row.parts] == [1.0]
    assert row.full_seconds == pytest.approx(12.0)


def test_e6_mlp_work_counts_multiply_adds():
    bench = load("full_profile_time")
    assert bench.mlp_macs(64, [64, 32, 16]) == 64 * 64 + 64 * 32 + 32 * 16 + 16 * 10


def test_the_light_table_is_skipped_without_prepared_data(tmp_path, capsys):
    bench = load("full_profile_time")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert bench.print_light_table(tmp_path) == []
    assert "Light stages: skipped, no data/prepared/<name>/meta.json" in capsys.readouterr().out


def test_the_light_table_reads_the_committed_timings(capsys):
    if not (ROOT / "data" / "prepared" / "mnist" / "meta.json").exists():
        pytest.skip("no prepared embedded data (dvc pull or dvc repro prepare)")
    bench = load("full_profile_time")
    rows = bench.print_light_table(ROOT)
    params = load_params(ROOT / "params.yaml")
    assert [r.stage for r in rows] == ["e1", "e2", "e3", "e4", "e5", "e6", *(f"pretrain@{a}" for a in params.pretrain.archs)]
    assert all(r.fixed >= 0 and r.full_seconds >= r.stage_seconds for r in rows)
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(table) == len(rows) + 3  # header, rule, the rows, the total
