"""The typed config: the real files pass; each bad input gets one line naming the dotted key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from configs import DELETE, FULL_PROFILE, PARAMS, ROOT, compose, errors, raw_params

from reprodl import cli, config


def test_the_committed_params_and_sources_are_valid():
    params = config.load_params(ROOT / "params.yaml")
    assert params.e7.finetune.max_train_images == PARAMS["e7"]["finetune"]["max_train_images"]  # nesting mirrors params.yaml
    assert set(config.load_sources(ROOT / "sources.yaml")) == {"mnist", "fashion_mnist", "usps", "voc2007", "stanford_dogs"}


def test_every_params_key_is_a_field_and_every_field_a_key():
    """Key for key: dumping the model gives back params.yaml (defaults aside)."""
    dumped = config.load_params(ROOT / "params.yaml").model_dump(exclude_unset=True)

    def keys(tree, prefix=""):
        if isinstance(tree, dict):
            return {k for key, value in tree.items() for k in keys(value, f"{prefix}{key}.")} | {prefix.rstrip(".")}
        if isinstance(tree, list):
            return {k for i, value in enumerate(tree) for k in keys(value, f"{prefix}{i}.")} | {prefix.rstrip(".")}
        return {prefix.rstrip(".")}

    assert keys(dumped) == keys(PARAMS)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"e1.convnet.momentun": 0.9}, "params.yaml: e1.convnet.momentun is not a known key (did you mean momentum?)"),
        ({"e7.finetune.epohcs": 3}, "params.yaml: e7.finetune.epohcs is not a known key (did you mean epochs?)"),
        ({"e1.convnet.lr": -0.1}, "params.yaml: e1.convnet.lr must be > 0, got -0.1"),
        ({"e1.logreg.lr": 0}, "params.yaml: e1.logreg.lr must be > 0, got 0"),
        ({"e1.mlp.batch_size": 0}, "params.yaml: e1.mlp.batch_size must be >= 1, got 0"),
        ({"e1.convnet.epochs": 2.5}, "params.yaml: e1.convnet.epochs must be an integer, got 2.5"),
        ({"e1.convnet.epochs": "30"}, "params.yaml: e1.convnet.epochs must be an integer, got '30'"),
        ({"e1.models": ["logreg", "resnet"]}, "params.yaml: e1.models[1] must be one of logreg, mlp, mlp_sigmoid, convnet, perceptron; got 'resnet'"),
        ({"e1.mlp_sigmoid.lrs": [0.5, -1]}, "params.yaml: e1.mlp_sigmoid.lrs[1] must be > 0, got -1"),
        ({"e1.convnet.optimizer": "lbfgs"}, "params.yaml: e1.convnet.optimizer must be one of sgd, adam, adamw, adadelta; got 'lbfgs'"),
        ({"e1.convnet.schedule": "step"}, "params.yaml: e1.convnet.schedule must be one of constant, onecycle, cosine; got 'step'"),
        ({"e1.convnet.precision": "fp16"}, "params.yaml: e1.convnet.precision must be one of fp32, bf16, auto; got 'fp16'"),
        ({"e1.convnet.augment.shift": -1}, "params.yaml: e1.convnet.augment.shift must be >= 0, got -1"),
        ({"e1.convnet.augment.shfit": 1}, "params.yaml: e1.convnet.augment.shfit is not a known key (did you mean shift?)"),
        ({"e1.dataset": "cifar10"}, "params.yaml: e1.dataset must be one of mnist, fashion_mnist, usps"),
        ({"e1.dataset": "digit_scenes"}, "params.yaml: e1.dataset must be a multiclass dataset, got 'digit_scenes' (multilabel)"),
        ({"e1.dataset": "sklearn_digits", "data.datasets": ["sklearn_digits", "digit_scenes", "colour_digits"]},
         "params.yaml: e2.dataset is 'mnist', which is not prepared: add it to data.datasets"),
        ({"data.profile": "cloud"}, "params.yaml: data.profile must be one of embedded, full; got 'cloud'"),
        ({"data.datasets": ["mnist", "imagenet"]}, "params.yaml: data.datasets[1] must be one of mnist, fashion_mnist"),
        ({"data.datasets": ["mnist", "fashion_mnist"]}, "params.yaml: data.datasets[1] (fashion_mnist): has no embedded stand-in"),
        ({"data.datasets": ["mnist", "mnist"]}, "params.yaml: data.datasets lists a value twice"),
        ({"data.split.test": 0.2}, "params.yaml: data.split fractions must sum to 1, got 0.8 + 0.1 + 0.2 = 1.1"),
        ({"data.split.val": DELETE}, "params.yaml: data.split.val is missing"),
        ({"data.max_images": 0}, "params.yaml: data.max_images must be >= 1, got 0"),
        ({"data.official_test": 1}, "params.yaml: data.official_test must be true or false, got 1"),
        ({"seed": -3}, "params.yaml: seed must be >= 0, got -3"),
        ({"sed": 1}, "params.yaml: sed is not a known key (did you mean seed?)"),
        ({"e5.tsne.perplexity": 400}, f"params.yaml: e5.tsne.perplexity must be at most points - 1 ({PARAMS['e5']['tsne']['points'] - 1}), got 400"),
        ({"e7.arch": "resnet51"}, "params.yaml: e7.arch must be one of resnet50, resnet18; got 'resnet51'"),
        ({"e7.finetune.optimizer": "sgd"}, "params.yaml: e7.finetune.optimizer must be the linear head's optimiser (adam)"),
        ({"e7.linear.momentum": 0.9}, "params.yaml: e7.linear.momentum applies to optimizer sgd only, not adam: remove the key"),
        ({"pretrain.archs": ["resnet50", "resnet18"], "pretrain.resnet18": DELETE}, "params.yaml: pretrain.resnet18 is missing: pretrain.archs lists resnet18"),
        ({"pretrain.dataset": "mnist"}, "params.yaml: pretrain.dataset must be one of colour_digits, sklearn_digits, stanford_dogs, usps"),
        ({"e4.layers.0.layer": ""}, "params.yaml: e4.layers[0].layer must not be empty"),
        # Every other kind of bad value, each in its own words (mutation testing: docs/mutation.md).
        ({"e1.convnet.momentum": 1.0}, "params.yaml: e1.convnet.momentum must be < 1, got 1.0"),
        ({"data.split.train": 1.5}, "params.yaml: data.split.train must be <= 1, got 1.5"),
        ({"e1.convnet.lr": "0.1"}, "params.yaml: e1.convnet.lr must be a number, got '0.1'"),
        ({"e1.convnet.lr": float("inf")}, "params.yaml: e1.convnet.lr must be a finite number"),
        ({"e1.dataset": 3}, "params.yaml: e1.dataset must be a string, got 3"),
        ({"data.datasets": "mnist"}, "params.yaml: data.datasets must be a list, got 'mnist'"),
        ({"e1.models": []}, "params.yaml: e1.models must list at least 1 item(s), got []"),
        ({"e1.convnet.channels": [8, 16, 32]}, "params.yaml: e1.convnet.channels must list at most 2 item(s), got [8, 16, 32]"),
        ({"e1.convnet": 3}, "params.yaml: e1.convnet must be a mapping of keys, got 3"),
        ({"e4.layers.0.model": "e1/mlp"}, "params.yaml: e4.layers[0].model must be a plain name (letters, digits, _), got 'e1/mlp'"),
        ({"e4.layers.0.modle": "mlp"}, "params.yaml: e4.layers[0].modle is not a known key (did you mean model?)"),
        ({"e1.convnet.augment.zoom": 0.1}, "params.yaml: e1.convnet.augment.zoom is not a known key (known keys: shift, rotate, scale)"),
        ({"e7.weights": " "}, "params.yaml: e7.weights must be 'imagenet', 'none' or the path of a weights file, got ' '"),
    ],
)
def test_bad_input_gets_one_line_naming_the_key(overrides, expected):
    lines = errors(overrides)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]


def test_every_bad_key_is_reported_at_once():
    lines = errors({"e1.convnet.momentun": 0.9, "e7.finetune.epohcs": 3, "seed": -1})
    assert {line.split()[1] for line in lines} == {"e1.convnet.momentun", "e7.finetune.epohcs", "seed"}, lines
    assert len(lines) == 3, lines


def test_momentum_is_accepted_with_sgd_only():
    assert compose({"e1.mlp.momentum": 0.5}).e1.mlp.momentum == 0.5
    assert errors({"e1.mlp.optimizer": "adam"})[0].startswith("params.yaml: e1.mlp.momentum applies to optimizer sgd only")


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("  layer: avgpool", "  layer: [avgpool", 1))
    with pytest.raises(config.ConfigError) as err:
        config.load_params(path)
    assert len(err.value.lines) == 1
    assert err.value.lines[0].startswith("params.yaml: line ") and "not valid YAML" in err.value.lines[0]


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    """PyYAML keeps the last of two equal keys: a section appended twice would run with the second."""
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text + "\ne1:\n  dataset: mnist\n")
    with pytest.raises(config.ConfigError) as err:
        config.load_params(path)
    assert err.value.lines == [f"params.yaml: line {len(text.splitlines()) + 2}: e1 appears twice in one mapping (YAML keeps only the last)"]


def test_bad_sources_are_named(tmp_path):
    raw = yaml.safe_load((ROOT / "sources.yaml").read_text())
    raw["usps"]["files"]["train"]["md5"] = "xyz"
    raw["mnist"]["mirrors"] = ["ftp://example.org/"]
    raw["voc2007"]["mirors"] = raw["voc2007"].pop("mirrors")
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError) as err:
        config.load_sources(path)
    assert set(err.value.lines) == {
        "sources.yaml: mnist.mirrors[0] must be an http(s) URL, got 'ftp://example.org/'",
        "sources.yaml: usps.files.train.md5 must be 32 hex digits, got 'xyz'",
        "sources.yaml: voc2007.mirrors is missing",
        "sources.yaml: voc2007.mirors is not a known key (did you mean mirrors?)",
    }
    with pytest.raises(config.ConfigError, match="sources.yaml: usps is missing"):
        _sources_without(tmp_path, "usps")


def test_a_yaml_merge_key_shares_a_block_and_a_key_given_twice_next_to_it_is_still_refused(tmp_path):
    """`<<: *block` (YAML's merge key, which PyYAML's safe loader reads) was refused with "could not
    determine a constructor for the tag 'tag:yaml.org,2002:merge'": the duplicate-key check built every
    key itself, the merge key too. Keys set next to a merge key override the merged ones, as in YAML."""
    text = (ROOT / "params.yaml").read_text()
    logreg = "  logreg:\n    epochs: 20\n    batch_size: 100\n"
    mlp = "    epochs: 30\n    batch_size: 100\n    lr: 0.1\n"
    assert logreg in text and mlp in text
    shared = text.replace(logreg, logreg.replace("logreg:", "logreg: &plain_sgd"), 1).replace(mlp, "    <<: *plain_sgd\n    epochs: 30\n    lr: 0.1\n", 1)
    path = tmp_path / "params.yaml"
    path.write_text(shared)
    mlp_block = config.load_params(path).e1.mlp
    assert (mlp_block.epochs, mlp_block.batch_size, mlp_block.lr, mlp_block.momentum) == (30, 100, 0.1, 0.9)
    path.write_text(shared.replace("    <<: *plain_sgd\n    epochs: 30\n", "    <<: *plain_sgd\n    epochs: 30\n    epochs: 40\n", 1))
    with pytest.raises(config.ConfigError, match=r"^params\.yaml: line \d+: epochs appears twice in one mapping"):
        config.load_params(path)


def _write_sources(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load((ROOT / "sources.yaml").read_text())
    change(raw)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _source_errors(tmp_path: Path, change, needed=None) -> list[str]:
    with pytest.raises(config.ConfigError) as err:
        config.load_sources(_write_sources(tmp_path, change), needed=needed)
    return err.value.lines


def test_a_misspelt_key_in_a_sources_file_entry_gets_the_entrys_keys(tmp_path):
    """A bug found by mutation testing: under `files:` (a mapping of names to entries) the hint was
    "known keys: " with nothing after it; the file's key (train_images) is now skipped like a list index."""

    def misspell(raw):
        raw["mnist"]["files"]["train_images"]["mdd5"] = raw["mnist"]["files"]["train_images"].pop("md5")

    assert _source_errors(tmp_path, misspell) == [
        "sources.yaml: mnist.files.train_images.md5 is missing",
        "sources.yaml: mnist.files.train_images.mdd5 is not a known key (did you mean md5?)",
    ]
    assert _source_errors(tmp_path, lambda raw: raw["usps"].update(mirorrs=[])) == [
        "sources.yaml: usps.mirorrs is not a known key (did you mean mirrors?)"
    ]


def test_every_bad_sources_entry_is_named_with_the_unknown_and_missing_datasets(tmp_path):
    """An unknown dataset, a missing one and bad entries are all reported in one go."""
    url = "https://example.org/"

    def break_it(raw):
        raw["cifar10"] = {"mirrors": [url], "files": {"train": {"name": "train.tgz", "md5": "0" * 32}}}  # a valid entry
        raw["mnist"]["files"] = {}
        raw["usps"]["files"] = "usps.bz2"
        raw["voc2007"]["files"]["trainval"] = {"name": "VOC/trainval.tar", "md5": "0" * 32}
        raw["stanford_dogs"]["files"]["7"] = {"name": "seven.tar", "md5": "7"}  # a key that looks like an index
        del raw["fashion_mnist"]

    lines = _source_errors(tmp_path, break_it, needed=["fashion_mnist"])
    assert lines[0] == f"sources.yaml: cifar10 is not a known dataset (one of {config_datasets()})", lines
    assert set(lines[1:]) == {
        "sources.yaml: mnist.files must not be empty",
        "sources.yaml: usps.files must be a mapping of keys, got 'usps.bz2'",
        "sources.yaml: voc2007.files.trainval.name must be a file name without a folder, got 'VOC/trainval.tar'",
        "sources.yaml: stanford_dogs.files[7].md5 must be 32 hex digits, got '7'",
    }, lines
    # Only the unknown and the missing dataset: both lines, the unknown one first.
    assert _source_errors(tmp_path, lambda raw: (raw.update(cifar10=raw["usps"]), raw.pop("fashion_mnist")), needed=["fashion_mnist"]) == [
        f"sources.yaml: cifar10 is not a known dataset (one of {config_datasets()})",
        "sources.yaml: fashion_mnist is missing (data.profile full prepares it: give its mirrors and files)",
    ]


def config_datasets() -> str:
    from reprodl.datasets import DATASETS

    return ", ".join(DATASETS)


def test_params_and_sources_are_read_from_the_working_directory_by_default(tmp_path, monkeypatch):
    """Stages and `reprodl check` run from the repository root and name no file."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params({"seed": 7})))
    _write_sources(tmp_path, lambda raw: raw.pop("usps"))
    monkeypatch.chdir(tmp_path)
    assert config.load_params().seed == 7
    assert "usps" not in config.load_sources() and "mnist" in config.load_sources()


def test_errors_name_the_file_they_come_from(tmp_path):
    """A params file of another name (tests/e2e_params.yaml) is named in its lines; the exception's
    text is its lines, one per line (what an uncaught ConfigError prints)."""
    path = tmp_path / "e2e_params.yaml"
    path.write_text(yaml.safe_dump(raw_params({"seed": -1, "sed": 1})))
    with pytest.raises(config.ConfigError) as err:
        config.load_params(path)
    assert sorted(err.value.lines) == [
        "e2e_params.yaml: sed is not a known key (did you mean seed?)",
        "e2e_params.yaml: seed must be >= 0, got -1",
    ]
    assert str(err.value).splitlines() == err.value.lines


def test_a_missing_params_file_says_where_to_run_from(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load_params(tmp_path / "params.yaml")
    assert err.value.lines == [f"{tmp_path / 'params.yaml'}: not found; run from the repository root (dvc repro does)"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"seed: 0\ne1: value: other\n", "params.yaml: line 2, column 10: not valid YAML (mapping values are not allowed here)"),
        (b"seed: 0\n  data: 1\n", "params.yaml: line 2, column 7: not valid YAML (mapping values are not allowed here)"),
        # PyYAML's message opens with its context ("while parsing a flow sequence"): the problem is what counts.
        (b"seed: 0\ne1: [a, b\ne2: 1\n", "params.yaml: line 3, column 3: not valid YAML (expected ',' or ']', but got ':')"),
        # Characters YAML refuses: no line and column from PyYAML, the reason only. The second, a
        # Latin-1 byte in a UTF-8 file, used to escape as a UnicodeDecodeError traceback (fixed).
        (b"seed: 0\ne1: \x07\n", "params.yaml: not valid YAML (unacceptable character #x0007: special characters are not allowed)"),
        (b"seed: 0 # caf\xe9\n", "params.yaml: not valid YAML (unacceptable character #x00e9: invalid continuation byte)"),
        (b"- e1\n- e2\n", "params.yaml: must be a mapping of sections, got list"),
    ],
)
def test_a_file_that_is_not_yaml_or_not_a_mapping_is_one_exact_line(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(text)
    with pytest.raises(config.ConfigError) as err:
        config.load_params(path)
    assert err.value.lines == [expected]


def test_validate_names_the_top_level_and_falls_back_to_pydantics_own_words():
    """validate() takes any model: a value that is not a mapping is blamed on "(top level)", and an
    error kind without wording of its own keeps pydantic's message, lower-cased, with the value."""
    from pydantic import BaseModel, Field

    class Tag(BaseModel):
        name: str = Field(max_length=3)

    with pytest.raises(config.ConfigError) as err:
        config.validate(["seed"])
    assert err.value.lines == ["params.yaml: (top level) must be a mapping of keys, got ['seed']"]
    with pytest.raises(config.ConfigError) as err:
        config.validate({"name": "long"}, "tags.yaml", Tag)
    assert err.value.lines == ["tags.yaml: name string should have at most 3 characters, got 'long'"]


def test_param_error_names_the_file_and_the_key():
    """The error experiments raise for checks that need files (a missing weights file...)."""
    err = config.ParamError("e7.weights", "names the weights file w.pt, which does not exist")
    assert str(err) == "params.yaml: e7.weights names the weights file w.pt, which does not exist"
    assert err.key == "e7.weights"
    assert str(config.ParamError("mnist", "is missing", file="sources.yaml")) == "sources.yaml: mnist is missing"


def test_a_section_built_in_python_reports_its_validators_message():
    """Sections are also built directly (tests, experiments): pydantic's own error then carries the
    validator's words, not an empty message."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="applies to optimizer sgd only, not adam: remove the key"):
        config.Train(epochs=1, batch_size=1, lr=0.1, optimizer="adam", momentum=0.9)


def _sources_without(tmp_path: Path, name: str):
    raw = yaml.safe_load((ROOT / "sources.yaml").read_text())
    del raw[name]
    (tmp_path / "fewer").mkdir()
    path = tmp_path / "fewer" / "sources.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load_sources(path, needed=[name])


def test_reprodl_check_validates_everything_fast_without_torch(tmp_path):
    """`reprodl check`: exit 0 on the committed files; one line per bad key and exit 2 otherwise; under 2 s."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    good = subprocess.run([sys.executable, "-m", "reprodl", "check"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - start
    assert good.returncode == 0, good.stderr
    assert elapsed < 2.0 * (3 if os.environ.get("CI_SLOW") else 1), f"reprodl check took {elapsed:.2f} s"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params({"e1.convnet.momentun": 0.9, "e8.train.lr": 0})))
    shutil.copy(ROOT / "sources.yaml", tmp_path)
    bad = subprocess.run([sys.executable, "-m", "reprodl", "check"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "params.yaml: e1.convnet.momentun is not a known key (did you mean momentum?)",
        "params.yaml: e8.train.lr must be > 0, got 0",
    ]
    probe = subprocess.run([sys.executable, "-c", "import sys, reprodl.cli; print('torch' in sys.modules)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.stdout.strip() == "False", "the check must not pay torch's import"


def test_full_profile_check_needs_every_prepared_dataset_in_sources(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(FULL_PROFILE)))
    raw = yaml.safe_load((ROOT / "sources.yaml").read_text())
    del raw["usps"]
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(raw))
    assert cli.check(str(tmp_path / "params.yaml"), str(tmp_path / "sources.yaml")) == [
        "sources.yaml: usps is missing (data.profile full prepares it: give its mirrors and files)"
    ]


def test_a_stage_with_bad_params_stops_before_any_work_and_keeps_old_outputs(tmp_path):
    """The stage prints one line naming the key, exits 2, and leaves earlier outputs alone."""
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params({"e1.convnet.lr": -0.1})))
    old_metrics = tmp_path / "metrics" / "e1.json"
    old_metrics.parent.mkdir()
    old_metrics.write_text('{"e1": "earlier run"}')
    result = subprocess.run(
        [sys.executable, "stages/e1.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "REPRODL_PROGRESS": "0"}, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["params.yaml: e1.convnet.lr must be > 0, got -0.1"]
    assert old_metrics.read_text() == '{"e1": "earlier run"}'
    assert not (tmp_path / "plots").exists() and not (tmp_path / "models").exists()


def test_known_keys_of_a_path_through_a_plain_value_are_none():
    # The hint for a misspelt key lists the keys of the model at that place; under a plain value
    # (a number, a string, a list of strings) there is no model, so no keys, and no AttributeError.
    from reprodl.config import Params, Sources, _known_keys

    assert _known_keys(Params, ["e1", "grid_images"]) == []
    assert _known_keys(Params, ["e1", "grid_images", "anything"]) == []
    assert _known_keys(Params, ["e1", "models", 0]) == []
    assert _known_keys(Params, ["e1", "nonexistent", "x"]) == []
    assert "epochs" in _known_keys(Params, ["e1", "convnet"])
    assert _known_keys(Sources, ["mnist"]) == ["mirrors", "files"]
