"""dvc.yaml's source deps are exactly what each stage runs, so `dvc repro` re-runs what changed.

A stage's deps list our Python files by hand; here they are compared with the stage script's
import closure (tests/imports.py). A new import, a removed one or a renamed module fails this
test with the list to paste.
"""

from __future__ import annotations

import re

import pytest
import yaml

from configs import ROOT
from imports import relative_closure

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = {name: stage.get("do", stage) for name, stage in DVC_YAML["stages"].items()}


def script_of(stage: dict) -> str:
    match = re.match(r"python (stages/\w+\.py)\b", stage["cmd"])
    assert match, f"stage command {stage['cmd']!r} does not run a stages/ script"
    return match.group(1)


@pytest.mark.parametrize("name", list(STAGES))
def test_source_deps_are_the_stage_scripts_import_closure(name):
    stage = STAGES[name]
    listed = sorted(dep for dep in stage.get("deps", []) if isinstance(dep, str) and dep.endswith(".py"))
    closure = relative_closure(script_of(stage))
    assert listed == closure, (
        f"dvc.yaml stage {name}: the .py deps differ from what the stage imports.\n"
        f"missing: {sorted(set(closure) - set(listed))}\nnot imported: {sorted(set(listed) - set(closure))}\n"
        "the deps to list:\n" + "\n".join(f"      - {path}" for path in closure)
    )


def test_every_stage_script_is_in_dvc_yaml():
    scripts = {script_of(stage) for stage in STAGES.values()}
    on_disk = {f"stages/{p.name}" for p in (ROOT / "stages").glob("*.py") if p.name != "common.py"}
    assert scripts == on_disk


def test_the_closure_follows_relative_lazy_and_package_imports():
    closure = relative_closure("stages/e1.py")
    assert "stages/common.py" in closure  # imported by name from the stages folder
    assert "src/reprodl/experiments/__init__.py" in closure and "src/reprodl/__init__.py" in closure
    assert "src/reprodl/tables.py" in closure  # `from ..tables import format_table` in experiments/e1.py
    assert "src/reprodl/download.py" in closure  # imported inside a function of datasets.py
    assert "src/reprodl/grid.py" not in closure


def test_every_stage_writes_its_timings_to_a_declared_output():
    for name, stage in STAGES.items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        assert any(o.startswith("timings/") for o in outs), f"{name} writes timings/ but does not declare it"
