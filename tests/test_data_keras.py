"""Keras's downloadable sets: read from Keras's cache through its loader;
offline and uncached, an error that says which file to put where.

Keras reads KERAS_HOME once, at import, into
`keras.src.backend.config._KERAS_DIR` (what `keras_home()` returns and
`get_file` caches under), so the tests point that at a temporary folder.
No test touches the network: `urlretrieve` in Keras's file utilities is
replaced by one that fails as an offline machine does.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest

from dlcli.config import config_from_dict
from dlcli.data import load_data
from dlcli.errors import DataError

MODEL = {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache with the network cut off."""
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return tmp_path


def write_small_mnist(home, monkeypatch, n_train=120, n_test=40):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y = np.arange(n_train, dtype=np.uint8) % 10
    xt = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    yt = np.arange(n_test, dtype=np.uint8) % 10
    (home / "datasets").mkdir(parents=True, exist_ok=True)
    np.savez(home / "datasets" / "mnist.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    # Keras checks the real file's sha256 before using a cached copy; a
    # small test file cannot match it, so accept it as the real one would be.
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "validate_file", lambda *a, **k: True)
    return x, y, xt, yt


def test_mnist_from_the_keras_cache(keras_home, monkeypatch, capsys):
    x, y, xt, yt = write_small_mnist(keras_home, monkeypatch)
    cfg = config_from_dict({"data": {"source": "mnist", "validation_split": 0.25, "batch_size": 64}, "model": MODEL})
    b = load_data(cfg)
    assert b.input_shape == (28, 28, 1)
    assert (b.num_train, b.num_val, b.num_test) == (90, 30, 40)
    assert b.spec.pixel_range == [0.0, 255.0] and b.spec.color_mode == "grayscale"
    assert b.class_names == [str(i) for i in range(10)]
    # The set's own test split, in order, as float32 raw 0..255 pixels.
    test_x = np.concatenate([a.numpy() for a, _ in b.test])
    test_y = np.concatenate([c.numpy() for _, c in b.test])
    assert test_x.dtype == np.float32
    np.testing.assert_array_equal(test_x[..., 0], xt.astype(np.float32))
    np.testing.assert_array_equal(test_y, yt)
    assert capsys.readouterr().out == ""  # stdout stays clean for --json


def test_mnist_uncached_and_offline_says_where_to_put_the_file(keras_home):
    cfg = config_from_dict({"data": {"source": "mnist"}, "model": MODEL})
    with pytest.raises(DataError) as err:
        load_data(cfg)
    msg = str(err.value)
    assert err.value.exit_code == 2
    assert "mnist is not cached and cannot be downloaded" in msg
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in msg
    assert f"{keras_home / 'datasets' / 'mnist.npz'}" in msg


def test_cifar10_uncached_names_keras_archive_layout(keras_home):
    cfg = config_from_dict({"data": {"source": "cifar10"}, "model": MODEL})
    with pytest.raises(DataError) as err:
        load_data(cfg)
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg
    assert str(keras_home / "datasets" / "cifar-10-batches-py-target_archive") in msg


def test_fashion_mnist_lists_only_the_missing_files(keras_home):
    folder = keras_home / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    cfg = config_from_dict({"data": {"source": "fashion_mnist"}, "model": MODEL})
    with pytest.raises(DataError) as err:
        load_data(cfg)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-images-idx3-ubyte.gz" in msg
    assert "place train-labels-idx1-ubyte.gz" not in msg
