"""The stacked trainer (reprodl.grid) against one model at a time, on small synthetic data."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from reprodl import engine, grid, models

N_INPUTS, N_CLASSES = 48, 10


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable data: pixels in [0, 1], some always 0 (as MNIST's borders), labels from a fixed linear map."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, N_INPUTS, generator=g)
    x[:, :6] = 0
    y = (x @ torch.randn(N_INPUTS, N_CLASSES, generator=torch.Generator().manual_seed(99))).argmax(1)
    return x, y


TRAIN, VAL = synthetic(360, 1), synthetic(120, 2)


def one_at_a_time(spec: grid.ModelSpec, batch_size: int, epochs: int, seed: int):
    """The plain loop: nn.Sequential + torch.optim.SGD via reprodl.engine.fit, same init and batch order."""
    model = models.build_model({"kind": "mlp", "n_inputs": N_INPUTS, "hidden": list(spec.widths), "n_classes": N_CLASSES}, seed=spec.init_seed)
    history = engine.fit(model, TRAIN, VAL, engine.TrainConfig(epochs=epochs, batch_size=batch_size, lr=spec.lr, seed=seed), progress=False)
    return model, history


@pytest.mark.parametrize(
    "widths, lrs, batch_size, epochs",
    [
        ([(10,), (25,), (7,)], [0.1, 0.01, 0.3], 8, 3),  # E2's shape: one hidden layer, mixed widths and lrs
        ([(4,), (16,)], [0.05, 0.2], 50, 2),  # a batch size that leaves a short last batch (360 = 7 x 50 + 10)
        ([(12, 5), (6, 9), (3, 3)], [0.1, 0.1, 0.05], 16, 2),  # two layers, padded in both dimensions
        ([(8, 4, 6), (5, 7, 3)], [0.1, 0.2], 32, 2),  # three layers
    ],
)
def test_stack_equals_each_model_trained_alone(widths, lrs, batch_size, epochs):
    specs = [grid.ModelSpec(w, lr, init_seed=i) for i, (w, lr) in enumerate(zip(widths, lrs))]
    result, stack = grid.fit_stack(specs, TRAIN, VAL, batch_size=batch_size, epochs=epochs, seed=3, n_classes=N_CLASSES, progress=False)
    for m, spec in enumerate(specs):
        model, history = one_at_a_time(spec, batch_size, epochs, seed=3)
        alone, stacked = model.state_dict(), stack.model_state(m)
        assert alone.keys() == stacked.keys()
        for name, weight in alone.items():
            torch.testing.assert_close(stacked[name], weight, rtol=0, atol=1e-5, msg=f"model {spec}, {name}")
        assert result.val_accuracy[m].tolist() == pytest.approx(history.val_accuracy, abs=1e-9)  # identical, every epoch
        np.testing.assert_allclose(result.train_loss[m], history.train_loss, rtol=1e-5)
        np.testing.assert_allclose(result.val_loss[m], history.val_loss, rtol=1e-5)
    assert stack.padding_is_zero()


def test_padding_gets_no_gradient_and_stays_zero():
    # Widths far apart: most of the padded (M, 30, 30) layer-2 block and the (M, 10, 30) head is padding.
    specs = [grid.ModelSpec((2, 30), 0.5, 0), grid.ModelSpec((30, 2), 0.5, 1), grid.ModelSpec((9, 9), 0.5, 2)]
    stack = grid.MLPStack(specs, N_INPUTS, N_CLASSES)
    assert stack.padding_is_zero()
    before = [w.clone() for w in (*stack.ws, stack.w_out)]
    x, onehot = TRAIN[0], torch.nn.functional.one_hot(TRAIN[1], N_CLASSES).float()
    for step in range(20):
        rows = slice(step * 16, (step + 1) * 16)
        stack.step(x[rows], onehot[rows])
    assert stack.padding_is_zero()
    moved = [(after != b).any() for b, after in zip(before, (*stack.ws, stack.w_out))]
    assert all(moved), "the real weights did train"


def test_a_diverging_model_does_not_touch_the_others():
    healthy = [grid.ModelSpec((10,), 0.1, 0), grid.ModelSpec((20,), 0.05, 1)]
    blow_up = grid.ModelSpec((15,), float("inf"), 2)  # NaN weights from the first step on
    mixed, _ = grid.fit_stack([healthy[0], blow_up, healthy[1]], TRAIN, VAL, batch_size=8, epochs=3, seed=0, n_classes=N_CLASSES, progress=False)
    alone, _ = grid.fit_stack(healthy, TRAIN, VAL, batch_size=8, epochs=3, seed=0, n_classes=N_CLASSES, progress=False)
    assert mixed.diverged_epoch.tolist() == [0, 1, 0]
    assert np.isnan(mixed.val_accuracy[1]).all() and np.isnan(mixed.train_loss[1]).all()
    np.testing.assert_allclose(mixed.val_loss[[0, 2]], alone.val_loss, rtol=1e-5)
    np.testing.assert_array_equal(mixed.val_accuracy[[0, 2]], alone.val_accuracy)
    assert np.isfinite(alone.val_loss).all()


def test_epoch_counts_nest_and_snapshots_evaluate_extra_sets():
    spec = grid.ModelSpec((12,), 0.1, 0)
    long, _ = grid.fit_stack([spec], TRAIN, VAL, batch_size=16, epochs=4, seed=5, n_classes=N_CLASSES, snapshot_epochs=[2, 4], eval_sets={"test": VAL}, progress=False)
    short, stack = grid.fit_stack([spec], TRAIN, VAL, batch_size=16, epochs=2, seed=5, n_classes=N_CLASSES, progress=False)
    np.testing.assert_array_equal(long.val_accuracy[:, :2], short.val_accuracy)  # a 2-epoch model is the 4-epoch run at epoch 2
    assert set(long.snapshots) == {2, 4}
    assert long.snapshots[2]["test_accuracy"][0] == pytest.approx(short.val_accuracy[0, 1])  # test set = val here


def test_workers_give_the_same_results_as_one_process():
    jobs = [
        dict(specs=[grid.ModelSpec((w,), lr, 0) for w in (5, 9) for lr in (0.1, 0.01)], train=TRAIN, val=VAL, batch_size=b, epochs=2, seed=0, n_classes=N_CLASSES, progress=False)
        for b in (8, 32)
    ]
    serial, parallel = grid.fit_stacks(jobs, workers=1), grid.fit_stacks(jobs, workers=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.val_accuracy, b.val_accuracy)
        np.testing.assert_array_equal(a.train_loss, b.train_loss)


def test_stack_refuses_mixed_depths():
    with pytest.raises(ValueError, match="one depth"):
        grid.MLPStack([grid.ModelSpec((4,), 0.1, 0), grid.ModelSpec((4, 4), 0.1, 0)], N_INPUTS, N_CLASSES)


def test_workers_env_var(monkeypatch):
    monkeypatch.setenv("REPRODL_WORKERS", "3")
    assert grid.default_workers() == 3
    monkeypatch.setenv("REPRODL_WORKERS", "zero")
    with pytest.raises(ValueError, match="REPRODL_WORKERS"):
        grid.default_workers()


def test_the_one_worker_path_runs_on_one_thread_and_restores_the_count_after(monkeypatch):
    """fit_stacks(workers=1) trains in the calling process: the pytest process, the stage. Its one
    thread per stack must not outlive the call (every later test, every later step would run on it)."""
    job = dict(specs=[grid.ModelSpec((5,), 0.1, 0)], train=TRAIN, val=VAL, batch_size=32, epochs=1, seed=0, n_classes=N_CLASSES, progress=False)
    during: list[int] = []
    real = grid.fit_stack

    def recording(**kwargs):
        during.append(torch.get_num_threads())
        if kwargs["seed"] == 13:
            raise RuntimeError("a stack failed")
        return real(**kwargs)

    monkeypatch.setattr(grid, "fit_stack", recording)
    before = torch.get_num_threads()
    threads = 3 if before == 1 else before  # a count that 1 cannot be mistaken for
    torch.set_num_threads(threads)
    try:
        grid.fit_stacks([job, job], workers=1)
        assert during == [1, 1] and torch.get_num_threads() == threads
        with pytest.raises(RuntimeError, match="a stack failed"):
            grid.fit_stacks([{**job, "seed": 13}], workers=1)
        assert torch.get_num_threads() == threads, "restored after a failure too"
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- found by mutation testing
# (docs/mutation.md): each test below failed on at least one mutant of reprodl.grid that the tests
# above let through. All run in well under a second.


def test_the_class_count_defaults_to_the_largest_label_of_train_and_val():
    """Without n_classes, every model gets max label + 1 logits, the val split counted too."""
    spec = grid.ModelSpec((5,), 0.1, 0)
    for train_classes, val_classes in ((8, 9), (9, 8)):  # the largest label (8) only in val, then only in train
        train = (TRAIN[0], torch.arange(len(TRAIN[0])) % train_classes)
        val = (VAL[0], torch.arange(len(VAL[0])) % val_classes)
        _, stack = grid.fit_stack([spec], train, val, batch_size=120, epochs=1, seed=0, progress=False)
        assert stack.model_state(0)["logits.weight"].shape == (9, 5)


def test_an_empty_training_split_is_refused():
    with pytest.raises(ValueError, match="^the training split is empty$"):
        grid.fit_stack([grid.ModelSpec((5,), 0.1, 0)], (TRAIN[0][:0], TRAIN[1][:0]), VAL, batch_size=8, epochs=1, seed=0, n_classes=N_CLASSES, progress=False)


def test_a_stack_of_no_model_or_of_mixed_depths_is_refused_naming_the_widths():
    with pytest.raises(ValueError) as err:
        grid.MLPStack([grid.ModelSpec((4,), 0.1, 0), grid.ModelSpec((4, 4), 0.1, 0)], N_INPUTS, N_CLASSES)
    assert str(err.value) == "a stack needs models of one depth, got hidden widths [(4,), (4, 4)]"
    with pytest.raises(ValueError, match=r"^a stack needs models of one depth, got hidden widths \[\]$"):
        grid.MLPStack([], N_INPUTS, N_CLASSES)


@pytest.mark.parametrize(
    "where",
    [
        lambda s: s.ws[0][0, 2, 0],  # layer 2 of the narrow model (widths 3, 2): its first padded row
        lambda s: s.ws[0][0, 0, 3],  # ... its first padded column (layer-1 width 3)
        lambda s: s.bs[0][0, 2],  # ... its first padded bias
        lambda s: s.w_out[0, 0, 2],  # the head's first padded column
    ],
    ids=["rows", "columns", "bias", "head"],
)
def test_padding_is_zero_notices_a_padded_weight_that_moved(where):
    """The invariant check the padding tests rely on must be able to fail."""
    stack = grid.MLPStack([grid.ModelSpec((3, 2), 0.1, 0), grid.ModelSpec((5, 4), 0.1, 1)], N_INPUTS, N_CLASSES)
    assert stack.padding_is_zero()
    where(stack).fill_(1e-3)
    assert not stack.padding_is_zero()


def test_epoch_results_timings_snapshots_and_callback_of_a_stack_with_a_diverged_model():
    """What the E2 and E3 stages read besides the weights: seconds since the start (growing, within
    the call's own wall time), snapshots with loss and accuracy (NaN for a diverged model), integer
    diverged epochs, and on_epoch called after each epoch with the results so far."""
    seen = []

    def on_epoch(epoch, result):
        seen.append((epoch, result.val_loss[0].copy()))

    specs = [grid.ModelSpec((6,), 0.1, 0), grid.ModelSpec((6,), float("inf"), 1)]
    start = time.perf_counter()
    result, _ = grid.fit_stack(specs, TRAIN, VAL, batch_size=60, epochs=3, seed=0, n_classes=N_CLASSES, snapshot_epochs=[2, 3],
                               eval_sets={"test": VAL}, progress=False, on_epoch=on_epoch)
    elapsed = time.perf_counter() - start
    assert result.specs == specs  # row m is specs[m]
    assert result.device == "cpu"  # where it trained, as engine.device_name names it (recorded in metrics)
    assert 0 < result.seconds[0] < result.seconds[1] < result.seconds[2] <= elapsed
    assert result.diverged_epoch.dtype.kind == "i" and result.diverged_epoch.tolist() == [0, 1]
    for epoch in (2, 3):
        snapshot = result.snapshots[epoch]
        assert set(snapshot) == {"test_loss", "test_accuracy"}
        assert snapshot["test_loss"][0] == pytest.approx(result.val_loss[0, epoch - 1])  # test set = val here
        assert snapshot["test_accuracy"][0] == pytest.approx(result.val_accuracy[0, epoch - 1])
        assert np.isnan(snapshot["test_loss"][1]) and np.isnan(snapshot["test_accuracy"][1])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    for epoch, val_loss in seen:  # filled up to this epoch, not beyond
        assert np.isfinite(val_loss[:epoch]).all() and np.isnan(val_loss[epoch:]).all()
    no_sets, _ = grid.fit_stack(specs[:1], TRAIN, VAL, batch_size=60, epochs=1, seed=0, n_classes=N_CLASSES, snapshot_epochs=[1], progress=False)
    assert no_sets.snapshots == {1: {}}


def test_a_model_is_diverged_from_the_first_epoch_whose_val_loss_is_not_finite_and_stays_so():
    """One step per epoch: an infinite lr leaves the epoch-1 training loss finite (it is taken before
    the step) but not the val loss after it; lr 1e15 blows up in epoch 2. A model silenced in epoch 1
    must stay out of the results when another one diverges later."""
    specs = [grid.ModelSpec((6,), 0.1, 0), grid.ModelSpec((6,), float("inf"), 1), grid.ModelSpec((6,), 1e15, 0)]
    result, _ = grid.fit_stack(specs, TRAIN, VAL, batch_size=len(TRAIN[0]), epochs=3, seed=0, n_classes=N_CLASSES, progress=False)
    assert result.diverged_epoch.tolist() == [0, 1, 2]
    assert np.isfinite(result.val_loss[0]).all()
    assert np.isnan(result.val_loss[1]).all() and np.isnan(result.train_loss[1]).all()
    assert np.isfinite(result.val_loss[2, 0]) and np.isnan(result.val_loss[2, 1:]).all()


def test_fit_stacks_uses_a_spawn_pool_of_one_process_per_job_at_most(monkeypatch):
    """workers > 1 and several jobs: a pool of min(workers, jobs) processes started with 'spawn' (OpenMP
    does not survive a fork), results in job order; else no pool. The pool is faked (the real one:
    test_workers_give_the_same_results_as_one_process, 24 s), and so is fit_stack."""
    import concurrent.futures

    pools = []

    class FakePool:
        def __init__(self, max_workers, mp_context):
            pools.append((max_workers, mp_context.get_start_method()))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, jobs):
            return [fn(job) for job in jobs]

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(grid, "fit_stack", lambda **job: (job["seed"], None))
    jobs = [{"seed": s} for s in (5, 6, 7)]
    assert grid.fit_stacks(jobs, workers=2) == [5, 6, 7] and pools == [(2, "spawn")]
    assert grid.fit_stacks(jobs, workers=8) == [5, 6, 7] and pools[-1] == (3, "spawn")
    assert grid.fit_stacks(jobs[:2], workers=2) == [5, 6] and pools[-1] == (2, "spawn")
    pools.clear()
    assert grid.fit_stacks(jobs) == [5, 6, 7], "one worker unless asked"
    assert grid.fit_stacks(jobs, workers=1) == [5, 6, 7] and grid.fit_stacks(jobs[:1], workers=4) == [5]
    assert pools == []
    # Jobs on a GPU share the one device: they run here, one after another, whatever `workers` says.
    gpu_jobs = [{"seed": 5, "device": "cpu"}, {"seed": 6, "device": "cuda:0"}]
    assert grid.fit_stacks(gpu_jobs, workers=2) == [5, 6] and pools == []
    assert grid.fit_stacks([{"seed": 5, "device": "cpu"}, {"seed": 6}], workers=2) == [5, 6] and pools == [(2, "spawn")]


def test_default_workers_is_one_per_core_unless_reprodl_workers_says(monkeypatch):
    import os

    monkeypatch.delenv("REPRODL_WORKERS", raising=False)
    assert grid.default_workers() == (os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown core count
    assert grid.default_workers() == 1
    monkeypatch.setenv("REPRODL_WORKERS", "1")
    assert grid.default_workers() == 1
    for bad in ("0", "-2", "two", ""):
        monkeypatch.setenv("REPRODL_WORKERS", bad)
        with pytest.raises(ValueError) as err:
            grid.default_workers()
        assert str(err.value) == f"REPRODL_WORKERS must be an integer >= 1, got {bad!r}"


def test_on_a_terminal_the_progress_bar_is_drawn_by_default_and_never_with_progress_false(monkeypatch):
    """The bar (tqdm, on stderr) names the stack and shows the best val accuracy; tqdm draws it only
    on a terminal, so stderr is replaced by one that says it is a terminal."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    spec = grid.ModelSpec((5,), 0.1, 0)
    drawn = {}
    for progress in (None, False):  # None: the default
        monkeypatch.setattr(sys, "stderr", Terminal())
        kwargs = {} if progress is None else {"progress": progress}
        result, _ = grid.fit_stack([spec], TRAIN, VAL, batch_size=120, epochs=2, seed=0, n_classes=N_CLASSES, **kwargs)
        drawn[progress] = sys.stderr.getvalue()
    bar = drawn[None]
    assert bar.startswith("\rstack: ") and "/2 [" in bar and "epoch/s" in bar, bar  # named, counting epochs
    for epoch in (0, 1):  # after each epoch, that epoch's best val accuracy
        assert f"best_val_accuracy={result.val_accuracy[0, epoch]:.4f}" in bar, bar
    assert "nan" not in bar
    assert bar.endswith("\r") and "\n" not in bar, "cleared at the end, not left behind (E2 draws one bar per stack)"
    assert drawn[False] == ""
