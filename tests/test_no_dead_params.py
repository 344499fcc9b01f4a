"""No dead params: every training param of params.yaml changes what is trained (E6 included).

Two halves, each generic, so a field added later is covered without a new test:
1. every numeric field of every training block of the real config reaches the engine's
   TrainConfig (engine.train_config is the one place a block becomes a TrainConfig);
2. every TrainConfig field a block sets changes the weights the engine ends with.
A param that cannot act (momentum with adam) is refused by the config instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import pytest
import torch

from configs import compose, errors

from reprodl import config, engine, models

# --------------------------------------------------------------------------- 1. config -> engine


def training_blocks(node, prefix: str = ""):
    """(dotted key, block) for every training block (config.TrainBase) in the config tree."""
    if isinstance(node, config.TrainBase):
        yield prefix, node
        return
    if isinstance(node, config.Section):
        for name in type(node).model_fields:
            yield from training_blocks(getattr(node, name), f"{prefix}.{name}" if prefix else name)


TRAINING_FIELDS = set(config.Train.model_fields)  # the rest of a block describes the model (hidden, kernel...)


def numeric_leaves(block: config.Section, prefix: str, fields=TRAINING_FIELDS):
    """(dotted key, value) of every numeric training field of a block, nested augment included."""
    for name in type(block).model_fields:
        if fields is not None and name not in fields:
            continue
        value = getattr(block, name)
        if isinstance(value, config.Section):
            yield from numeric_leaves(value, f"{prefix}.{name}", fields=None)
        elif name == "max_batches" or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            yield f"{prefix}.{name}", value


def perturbed(key: str, value):
    """A different value within the field's bounds."""
    leaf = key.rsplit(".", 1)[-1]
    if value is None:  # max_batches: off -> a cap
        return 1
    if leaf in ("momentum", "scale"):  # bounded below 1
        return 0.5 if value != 0.5 else 0.25
    if isinstance(value, int) and not isinstance(value, bool):
        return value + 1
    return value * 1.5 if value else 0.1


BLOCKS = list(training_blocks(compose()))
# momentum only where the optimiser is sgd: elsewhere the config refuses it (tested below)
LEAVES = [
    (block_key, key, value)
    for block_key, block in BLOCKS
    for key, value in numeric_leaves(block, block_key)
    if not (key.endswith(".momentum") and block.optimizer != "sgd")
]


def test_the_config_has_training_blocks_in_every_training_section():
    sections = {key.split(".")[0] for key, _ in BLOCKS}
    assert {"e1", "e5", "pretrain", "e7", "e8", "e9"} <= sections


@pytest.mark.parametrize("block_key, key, value", LEAVES, ids=[key for _, key, _ in LEAVES])
def test_every_numeric_training_param_reaches_the_engine(block_key, key, value):
    block = dict(BLOCKS)[block_key]
    new = perturbed(key, value)
    changed = dict(training_blocks(compose({key: new})))[block_key]
    lrs = getattr(block, "lrs", None)
    lr = lrs[0] if lrs else None  # mlp_sigmoid trains one model per lr of its list
    before = engine.train_config(block, seed=0, lr=lr)
    after = engine.train_config(changed, seed=0, lr=lr)
    assert before != after, f"{key}: {value} -> {new} does not reach the engine's TrainConfig"


E1_MODEL_FIELDS = [
    (f"e1.{block}.{name}", getattr(getattr(compose().e1, block), name))
    for block in ("mlp", "mlp_sigmoid", "convnet")
    for name in type(getattr(compose().e1, block)).model_fields
    if name not in TRAINING_FIELDS and name != "lrs"
]


@pytest.mark.parametrize("key, value", E1_MODEL_FIELDS, ids=[k for k, _ in E1_MODEL_FIELDS])
def test_every_e1_model_param_reaches_the_model_spec(key, value):
    from reprodl.experiments.e1 import training_jobs

    if isinstance(value, str):
        new = "tanh" if value != "tanh" else "relu"
    elif isinstance(value, list):
        new = [v + 1 for v in value]
    else:
        new = perturbed(key, value)
    specs = [{name: spec for name, spec, _ in training_jobs(compose(o).e1, 784, 10, (1, 28, 28), seed=0)} for o in ({}, {key: new})]
    assert specs[0] != specs[1], f"{key}: {value} -> {new} does not reach the model spec"


def test_momentum_is_refused_where_the_optimiser_has_none():
    adam = next(key for key, block in BLOCKS if block.optimizer == "adam")
    assert errors({f"{adam}.momentum": 0.9}) == [f"params.yaml: {adam}.momentum applies to optimizer sgd only, not adam: remove the key"]


# --------------------------------------------------------------------------- 2. engine -> weights


def blobs(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 12, 12, generator=g) * 0.5
    x[:, :, 4:8, 4:8] += y.float().view(-1, 1, 1, 1) * 0.5
    return x, y


BASE = engine.TrainConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.5, weight_decay=0.01, max_batches=3, precision="fp32")
ENGINE_CHANGES = {
    "epochs": 3,
    "batch_size": 8,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.1,
    "max_batches": 2,
    "seed": 1,
    "optimizer": "adamw",
    "schedule": "onecycle",
    "augment.shift": 1.0,
    "augment.rotate": 10.0,
    "augment.scale": 0.1,
}


def trained_weights(cfg: engine.TrainConfig) -> torch.Tensor:
    spec = {"kind": "convnet", "channels": [2, 4], "kernel": 3, "hidden": 8, "image_size": 12, "n_classes": 2}
    model = models.build_model(spec, seed=0)
    engine.fit(model, blobs(), None, cfg, progress=False)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_engine_changes_cover_every_field_a_block_sets():
    block_fields = {f for f in config.Train.model_fields if f != "augment"} | {f"augment.{f}" for f in config.Augment.model_fields}
    covered = set(ENGINE_CHANGES) | {"precision"}  # precision: tests/test_precision.py
    assert block_fields <= covered, f"no engine test for {sorted(block_fields - covered)}"


@pytest.mark.parametrize("field, value", list(ENGINE_CHANGES.items()))
def test_every_engine_field_changes_the_trained_weights(field, value):
    if field.startswith("augment."):
        changed = dataclasses.replace(BASE, augment=engine.Augment(**{field.split(".")[1]: value}))
    else:
        changed = dataclasses.replace(BASE, **{field: value})
    assert not torch.equal(trained_weights(BASE), trained_weights(changed)), f"{field}={value} left the weights unchanged"


# --------------------------------------------------------------------------- E6 (its own NumPy SGD)


def e6_run(task: str, cfg, tmp_path) -> tuple:
    """(result, logged train losses) of one E6 task, on its seeded generator; image tasks on tiny random digits."""
    from types import SimpleNamespace

    from reprodl.experiments import e6

    curve: list[float] = []
    log = lambda _task, _epoch, measures: curve.append(measures["train_loss"])  # noqa: E731
    rng = np.random.default_rng(0)
    if task == "regression":
        result, _ = e6.regression(cfg, tmp_path / "r.png", rng, log)
    elif task == "blobs":
        result, _ = e6.blobs(cfg, tmp_path / "b.png", rng, log)
    elif task == "xor":
        result, _ = e6.xor(cfg, cfg.batch_size, "xor", tmp_path / "x.png", rng, log)
    else:
        data = np.random.default_rng(1)
        splits = {s: SimpleNamespace(x=data.integers(0, 256, (n, 1, 8, 8)).astype(np.uint8), y=np.arange(n) % 10)
                  for s, n in (("train", 60), ("val", 20), ("test", 20))}
        result, _ = e6.image_task(task, cfg, splits, 10, rng, log)
    return result, curve


E6_SHRINK = {"e6.regression.epochs": 3, "e6.blobs.epochs": 3, "e6.xor.epochs": 3, "e6.mnist_mlp.epochs": 2, "e6.usps_conv.epochs": 2}
E6_FIELDS = [
    (task, name)
    for task in ("regression", "blobs", "xor", "mnist_mlp", "usps_conv")
    for name in type(getattr(compose(E6_SHRINK).e6, task)).model_fields
    if name != "dataset"  # which prepared data: the stage's deps, not a number
]


@pytest.mark.parametrize("task, name", E6_FIELDS, ids=[f"e6.{t}.{n}" for t, n in E6_FIELDS])
def test_every_e6_param_changes_what_its_task_computes(task, name, tmp_path):
    block = getattr(compose(E6_SHRINK).e6, task)
    value = getattr(block, name)
    if name == "activation":
        new = "relu" if value != "relu" else "tanh"
    elif name == "hidden" and isinstance(value, list):
        new = [v + 1 for v in value]
    elif name == "max_train_images":
        new = 30  # of the 60 tiny training images
    elif name in ("batch_size", "points"):
        new = value // 2  # smaller batches: more steps; fewer points: another sample
    else:
        new = perturbed(f"e6.{task}.{name}", value)
    changed = compose({**E6_SHRINK, f"e6.{task}.{name}": new}).e6
    before, after = e6_run(task, block, tmp_path), e6_run(task, getattr(changed, task), tmp_path)
    assert before != after, f"e6.{task}.{name}: {value} -> {new} changed neither the result nor the training curve"
