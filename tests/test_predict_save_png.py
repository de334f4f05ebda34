"""`predict --save-dir`: each input sample gets its own PNG (npz samples
keep their index; they used to overwrite one file per .npz)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlcli.prediction import _save_png


def test_every_npz_sample_and_image_gets_its_own_png(tmp_path):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    names = ["data/denoise.npz:0", "data/denoise.npz:1", "data/denoise.npz:12", "pics/shape_0003.png", "C:/x/a.b.png"]
    paths = [_save_png(tmp_path, n, "reconstruction", img + i) for i, n in enumerate(names)]
    assert [p.name for p in paths] == ["denoise_0.reconstruction.png", "denoise_1.reconstruction.png",
                                       "denoise_12.reconstruction.png", "shape_0003.reconstruction.png",
                                       "a.b.reconstruction.png"]
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), img + i)
