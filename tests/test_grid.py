"""The stacked trainer (reprodl.grid) against one model at a time, on small synthetic data."""

from __future__ import annotations

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
