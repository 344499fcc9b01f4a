"""params.yaml keeps the shape DVC writes back, so `dvc exp run -S` diffs only what it sets.

`dvc exp run -S key=value` rewrites the whole params file through ruamel (treeverse/dvc#8720):
flow lists become block lists, `null` becomes an empty value, long flow mappings wrap, and
comments after a list are dropped. params.yaml is written in that shape already; these tests
run DVC's own override code (dvc.utils.hydra.apply_overrides, what `-S` calls) on a copy.
"""

from __future__ import annotations

import difflib
import shutil

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from configs import ROOT


def overridden(tmp_path, *overrides: str) -> tuple[list[str], list[str]]:
    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    apply_overrides(copy, list(overrides))
    return (ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()


def changed_lines(before: list[str], after: list[str]) -> list[str]:
    return [line for line in difflib.unified_diff(before, after, lineterm="", n=0) if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_dvc_rewrites_params_yaml_unchanged(tmp_path):
    before, after = overridden(tmp_path, "seed=0")  # a no-op override: DVC still rewrites the file
    assert changed_lines(before, after) == [], "params.yaml is not in the shape DVC writes back: copy DVC's output over it"


@pytest.mark.parametrize(
    "override, old, new",
    [
        ("e7.finetune.lr=0.001", "    lr: 0.0005", "    lr: 0.001"),
        ("e1.convnet.momentum=0.8", "    momentum: 0.9", "    momentum: 0.8"),
        ("data.max_images=500", "  max_images:", "  max_images: 500"),
    ],
)
def test_one_override_changes_exactly_one_line(tmp_path, override, old, new):
    before, after = overridden(tmp_path, override)
    assert changed_lines(before, after) == [f"-{old}", f"+{new}"]


def test_the_rewritten_file_holds_the_same_params(tmp_path):
    before, after = overridden(tmp_path, "seed=0")
    assert yaml.safe_load("\n".join(after)) == yaml.safe_load("\n".join(before))
