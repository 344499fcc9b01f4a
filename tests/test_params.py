"""params.yaml validation: the real file passes; each bad value gets one clear, named error."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprodl.experiments import e1
from reprodl.params import ParamError, check_data, check_seed

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(dotted: str, value) -> dict:
    params = copy.deepcopy(PARAMS)
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    return params


def check_all(params: dict) -> None:
    seed = check_seed(params)
    e1.check_params(params["e1"], check_data(params["data"]), seed)


def test_the_committed_params_are_valid():
    check_all(PARAMS)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("e1.convnet.lr", -0.1, "e1.convnet.lr must be a number > 0, got -0.1"),
        ("e1.logreg.lr", 0, "e1.logreg.lr must be a number > 0, got 0"),
        ("e1.mlp.batch_size", 0, "e1.mlp.batch_size must be an integer >= 1, got 0"),
        ("e1.convnet.epochs", 2.5, "e1.convnet.epochs must be an integer >= 1"),
        ("e1.models", ["logreg", "resnet"], "e1.models[1] must be one of logreg, mlp, mlp_sigmoid, convnet, perceptron; got 'resnet'"),
        ("e1.mlp_sigmoid.lrs", [0.5, -1], "e1.mlp_sigmoid.lrs[1] must be a number > 0"),
        ("e1.convnet.optimizer", "lbfgs", "e1.convnet.optimizer must be one of sgd, adam, adamw, adadelta"),
        ("e1.convnet.schedule", "step", "e1.convnet.schedule must be one of constant, onecycle, cosine"),
        ("e1.convnet.precision", "fp16", "e1.convnet.precision must be one of fp32, bf16, auto; got 'fp16'"),
        ("e1.mlp.activation", "gelu", "e1.mlp.activation must be one of relu, sigmoid, tanh"),
        ("e1.convnet.augment", {"shift": -1}, "e1.convnet.augment.shift must be a number >= 0"),
        ("e1.dataset", "cifar10", "e1.dataset must be one of"),
        ("e1.dataset", "voc2007", "e1.dataset must be a multiclass dataset"),
        ("data.profile", "cloud", "data.profile must be one of embedded, full; got 'cloud'"),
        ("data.datasets", ["mnist", "imagenet"], "data.datasets[1] must be one of mnist, fashion_mnist, usps, voc2007, stanford_dogs"),
        ("data.datasets", ["mnist", "fashion_mnist"], "data.datasets[1] (fashion_mnist): fashion_mnist has no embedded stand-in"),
        ("data.split", {"train": 0.8, "val": 0.1, "test": 0.2}, "data.split fractions must sum to 1, got 0.8 + 0.1 + 0.2 = 1.1"),
        ("data.split", {"train": 0.9, "test": 0.1}, "data.split must map exactly train, val, test"),
        ("data.split", {"train": 0.9, "val": -0.1, "test": 0.2}, "data.split.val must be a number in [0, "),
        ("data.max_images", 0, "data.max_images must be an integer >= 1"),
        ("seed", -3, "seed must be an integer >= 0"),
    ],
)
def test_bad_value_gets_one_clear_error_naming_the_key(key, value, expected):
    with pytest.raises(ParamError) as err:
        check_all(with_value(key, value))
    assert str(err.value).startswith("params.yaml: ")
    assert expected in str(err.value)


def test_e1_dataset_must_be_prepared():
    params = with_value("data.datasets", ["usps"])
    with pytest.raises(ParamError, match="e1.dataset is 'mnist', which is not prepared: add it to data.datasets"):
        check_all(params)


def test_full_profile_needs_well_formed_sources():
    params = with_value("data.profile", "full")
    check_data(params["data"])  # the committed mirrors and md5s are well formed
    bad = copy.deepcopy(params)
    bad["data"]["sources"]["usps"]["files"]["train"]["md5"] = "xyz"
    with pytest.raises(ParamError, match="data.sources.usps.files.train.md5 must be 32 hex digits"):
        check_data(bad["data"])
    bad = copy.deepcopy(params)
    bad["data"]["sources"]["mnist"]["mirrors"] = ["ftp://example.org/"]
    with pytest.raises(ParamError, match=r"data.sources.mnist.mirrors\[0\] must be an http\(s\) URL"):
        check_data(bad["data"])


def test_a_stage_with_bad_params_stops_before_any_work_and_keeps_old_outputs(tmp_path):
    """The stage prints one line naming the key, exits 2, and leaves earlier outputs alone."""
    for rel in ("stages",):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("e1.convnet.lr", -0.1)))
    old_metrics = tmp_path / "metrics" / "e1.json"
    old_metrics.parent.mkdir()
    old_metrics.write_text('{"e1": "earlier run"}')
    result = subprocess.run(
        [sys.executable, "stages/e1.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "REPRODL_PROGRESS": "0"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: params.yaml: e1.convnet.lr must be a number > 0, got -0.1"
    assert "Traceback" not in result.stderr
    assert old_metrics.read_text() == '{"e1": "earlier run"}'
    assert not (tmp_path / "plots").exists() and not (tmp_path / "models").exists()
