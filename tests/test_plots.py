"""The figure helpers that hold logic of their own."""

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from reprodl import plots


@pytest.mark.parametrize("n, channels, columns", [(7, 3, 3), (40, 1, 20), (2, 3, 5), (6, 1, 6)])
def test_tile_images_lays_out_images_like_torchvision_make_grid(n, channels, columns):
    images = np.random.default_rng(n).integers(0, 256, size=(n, channels, 5, 4), dtype=np.uint8)
    ours = plots.tile_images(images, columns)
    theirs = make_grid(torch.from_numpy(images), nrow=columns, padding=2, pad_value=128).permute(1, 2, 0).numpy()
    if channels == 1:  # make_grid repeats a single channel into three
        theirs = theirs[:, :, :1]
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_tile_images_does_not_import_torchvision():
    import subprocess
    import sys

    code = "import sys; from reprodl import plots; print('torchvision' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split() == ["False", "False"], "plots must stay cheap to import: stages that only draw pay no torch start-up"
