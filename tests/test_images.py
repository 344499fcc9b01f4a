"""Images: uint8 splits converted per batch give exactly what the split converted whole gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from reprodl import engine, hooks
from reprodl.engine import Augment, TrainConfig
from reprodl.images import Images, model_input, nbytes, prepare_images, to_unit_float


def pixels(n: int = 12, channels: int = 3, side: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, channels, side, side), dtype=np.uint8))


def whole(images: Images) -> torch.Tensor:
    """The old way: the split converted at once."""
    x = to_unit_float(images.pixels)
    return x if images.size is None else prepare_images(x, images.size, images.mean, images.std)


@pytest.mark.parametrize("channels, side, size", [(3, 20, 32), (3, 20, 20), (3, 40, 24), (1, 28, 32), (3, 20, None)])
def test_rows_converted_alone_equal_the_same_rows_of_the_whole_split(channels, side, size):
    images = Images(pixels(channels=channels, side=side), size, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    expected = whole(images)
    for index in (torch.tensor([7, 0, 3]), slice(2, 9), slice(1, None, 3), 5):
        got = model_input(images[index])
        want = expected[index] if not isinstance(index, int) else expected[index : index + 1]
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.equal(got, want), index
    assert images.shape == tuple(expected.shape) and len(images) == 12


def test_images_cost_their_uint8_bytes_and_refuse_float_pixels():
    images = Images(pixels(n=5, side=16), 224)
    assert nbytes(images) == 5 * 3 * 16 * 16  # not the 5 x 3 x 224 x 224 x 4 of the converted split
    assert nbytes(torch.zeros(5, 3, 16, 16)) == 5 * 3 * 16 * 16 * 4
    with pytest.raises(ValueError, match="uint8"):
        Images(torch.zeros(5, 3, 16, 16), 32)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Images(torch.zeros(5, 16, 16, dtype=torch.uint8), 32)


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


@pytest.mark.parametrize("augment", [False, True])
def test_training_on_images_equals_training_on_the_converted_split(augment):
    train, val = Images(pixels(n=24, side=12), 16), Images(pixels(n=8, side=12, seed=1), 16)
    y_train, y_val = torch.arange(24) % 3, torch.arange(8) % 3
    cfg = TrainConfig(epochs=2, batch_size=5, lr=0.05, seed=3, eval_batch_size=3,
                      augment=Augment(rotate=10.0, scale=0.1, shift=2.0) if augment else Augment())
    runs = {}
    for kind, (xt, xv) in {"images": (train, val), "tensors": (whole(train), whole(val))}.items():
        model = tiny_cnn()
        history = engine.fit(model, (xt, y_train), (xv, y_val), cfg, progress=False)
        runs[kind] = (history, model, engine.predict(model, xv, batch_size=3))
    (h1, m1, p1), (h2, m2, p2) = runs["images"], runs["tensors"]
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(p1, p2)


@pytest.mark.parametrize("bf16", [False, True])
def test_hook_features_of_images_equal_those_of_the_converted_split(bf16):
    images = Images(pixels(n=10, side=12), 16)
    model = tiny_cnn().eval()
    got = hooks.extract_features(model, images, ["3"], batch_size=4, bf16=bf16, progress=False)["3"]
    want = hooks.extract_features(model, whole(images), ["3"], batch_size=4, bf16=bf16, progress=False)["3"]
    assert got.shape == (10, 4) and torch.equal(got, want)


def test_prediction_batches_shrink_for_large_images_and_not_for_small_ones(monkeypatch):
    assert engine.predict_batch_rows(torch.zeros(10, 1, 28, 28), 1024) == 1024  # MNIST: 3 MiB a batch
    assert engine.predict_batch_rows(Images(pixels(n=2, side=8), 224), 1024) == engine.PREDICT_BATCH_BYTES // (4 * 3 * 224 * 224) == 111
    assert engine.predict_batch_rows(Images(pixels(n=2, side=8), 4096), 1024) == 1  # never zero rows
    model = tiny_cnn().eval()
    images = Images(pixels(n=7, side=12), 16)
    whole = engine.predict(model, images, batch_size=1024)
    monkeypatch.setattr(engine, "PREDICT_BATCH_BYTES", 2 * 4 * 3 * 16 * 16)  # 2 rows a batch
    assert engine.predict_batch_rows(images, 1024) == 2
    assert torch.allclose(engine.predict(model, images, batch_size=1024), whole, atol=1e-6)
