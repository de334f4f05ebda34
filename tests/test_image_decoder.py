"""The image decoder training and predict share: files that need no
per-file branch (full-scale JPEGs, PNGs; GIF and BMP in RGB) are read by
TensorFlow's one `decode_image` kernel, with the same pixels as the
branching decoder; a JPEG large enough to decode scaled down, or a GIF
for a grayscale model, keeps the branch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlcli.data.image_check import JPEG, OTHER, PNG, check_images
from dlcli.data.images import flat_decodable, make_decoder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder")
    rng = np.random.default_rng(0)
    out = {}
    for name, size in (("small.jpg", (30, 40)), ("small.png", (30, 40)), ("big.jpg", (160, 200)),
                       ("anim.gif", (30, 40)), ("plain.bmp", (30, 40))):
        pixels = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
        out[name] = str(root / name)
    return out


def test_which_codes_decode_flat():
    assert flat_decodable([JPEG, PNG, PNG], 3)
    assert flat_decodable([JPEG, PNG, OTHER], 3)  # GIF/BMP decode as RGB anyway
    assert not flat_decodable([JPEG, OTHER], 1)  # GIF/BMP to grayscale needs the conversion branch
    assert not flat_decodable([JPEG + 2, PNG], 3)  # a JPEG decoded at 1/4 scale
    assert flat_decodable([], 3)


@pytest.mark.parametrize("channels", [3, 1])
def test_flat_decoder_gives_the_branching_decoders_pixels(files, channels):
    import tensorflow as tf

    names = ["small.jpg", "small.png"] + (["anim.gif", "plain.bmp"] if channels == 3 else [])
    codes, bad = check_images([files[n] for n in names], target=(16, 16))
    assert not bad and flat_decodable(codes, channels)
    branching = make_decoder((16, 16), channels)
    flat = make_decoder((16, 16), channels, codes)
    for name, code in zip(names, codes):
        a = branching(tf.constant(files[name]), tf.constant(int(code)))
        b = flat(tf.constant(files[name]), tf.constant(int(code)))
        assert a.shape == b.shape == (16, 16, channels)
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_a_large_jpeg_keeps_its_scaled_decode(files):
    import tensorflow as tf

    codes, _ = check_images([files["big.jpg"], files["small.png"]], target=(16, 16))
    assert codes[0] > JPEG and not flat_decodable(codes, 3)
    # Given these codes, make_decoder keeps the branch: the big JPEG decodes
    # at a reduced DCT scale, as training saw it, not at full size.
    decode = make_decoder((16, 16), 3, codes)
    scaled = decode(tf.constant(files["big.jpg"]), tf.constant(int(codes[0]))).numpy()
    full = make_decoder((16, 16), 3)(tf.constant(files["big.jpg"]), tf.constant(JPEG)).numpy()
    scaled_ref = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(files["big.jpg"]), ratio=8), (16, 16)).numpy()
    np.testing.assert_array_equal(scaled, scaled_ref)
    assert not np.array_equal(scaled, full)
