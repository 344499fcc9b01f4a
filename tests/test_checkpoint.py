"""Checkpoint / resume: a run interrupted after epoch k and started again ends like an uninterrupted one."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from reprodl import engine, io, models

SPEC = {"kind": "convnet", "in_channels": 1, "image_size": 16, "channels": [4, 8], "kernel": 3, "hidden": 16, "n_classes": 3, "dropout": 0.25}
# Momentum, a per-step schedule, augmentation and dropout: every piece of state must be restored.
CFG = engine.TrainConfig(
    epochs=4, batch_size=16, lr=0.05, momentum=0.9, schedule="onecycle", augment=engine.Augment(shift=1, rotate=5), seed=3
)


def data(n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.5
    x[torch.arange(n), 0, y * 5, :] += 1.0  # a bright row per class
    return (x, y), (x[:24], y[:24])


class Interrupt(Exception):
    pass


def train(checkpoint=None, fail_after: int | None = None, cfg: engine.TrainConfig = CFG, run_key: str = "", data_seed: int = 0):
    train_set, val_set = data(seed=data_seed)
    model = models.build_model(SPEC, seed=1)
    seen: list[int] = []

    def on_epoch(epoch, metrics):
        seen.append(epoch)
        if epoch == fail_after:
            raise Interrupt

    history = engine.fit(model, train_set, val_set, cfg, on_epoch=on_epoch, progress=False, checkpoint=checkpoint, run_key=run_key)
    return model, history, seen


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def curves(history: engine.History) -> tuple:
    return history.train_loss, history.train_accuracy, history.val_loss, history.val_accuracy


def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    reference, ref_history, _ = train()
    with pytest.raises(Interrupt):
        train(ckpt, fail_after=2)
    state = torch.load(ckpt, weights_only=True)  # plain types and tensors only
    assert state["epochs_done"] == 2
    resumed, history, seen = train(ckpt)
    assert seen == [1, 2, 3, 4]  # restored epochs replayed to the logger, then 3 and 4 trained
    assert curves(history) == curves(ref_history)
    assert same_weights(reference, resumed)
    assert torch.load(ckpt, weights_only=True)["epochs_done"] == 4


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path, capsys):
    """run_key is the caller's fingerprint of data and initial weights: another key trains from the start."""
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        train(ckpt, fail_after=2, run_key="data-v1")
    fresh, fresh_history, _ = train(run_key="data-v2", data_seed=1)  # no checkpoint: the reference
    capsys.readouterr()
    model, history, seen = train(ckpt, run_key="data-v2", data_seed=1)
    assert f"checkpoint {ckpt} was written for another configuration: training from the start" in capsys.readouterr().out
    assert seen == [1, 2, 3, 4]
    # Resuming v1's epoch-2 state on v2's data would end elsewhere than a fresh v2 run.
    assert curves(history) == curves(fresh_history) and same_weights(model, fresh)
    state = torch.load(ckpt, weights_only=True)
    assert state["run_key"] == "data-v2" and state["epochs_done"] == 4, "the checkpoint is now the new run's"


@pytest.mark.parametrize("change", [{"lr": 0.01}, {"seed": 4}, {"epochs": 5}, {"augment": engine.Augment(shift=2)}])
def test_a_checkpoint_of_other_params_is_not_resumed(tmp_path, capsys, change):
    """A finished checkpoint of CFG: resuming it would skip training (or replay CFG's epochs) under the new params."""
    ckpt = tmp_path / "ckpt.pt"
    finished, _, _ = train(ckpt)
    other = dataclasses.replace(CFG, **change)
    reference, ref_history, _ = train(cfg=other)
    capsys.readouterr()
    model, history, seen = train(ckpt, cfg=other)
    assert "was written for another configuration" in capsys.readouterr().out
    assert seen == list(range(1, other.epochs + 1))
    assert curves(history) == curves(ref_history) and same_weights(model, reference)
    assert not same_weights(model, finished), "the new params trained other weights"
    assert torch.load(ckpt, weights_only=True)["config"] == dataclasses.asdict(other)


def test_a_finished_checkpoint_restores_the_model(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    trained, history, _ = train(ckpt)
    fresh = models.build_model(SPEC, seed=1)
    assert engine.load_checkpoint_model(ckpt, fresh) == 4
    assert same_weights(trained, fresh)
    # Started again with the same params, a finished run trains nothing and ends with the same weights and curves.
    again, again_history, seen = train(ckpt)
    assert seen == [1, 2, 3, 4] and curves(again_history) == curves(history) and same_weights(again, trained)


@pytest.mark.parametrize("content", ["empty", "garbage", "truncated", "other_torch_file"])
def test_a_corrupt_checkpoint_is_a_clear_error_naming_the_file(tmp_path, content):
    ckpt = tmp_path / "ckpt.pt"
    if content == "truncated":
        train(ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    elif content == "other_torch_file":  # loads, but is not fit's training state
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:
        ckpt.write_bytes(b"" if content == "empty" else b"not a checkpoint at all")
    written = ckpt.read_bytes()
    expected = rf"^checkpoint {re.escape(str(ckpt))} cannot be read \(\w+\): it is cut short, corrupt, or not a checkpoint .*; delete it to train from the start$"
    with pytest.raises(RuntimeError, match=expected) as err:
        train(ckpt)
    assert err.value.__cause__ is None and err.value.__suppress_context__, "one clear error, not the unpickler's traceback"
    assert "\n" not in str(err.value)
    with pytest.raises(RuntimeError, match=expected):
        engine.load_checkpoint_model(ckpt, models.build_model(SPEC, seed=1))
    assert ckpt.read_bytes() == written, "the file is left for the user to look at"
    with pytest.raises(FileNotFoundError):
        engine.load_checkpoint_model(tmp_path / "missing.pt", models.build_model(SPEC, seed=1))


def test_a_saved_model_has_the_same_bytes_every_time(tmp_path):
    """torch.save given a path names the archive after the (random) temporary file: DVC would
    then see a new output on every run. io.save_torch writes the same bytes for the same object."""
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    io.save_torch(tmp_path / "a.pt", state)
    io.save_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt")["w"], state["w"])
