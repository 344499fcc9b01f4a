"""A stage that meets a bad dataset or a failed download stops with exit status 2 and a clear
error line (stages/common.run), not a traceback, and writes no outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from fakes import unreachable_url

from configs import FULL_PROFILE, ROOT, raw_params


def stage_folder(tmp_path: Path, sources: dict | None = None) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(FULL_PROFILE)))
    if sources is None:
        shutil.copy(ROOT / "sources.yaml", tmp_path)
    else:
        (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))  # the files in their order
    return tmp_path


def run_stage(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=folder, capture_output=True, text=True,
        env={**os.environ, "REPRODL_PROGRESS": "0"}, timeout=180,
    )


def test_a_dataset_error_exits_2_with_one_line(tmp_path):
    """prepare@mnist in the full profile before its fetch: the raw data's source file is missing."""
    folder = stage_folder(tmp_path)
    result = run_stage(folder, "stages/prepare.py", "mnist")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: data/raw/mnist/") and "run the fetch stage of mnist first" in lines[0], lines[0]
    assert not (folder / "data" / "prepared").exists() and not (folder / "timings").exists(), "no outputs"


def test_a_download_error_exits_2_naming_the_file_and_every_mirror(tmp_path):
    sources = yaml.safe_load((ROOT / "sources.yaml").read_text())
    dead = unreachable_url()
    sources["mnist"]["mirrors"] = [dead]
    folder = stage_folder(tmp_path, sources)
    result = run_stage(folder, "stages/fetch.py", "mnist")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    first = sources["mnist"]["files"]["train_images"]["name"]
    # One error line, then the message's own detail: the mirror tried and why it failed, and the way offline.
    assert lines[0] == f"error: could not download {first!r} to data/raw/mnist; every mirror failed:", lines
    assert any(line.strip().startswith(f"- {dead}/{first}:") for line in lines[1:]), lines
    assert "data.profile=embedded" in result.stderr
    assert not list((folder / "data" / "raw" / "mnist").glob("*")), "no partial file left"
    assert not (folder / "timings").exists(), "no outputs"
