"""Checkpoint / resume: a run interrupted after epoch k and started again ends like an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from reprodl import engine, models

SPEC = {"kind": "convnet", "in_channels": 1, "image_size": 16, "channels": [4, 8], "kernel": 3, "hidden": 16, "n_classes": 3, "dropout": 0.25}
# Momentum, a per-step schedule, augmentation and dropout: every piece of state must be restored.
CFG = engine.TrainConfig(
    epochs=4, batch_size=16, lr=0.05, momentum=0.9, schedule="onecycle", augment=engine.Augment(shift=1, rotate=5), seed=3
)


def data(n: int = 96):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.5
    x[torch.arange(n), 0, y * 5, :] += 1.0  # a bright row per class
    return (x, y), (x[:24], y[:24])


class Interrupt(Exception):
    pass


def train(checkpoint=None, fail_after: int | None = None, cfg: engine.TrainConfig = CFG, run_key: str = ""):
    train_set, val_set = data()
    model = models.build_model(SPEC, seed=1)
    seen: list[int] = []

    def on_epoch(epoch, metrics):
        seen.append(epoch)
        if epoch == fail_after:
            raise Interrupt

    history = engine.fit(model, train_set, val_set, cfg, on_epoch=on_epoch, progress=False, checkpoint=checkpoint, run_key=run_key)
    return model, history, seen


def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    reference, ref_history, _ = train()
    with pytest.raises(Interrupt):
        train(ckpt, fail_after=2)
    state = torch.load(ckpt, weights_only=True)  # plain types and tensors only
    assert state["epochs_done"] == 2
    resumed, history, seen = train(ckpt)
    assert seen == [1, 2, 3, 4]  # restored epochs replayed to the logger, then 3 and 4 trained
    assert history.train_loss == ref_history.train_loss and history.val_loss == ref_history.val_loss
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.load(ckpt, weights_only=True)["epochs_done"] == 4


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        train(ckpt, fail_after=1, run_key="data-v1")
    _, history, seen = train(ckpt, run_key="data-v2")
    assert seen == [1, 2, 3, 4] and len(history.train_loss) == 4
    assert "another configuration" in capsys.readouterr().out
    other = engine.TrainConfig(**{**CFG.__dict__, "lr": 0.01})
    _, _, seen = train(ckpt, cfg=other, run_key="data-v2")
    assert seen == [1, 2, 3, 4]


def test_a_finished_checkpoint_restores_the_model(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    trained, _, _ = train(ckpt)
    fresh = models.build_model(SPEC, seed=1)
    assert engine.load_checkpoint_model(ckpt, fresh) == 4
    for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
