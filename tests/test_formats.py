"""The readers of the real dataset formats, on small generated files in those formats."""

from __future__ import annotations

import bz2
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from fakes import (
    DOGS_FAKE_BREEDS,
    VOC_FAKE_ANNOTATIONS,
    VOC_FAKE_SPLITS,
    fake_image_color,
    serve_directory,
    write_dogs_tar,
    write_idx_images,
    write_idx_labels,
    write_usps_bz2,
    write_voc_tar,
)

from reprodl.download import download_file, extract_archive
from reprodl.formats import (
    VOC_CLASSES,
    find_voc_root,
    read_idx,
    read_stanford_dogs,
    read_usps,
    read_voc,
)

JPEG_TOLERANCE = 4  # plain-colour JPEGs decode within a few levels of their colour


def assert_color(image: np.ndarray, color: tuple[int, int, int]) -> None:
    """image is (3, S, S); every pixel must be close to color, channel by channel."""
    diff = np.abs(image.astype(int) - np.array(color).reshape(3, 1, 1))
    assert diff.max() <= JPEG_TOLERANCE, (image.reshape(3, -1).mean(axis=1), color)


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------


def test_read_idx_gzipped_images_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    write_idx_images(tmp_path, "train-images-idx3-ubyte.gz", images)
    write_idx_labels(tmp_path, "train-labels-idx1-ubyte.gz", labels)
    x = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    y = read_idx(tmp_path / "train-labels-idx1-ubyte.gz")
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    assert y.dtype == np.uint8 and y.shape == (7,)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_read_idx_plain_file_and_big_endian_types(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    header = bytes([0, 0, 0x0C, 2]) + np.array([2, 3], dtype=">u4").tobytes()
    (tmp_path / "ints-idx2").write_bytes(header + values.astype(">i4").tobytes())
    array = read_idx(tmp_path / "ints-idx2")
    assert array.dtype == np.dtype(np.int32) and array.dtype.isnative
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x07\x01" + bytes(8), "magic"),  # unknown type code
        (b"\x01\x00\x08\x01" + bytes(8), "magic"),  # first bytes not zero
        (b"", "magic"),
        (bytes([0, 0, 8, 3]) + np.array([2, 28], dtype=">u4").tobytes(), "truncated"),
        (bytes([0, 0, 8, 1]) + np.array([5], dtype=">u4").tobytes() + bytes(4), "holds 4"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(content))
    with pytest.raises(ValueError, match=message):
        read_idx(path)


# --- USPS (LIBSVM, bz2) -----------------------------------------------------------------


def test_read_usps(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (5, 256))
    x[0, :4] = [-1.0, 1.0, 0.0, 0.5]
    y = [1, 10, 3, 7, 5]
    write_usps_bz2(tmp_path, "usps.bz2", x, y)
    images, labels = read_usps(tmp_path / "usps.bz2")
    assert images.dtype == np.uint8 and images.shape == (5, 16, 16)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [0, 9, 2, 6, 4])
    assert list(images[0, 0, :4]) == [0, 255, 128, 191]  # round((v + 1) / 2 * 255)
    expected = np.rint((x + 1) / 2 * 255).reshape(5, 16, 16)
    assert np.abs(images.astype(int) - expected).max() <= 1  # the file keeps 6 significant digits


def test_read_usps_sparse_line_is_row_major_and_one_based(tmp_path):
    (tmp_path / "usps.t.bz2").write_bytes(bz2.compress(b"4 1:1 17:-1 256:-1\n"))
    images, labels = read_usps(tmp_path / "usps.t.bz2")
    assert labels.tolist() == [3]
    assert images[0, 0, 0] == 255 and images[0, 1, 0] == 0 and images[0, 15, 15] == 0
    assert images[0, 0, 1] == 128  # absent features are 0, i.e. mid-grey


@pytest.mark.parametrize(("line", "message"), [(b"11 1:0.5\n", "labels"), (b"2 1:1.5\n", r"\[-1, 1\]")])
def test_read_usps_rejects_values_out_of_range(tmp_path, line, message):
    (tmp_path / "bad.bz2").write_bytes(bz2.compress(line))
    with pytest.raises(ValueError, match=message):
        read_usps(tmp_path / "bad.bz2")


# --- PASCAL VOC 2007 --------------------------------------------------------------------


def test_voc_classes_are_the_official_twenty():
    assert len(VOC_CLASSES) == 20 and len(set(VOC_CLASSES)) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("diningtable") == 10 and VOC_CLASSES.index("person") == 14


@pytest.fixture
def voc_trainval(tmp_path) -> Path:
    write_voc_tar(tmp_path)
    return find_voc_root(extract_archive(tmp_path / "VOCtrainval_06-Nov-2007.tar", tmp_path / "trainval"))


def classes(row: np.ndarray) -> set[str]:
    return {VOC_CLASSES[i] for i in np.flatnonzero(row)}


def test_read_voc_trainval(voc_trainval):
    x, present, difficult, ids = read_voc(voc_trainval, "trainval", 24, progress=False)
    assert ids == VOC_FAKE_SPLITS["trainval"]
    assert x.dtype == np.uint8 and x.shape == (4, 3, 24, 24)
    assert present.dtype == np.uint8 and present.shape == (4, 20)
    assert difficult.dtype == np.uint8 and difficult.shape == (4, 20)
    order = list(VOC_FAKE_ANNOTATIONS)
    for row, image_id in enumerate(ids):
        assert_color(x[row], fake_image_color(order.index(image_id)))
    by_id = dict(zip(ids, zip(present, difficult)))
    # one non-difficult and one difficult chair: a positive
    assert classes(by_id["000005"][0]) == {"chair"} and classes(by_id["000005"][1]) == set()
    assert classes(by_id["000007"][0]) == {"car"} and classes(by_id["000007"][1]) == set()
    # person: one of each; horse: plain
    assert classes(by_id["000009"][0]) == {"horse", "person"} and classes(by_id["000009"][1]) == set()
    # a car present only as a difficult object: present and difficult, to be ignored
    assert classes(by_id["000012"][0]) == {"car"} and classes(by_id["000012"][1]) == {"car"}


def test_read_voc_train_val_and_test_sets(tmp_path, voc_trainval):
    x, _, _, ids = read_voc(voc_trainval, "train", 8, progress=False)
    assert ids == VOC_FAKE_SPLITS["train"] and x.shape == (2, 3, 8, 8)
    _, _, _, ids = read_voc(voc_trainval, "val", 8, progress=False)
    assert ids == VOC_FAKE_SPLITS["val"]

    write_voc_tar(tmp_path, "VOCtest_06-Nov-2007.tar", image_sets=("test",))
    test_root = find_voc_root(extract_archive(tmp_path / "VOCtest_06-Nov-2007.tar", tmp_path / "test"))
    x, present, difficult, ids = read_voc(test_root, "test", 16, progress=False)
    assert ids == ["000016", "000017"] and x.shape == (2, 3, 16, 16)
    # two difficult tvmonitors and nothing else of the class: difficult
    assert classes(present[0]) == {"bicycle", "tvmonitor"} and classes(difficult[0]) == {"tvmonitor"}
    assert classes(present[1]) == {"aeroplane", "person"} and classes(difficult[1]) == set()
    with pytest.raises(FileNotFoundError, match="trainval.txt"):  # the test tar has no trainval list
        read_voc(test_root, "trainval", 16, progress=False)


def test_read_voc_rejects_bad_arguments_and_unknown_classes(voc_trainval):
    with pytest.raises(ValueError, match="image_set"):
        read_voc(voc_trainval, "aeroplane_train", 16, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        read_voc(voc_trainval, "train", 0, progress=False)
    annotation = voc_trainval / "Annotations" / "000005.xml"
    annotation.write_text(annotation.read_text().replace("<name>chair</name>", "<name>unicorn</name>", 1))
    with pytest.raises(ValueError, match="unicorn"):
        read_voc(voc_trainval, "train", 16, progress=False)


def test_find_voc_root_layouts(tmp_path, voc_trainval):
    extracted = voc_trainval.parent.parent
    assert find_voc_root(extracted) == voc_trainval
    assert find_voc_root(voc_trainval) == voc_trainval  # already the root
    nested = tmp_path / "nested"
    shutil.copytree(extracted / "VOCdevkit", nested / "VOC2007_trainval" / "VOCdevkit")
    assert find_voc_root(nested) == nested / "VOC2007_trainval" / "VOCdevkit" / "VOC2007"
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2007"):
        find_voc_root(tmp_path / "trainval" / "VOCdevkit" / "VOC2007" / "Annotations")


# --- Stanford Dogs ----------------------------------------------------------------------


def test_read_stanford_dogs(tmp_path):
    write_dogs_tar(tmp_path)
    images_root = extract_archive(tmp_path / "images.tar", tmp_path / "dogs") / "Images"
    x, y, names = read_stanford_dogs(images_root, 20, progress=False)
    assert names == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]  # sorted by folder (wnid)
    assert x.dtype == np.uint8 and x.shape == (9, 3, 20, 20)
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # Shih-Tzu was written first: its images 0 and 1 are colour, image 2 greyscale.
    shih_tzu = DOGS_FAKE_BREEDS.index("n02086240-Shih-Tzu")
    assert_color(x[6], fake_image_color(3 * shih_tzu + 0))
    assert_color(x[7], fake_image_color(3 * shih_tzu + 1))
    assert (x[8][0] == x[8][1]).all() and (x[8][1] == x[8][2]).all()
    chihuahua = DOGS_FAKE_BREEDS.index("n02085620-Chihuahua")
    assert_color(x[0], fake_image_color(3 * chihuahua))


def test_read_stanford_dogs_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_stanford_dogs(tmp_path / "Images", 8, progress=False)
    (tmp_path / "Images" / "n000-Empty").mkdir(parents=True)
    with pytest.raises(ValueError, match="n000-Empty"):
        read_stanford_dogs(tmp_path / "Images", 8, progress=False)


# --- the full-profile path: download -> extract -> read -----------------------------------


def test_voc_and_dogs_round_trip_through_a_local_mirror(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    archives = {
        "VOCtrainval_06-Nov-2007.tar": write_voc_tar(served),
        "VOCtest_06-Nov-2007.tar": write_voc_tar(served, "VOCtest_06-Nov-2007.tar", ("test",)),
        "images.tar": write_dogs_tar(served),
    }
    raw = tmp_path / "raw"
    with serve_directory(served) as url:
        paths = {name: download_file(name, [url], md5, raw, progress=False) for name, md5 in archives.items()}

    trainval = find_voc_root(extract_archive(paths["VOCtrainval_06-Nov-2007.tar"], raw / "voc_trainval"))
    test = find_voc_root(extract_archive(paths["VOCtest_06-Nov-2007.tar"], raw / "voc_test"))
    x, present, difficult, ids = read_voc(trainval, "trainval", 12, progress=False)
    assert x.shape == (4, 3, 12, 12) and ids == VOC_FAKE_SPLITS["trainval"]
    assert int(present.sum()) == 5 and int(difficult.sum()) == 1
    x, present, difficult, ids = read_voc(test, "test", 12, progress=False)
    assert ids == VOC_FAKE_SPLITS["test"] and int(difficult.sum()) == 1

    dogs = extract_archive(paths["images.tar"], raw / "dogs")
    x, y, names = read_stanford_dogs(dogs / "Images", 12, progress=False)
    assert x.shape == (9, 3, 12, 12) and len(names) == 3 and np.bincount(y).tolist() == [3, 3, 3]
