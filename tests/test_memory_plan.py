"""The full profile's memory plan (datasets.memory_plan) against what prepare really writes and holds.

The plan is computed from the official image counts; here it is computed from the counts of
generated downloads in the real formats (tests/full_mirror.py, served on 127.0.0.1), and must
give exactly the bytes of the arrays prepare writes, split by split. The images of VOC2007 and
Stanford Dogs are decoded into a memory-mapped file, so prepare's peak RAM stays at the plan's
figure (one split's copy while it is written), lower by the decoded images than decoding into RAM.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fakes
import full_mirror
from copies import ROOT
from reprodl import datasets, formats
from reprodl.cli import memory_plan_markdown

FRACTIONS, FINE = (0.8, 0.1, 0.1), (0.5625, 0.1875, 0.25)
GENERATED = {  # images per official part of full_mirror's downloads
    "mnist": {"train": 400, "test": 100},
    "fashion_mnist": {"train": 400, "test": 100},
    "usps": {"train": 200, "test": 60},
    "voc2007": {"train": 40, "test": 20},
    "stanford_dogs": {"all": 6 * 14},
}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirror")
    with fakes.serve_directory(folder) as base_url:
        yield folder, full_mirror.build_mirror(folder, base_url)


def prepare(name: str, sources: dict, tmp: Path, image_size: int) -> Path:
    datasets.fetch(name, "full", tmp / "raw" / name, sources[name], progress=False)
    out = tmp / "prepared" / name
    datasets.prepare(name, "full", tmp / "raw" / name, out, fractions=FRACTIONS, fine_grained_fractions=FINE, seed=0,
                     image_size=image_size, progress=False)
    return out


@pytest.mark.parametrize("name", list(GENERATED))
def test_the_plan_gives_the_bytes_prepare_writes(name, mirror, tmp_path):
    _, sources = mirror
    out = prepare(name, sources, tmp_path, image_size=40)
    plan = datasets.memory_plan(name, 40, FRACTIONS, fine_grained_fractions=FINE, counts=GENERATED[name])
    for split in datasets.SPLITS:
        loaded = datasets.load_split(out, split)
        arrays = [a for a in (loaded.x, loaded.y, loaded.difficult) if a is not None]
        assert len(loaded) == plan.images[split], split
        assert loaded.x.shape[1:] == plan.shape and loaded.x.dtype == np.uint8
        assert sum(a.nbytes for a in arrays) == plan.split_bytes(split), split


def test_the_plans_official_counts_are_the_real_datasets():
    plans = {n: datasets.memory_plan(n, 224, FRACTIONS, fine_grained_fractions=FINE) for n in GENERATED}
    assert sum(plans["mnist"].images.values()) == 70_000 and plans["mnist"].images["test"] == 10_000
    assert sum(plans["voc2007"].images.values()) == 9_963 and plans["voc2007"].images["test"] == 4_952
    assert sum(plans["stanford_dogs"].images.values()) == 20_580
    # The figures: VOC2007 at 224 px about 1.5 GB, Stanford Dogs about 3.1 GB (uint8).
    assert 1.45e9 < plans["voc2007"].total_bytes < 1.55e9 and 3.05e9 < plans["stanford_dogs"].total_bytes < 3.15e9
    with pytest.raises(datasets.DatasetError, match="not a full-profile dataset"):
        datasets.memory_plan("digit_scenes", 224, FRACTIONS)


def prepare_peak(sources: dict, tmp: Path, image_size: int) -> int:
    """numpy's peak allocations (numpy reports its buffers to tracemalloc) while Stanford Dogs is prepared."""
    raw = tmp / "raw"
    if not raw.exists():
        datasets.fetch("stanford_dogs", "full", raw, sources["stanford_dogs"], progress=False)
    tracemalloc.start()
    try:
        datasets.prepare("stanford_dogs", "full", raw, tmp / "out", fractions=FRACTIONS, fine_grained_fractions=FINE, seed=0,
                         image_size=image_size, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_prepare_decodes_large_images_to_disk_not_into_ram(mirror, tmp_path, monkeypatch):
    """Stanford Dogs at 160 px: 84 images, 6.4 MB of pixels. Decoded into a memory-mapped file, the
    peak is lower by about the decoded images than when they are decoded into RAM."""
    _, sources = mirror
    plan = datasets.memory_plan("stanford_dogs", 160, FRACTIONS, fine_grained_fractions=FINE, counts=GENERATED["stanford_dogs"])
    pixels = sum(plan.images.values()) * int(np.prod(plan.shape))
    on_disk = prepare_peak(sources, tmp_path, 160)
    to_ram = formats._image_array
    monkeypatch.setattr(formats, "_image_array", lambda n, size, scratch, name: to_ram(n, size, None, name))
    in_ram = prepare_peak(sources, tmp_path, 160)
    assert pixels > 6_000_000
    assert on_disk <= in_ram - 0.9 * pixels, f"peak {on_disk / 1e6:.1f} MB on disk, {in_ram / 1e6:.1f} MB in RAM"
    # tracemalloc sees every Python object too (sklearn's import during the split: about 2.4 MB)
    assert on_disk <= plan.prepare_peak_bytes + 4_000_000, f"peak {on_disk / 1e6:.1f} MB, the plan's {plan.prepare_peak_bytes / 1e6:.1f} MB"


def test_the_docs_table_is_the_plan_of_params_yaml():
    table = memory_plan_markdown(str(ROOT / "params.yaml"))
    assert table in (ROOT / "docs" / "full-profile.md").read_text(), "regenerate it: reprodl memory-plan"


def test_memory_plan_command_names_a_misspelt_key_and_exits_2(tmp_path, capsys):
    from reprodl.cli import main

    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("  image_size: 224", "  image_sise: 224", 1))
    assert main(["memory-plan", "-p", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.image_sise is not a known key (did you mean image_size?)" in err
    assert main(["memory-plan", "-p", str(ROOT / "params.yaml")]) == 0
    assert capsys.readouterr().out == memory_plan_markdown(str(ROOT / "params.yaml"))
