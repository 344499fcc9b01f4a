"""The full profile end to end, offline: the README's full-profile command against a local mirror.

A local HTTP server on 127.0.0.1 serves every download of the full profile, generated in the
real formats (tests/full_mirror.py: MNIST and Fashion-MNIST idx.gz, USPS bz2, the VOC2007 tars,
Stanford Dogs' images.tar), and the copy's sources.yaml points at it with the files' md5s.
ImageNet-format weights (torchvision's resnet50/resnet18, timm's MobileNetV2 and ViT-B/16) sit
where torch hub and the Hugging Face cache look before downloading, with the hub offline. Then
the README's `dvc exp run -S data.profile=full ...`, verbatim, plus the catalogue's E9 backbones
and Fashion-MNIST in E5 (params.yaml's comments), runs in a shrunk copy of the repository (the
shrinks of tests/e2e_params.yaml, then tests/e2e_full_params.yaml), side by side with the
embedded runs of tests/test_pipeline.py (conftest.py's `reproductions`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from copies import checked_metrics, run

FULL_DATASETS = ("mnist", "fashion_mnist", "usps", "voc2007", "stanford_dogs")


@pytest.fixture(scope="module")
def full_repo(reproductions) -> Path:
    return reproductions.full


@pytest.mark.slow
def test_every_stage_runs_on_the_downloaded_data(full_repo: Path):
    lock = yaml.safe_load((full_repo / "dvc.lock").read_text())
    listed = run(["dvc", "stage", "list", "--name-only"], full_repo).stdout.split()
    assert listed and set(listed) == set(lock["stages"]), "every stage of dvc.yaml ran and is locked"
    params = yaml.safe_load((full_repo / "params.yaml").read_text())
    assert params["data"]["profile"] == "full" and set(params["data"]["datasets"]) == set(FULL_DATASETS)
    sources = yaml.safe_load((full_repo / "sources.yaml").read_text())
    for name in FULL_DATASETS:
        for spec in sources[name]["files"].values():  # downloaded from the mirror, md5 as served
            path = full_repo / "data/raw" / name / spec["name"]
            assert hashlib.md5(path.read_bytes()).hexdigest() == spec["md5"], path
        meta = json.loads((full_repo / "data/prepared" / name / "meta.json").read_text())
        assert meta["profile"] == "full" and meta["name"] == name and min(meta["sizes"].values()) > 0, meta
    size = params["data"]["image_size"]
    voc = json.loads((full_repo / "data/prepared/voc2007/meta.json").read_text())
    assert len(voc["classes"]) == 20 and voc["image_shape"] == [3, size, size]
    assert voc["sizes"]["test"] == 20, "VOC2007 keeps its official test split (the test tar's 20 images)"
    dogs = json.loads((full_repo / "data/prepared/stanford_dogs/meta.json").read_text())
    assert len(dogs["classes"]) == 6 and dogs["image_shape"] == [3, size, size]


@pytest.mark.slow
def test_every_metric_exists_and_the_imagenet_weights_were_loaded(full_repo: Path):
    metrics = checked_metrics(full_repo)
    assert set(metrics["e5.json"]["e5"]) >= {"mnist", "fashion_mnist"}
    assert {"usps_mlp", "usps_conv"} <= set(metrics["e6.json"]["e6"])
    e9 = metrics["e9.json"]["e9"]
    assert e9["dataset"] == "stanford_dogs" and e9["profile"] == "full"
    # The ImageNet-format file was read: its (seeded, random) weights are not the random init of
    # the "random features" baseline, so the two heads score differently.
    e7 = metrics["e7.json"]["e7"]
    assert e7["linear_pretrained"]["test"] != e7["linear_random"]["test"]


@pytest.mark.slow
def test_the_study_page_says_full_profile_and_checks_no_claim_with_the_embedded_sweep(full_repo: Path):
    page = (full_repo / "reports/index.md").read_text()
    assert "profile **full**" in page and "PASCAL VOC2007" in page and "Stanford Dogs" in page
    if (full_repo / "seeds/seeds.json").exists():  # the repository's sweep is of the embedded profile
        assert "holds in" not in page and "the sweep is of the embedded profile" in page
