"""The generated cats_dogs demo folder: layout, formats, broken files,
seeded, and learnable (the classes differ in a way a small CNN can see)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from dlcli.data import make_demo_image_folder


def test_layout_formats_and_broken_files(tmp_path):
    start = time.perf_counter()
    info = make_demo_image_folder(tmp_path / "cd", n_per_class=10, size=(40, 60), seed=1)
    assert time.perf_counter() - start < 10
    root = tmp_path / "cd"
    assert info["classes"] == {"cats": 10, "dogs": 10}
    for c in ("cats", "dogs"):
        files = sorted(p.name for p in (root / c).iterdir())
        good = [f for f in files if f.startswith(c[:-1] + "_")]
        assert len(good) == 10
        assert {f.rsplit(".", 1)[1] for f in good} == {"jpg", "png"}
        for f in good:
            with Image.open(root / c / f) as im:
                w, h = im.size
                assert 30 <= h <= 50 and 45 <= w <= 75  # sizes vary around (40, 60)
    names = sorted(p.rsplit("/", 1)[1] for p in info["corrupt"])
    assert names == ["broken_truncated.jpg", "empty.png", "notes_renamed.jpg"]
    assert (root / "cats" / "empty.png").stat().st_size == 0


def test_same_seed_same_images(tmp_path):
    make_demo_image_folder(tmp_path / "a", n_per_class=3, size=24, corrupt=False, seed=7)
    make_demo_image_folder(tmp_path / "b", n_per_class=3, size=24, corrupt=False, seed=7)
    make_demo_image_folder(tmp_path / "c", n_per_class=3, size=24, corrupt=False, seed=8)
    a = (tmp_path / "a" / "dogs" / "dog_0001.png").read_bytes()
    assert a == (tmp_path / "b" / "dogs" / "dog_0001.png").read_bytes()
    assert a != (tmp_path / "c" / "dogs" / "dog_0001.png").read_bytes()


def test_classes_differ_in_colour_on_average(tmp_path):
    make_demo_image_folder(tmp_path, n_per_class=20, size=32, corrupt=False, seed=2)
    warmth = {}
    for c in ("cats", "dogs"):
        px = [np.asarray(Image.open(p).convert("RGB"), np.float32) for p in (tmp_path / c).iterdir()]
        warmth[c] = np.mean([(p[..., 0] - p[..., 2]).mean() for p in px])
    assert warmth["cats"] > warmth["dogs"]


@pytest.mark.slow
def test_a_small_cnn_tells_cats_from_dogs(tmp_path):
    import keras

    from dlcli.config import config_from_dict
    from dlcli.data import load_data

    make_demo_image_folder(tmp_path / "cd", n_per_class=80, size=64, seed=0)
    cfg = config_from_dict({
        "data": {"source": "image_dir", "path": str(tmp_path / "cd"), "image_size": [32, 32], "batch_size": 16,
                 "test_split": 0.25},
        "model": {"layers": ["Flatten"]},
    })
    b = load_data(cfg)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(b.input_shape),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(b.train, validation_data=b.val, epochs=12, verbose=0)
    _, accuracy = model.evaluate(b.test, verbose=0)
    assert accuracy > 0.85
