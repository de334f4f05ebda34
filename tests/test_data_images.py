"""image_dir: layouts, the pre-flight check, decoding of every format,
strict mode, and folder errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.config import config_from_dict
from dlcli.data import load_data, make_demo_image_folder
from dlcli.data.images import check_image
from dlcli.errors import DataError

MODEL = {"layers": ["Flatten", {"Dense": {"units": 2, "activation": "softmax"}}]}


def cfg_of(path, **data):
    loss = data.pop("loss", None)
    d = {"data": {"source": "image_dir", "path": str(path), "image_size": [32, 32], "batch_size": 8, **data},
         "model": MODEL}
    if loss:
        d["compile"] = {"loss": loss}
    return config_from_dict(d)


def save(path: Path, pixels: np.ndarray, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt, **kw)
    return path


def solid(value, size=(32, 32), channels=3):
    return np.full(size + ((channels,) if channels > 1 else ()), value, np.uint8)


def labels_of(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("img") / "cats_dogs"
    info = make_demo_image_folder(root, n_per_class=12, size=40, corrupt=True, seed=3)
    return root, info


def test_class_folders_streamed_with_corrupt_files_skipped(demo):
    root, info = demo
    b = load_data(cfg_of(root, validation_split=0.25, test_split=0.25))
    assert b.class_names == ["cats", "dogs"] and b.spec.layout == "classes"
    assert b.num_train + b.num_val + b.num_test == 24  # 27 files, 3 broken
    assert (b.num_test, b.num_val) == (6, 5)
    assert b.spec.skipped == 3
    note = " ".join(b.notes)
    assert "skipped 3 unreadable files" in note
    assert "truncated JPEG" in note and "empty file" in note and "not a JPEG, PNG, GIF or BMP" in note
    assert b.input_shape == (32, 32, 3)
    x, y = next(iter(b.train))
    assert x.dtype.name == "float32" and x.shape[1:] == (32, 32, 3)
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255.0
    assert float(x.numpy().max()) > 100  # raw pixel values, not rescaled
    # Stratified test split: both classes in it.
    assert set(labels_of(b.test)) == {0, 1}
    assert b.spec.class_counts == np.bincount(labels_of(b.train)).tolist()


def test_strict_mode_fails_on_the_broken_files(demo):
    root, info = demo
    with pytest.raises(DataError) as err:
        load_data(cfg_of(root, strict=True))
    msg = str(err.value)
    assert err.value.exit_code == 2
    assert "3 unreadable files" in msg and "broken_truncated.jpg" in msg and "strict" in msg


def test_training_order_is_seeded_and_reshuffled_each_epoch(demo):
    root, _ = demo
    a = load_data(cfg_of(root, batch_size=4))
    b = load_data(cfg_of(root, batch_size=4))
    from dlcli.data.pipeline import set_epoch

    set_epoch(0)
    first = np.concatenate([x.numpy().mean(axis=(1, 2, 3)) for x, _ in a.train])
    other = np.concatenate([x.numpy().mean(axis=(1, 2, 3)) for x, _ in b.train])
    np.testing.assert_allclose(first, other, rtol=1e-6)  # same seed, same order
    # The order is drawn from (seed, epoch): the trainer sets the epoch.
    set_epoch(1)
    again = np.concatenate([x.numpy().mean(axis=(1, 2, 3)) for x, _ in a.train])
    set_epoch(0)
    assert not np.allclose(first, again)  # next epoch, new order
    np.testing.assert_allclose(np.sort(first), np.sort(again), rtol=1e-6)


def test_train_val_test_folders(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for c, value in (("a", 40), ("b", 200)):
            for i in range(n):
                save(tmp_path / split / c / f"{i}.png", solid(value))
    b = load_data(cfg_of(tmp_path))
    assert b.spec.layout == "splits"
    assert (b.num_train, b.num_val, b.num_test) == (12, 4, 6)
    # Every test image keeps its class: a is dark, b is bright.
    for x, y in b.test:
        means = x.numpy().mean(axis=(1, 2, 3))
        np.testing.assert_allclose(means, np.where(y.numpy() == 0, 40.0, 200.0))


def test_validation_folder_name_and_split_from_train(tmp_path):
    for c in ("a", "b"):
        for i in range(10):
            save(tmp_path / "train" / c / f"{i}.png", solid(i))
        save(tmp_path / "validation" / c / "0.png", solid(1))
    b = load_data(cfg_of(tmp_path))
    assert (b.num_train, b.num_val, b.num_test) == (20, 2, 0) and b.test is None
    (tmp_path / "validation" / "a" / "0.png").unlink()
    (tmp_path / "validation" / "b" / "0.png").unlink()
    import shutil

    shutil.rmtree(tmp_path / "validation")
    b = load_data(cfg_of(tmp_path, validation_split=0.2))
    assert (b.num_train, b.num_val) == (16, 4)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "is empty"),
        ({"only/a.png": True}, "single class folder ('only')"),
        ({"a/1.png": True, "b/notes.txt": False}, "have no readable images"),
        ({"a.png": True, "b.png": True}, "holds images but no class folders"),
        ({"train/a/1.png": True, "train/b/1.png": True, "extra/1.png": True}, "mixes split folders"),
    ],
)
def test_folder_errors(tmp_path, layout, message):
    root = tmp_path / "data"
    root.mkdir()
    for name, is_image in layout.items():
        if is_image:
            save(root / name, solid(9))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("hello")
    with pytest.raises(DataError) as err:
        load_data(cfg_of(root))
    assert message in str(err.value) and err.value.exit_code == 2


def test_class_with_only_broken_files_is_named(tmp_path):
    save(tmp_path / "a" / "1.png", solid(1))
    save(tmp_path / "a" / "2.png", solid(2))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.jpg").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_data(cfg_of(tmp_path))
    assert str(tmp_path / "b") in str(err.value)


def test_every_format_decodes_like_pillow(tmp_path):
    """JPEG, PNG (grey, RGBA, palette), BMP, and an animated GIF (first
    frame) at the target size: decoded values equal Pillow's."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    files = {
        "a/rgb.png": rgb,
        "a/grey.png": rgb[..., 0],
        "a/rgba.png": np.dstack([rgb, np.full((32, 32), 255, np.uint8)]),
        "b/rgb.bmp": rgb,
        "b/grey.bmp": rgb[..., 1],
    }
    for name, px in files.items():
        save(tmp_path / name, px)
    frames = [Image.fromarray(solid(v)).convert("P") for v in (30, 220)]
    frames[0].save(tmp_path / "b" / "anim.gif", save_all=True, append_images=frames[1:])
    save(tmp_path / "a" / "photo.jpg", rgb, quality=95)
    for mode, channels in (("rgb", 3), ("grayscale", 1)):
        b = load_data(cfg_of(tmp_path, color_mode=mode, validation_split=0.0, test_split=0.0, shuffle_buffer=0))
        assert b.num_train == 7 and not b.notes
        x = b.representative(7)
        assert x.shape == (7, 32, 32, channels)
        # Training order is a seeded shuffle: match each file to its image.
        for name in ["a/grey.png", "a/photo.jpg", "a/rgb.png", "a/rgba.png", "b/anim.gif", "b/grey.bmp", "b/rgb.bmp"]:
            want = np.asarray(Image.open(tmp_path / name).convert("RGB" if channels == 3 else "L"), np.float32)
            diffs = [np.abs(img.reshape(want.shape) - want).mean() for img in x]
            tol = 3.0 if name.endswith(".jpg") else 1.0  # JPEG decoders and grey weights differ a little
            assert min(diffs) < tol, (name, mode, min(diffs))


def test_large_jpeg_scaled_while_decoding_stays_close_to_an_antialiased_resize(tmp_path):
    rng = np.random.default_rng(1)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC))
    save(tmp_path / "a" / "big.jpg", smooth, quality=92)
    save(tmp_path / "b" / "small.png", solid(5))
    b = load_data(cfg_of(tmp_path, image_size=[64, 64], validation_split=0.0, test_split=0.0))
    got = b.representative(2)[0]
    want = np.asarray(Image.open(tmp_path / "a" / "big.jpg").convert("RGB").resize((64, 64), Image.BILINEAR), np.float32)
    assert np.abs(got - want).mean() < 4.0


def test_cache_true_keeps_decoded_images(demo):
    root, _ = demo
    b = load_data(cfg_of(root, cache=True))
    one = np.sort(np.concatenate([x.numpy().sum(axis=(1, 2, 3)) for x, _ in b.train]))
    two = np.sort(np.concatenate([x.numpy().sum(axis=(1, 2, 3)) for x, _ in b.train]))
    np.testing.assert_allclose(one, two, rtol=1e-6)


def test_classes_filter_and_one_hot_labels(demo):
    root, _ = demo
    b = load_data(cfg_of(root, classes=["dogs", "cats"], loss="categorical_crossentropy"))
    assert b.class_names == ["dogs", "cats"]
    y = labels_of(b.train)
    assert y.shape[1] == 2 and set(y.sum(axis=1)) == {1.0}


@pytest.mark.parametrize(
    "broken, reason",
    [
        ("empty", "empty file"),
        ("text", "not a JPEG, PNG, GIF or BMP image"),
        ("truncated-jpeg", "truncated JPEG"),
        ("truncated-png", "truncated PNG"),
        ("flipped-png", "bad checksum"),
        ("truncated-bmp", "truncated BMP"),
        ("truncated-gif", "truncated GIF"),
    ],
)
def test_check_image_finds_broken_files(tmp_path, broken, reason):
    path = tmp_path / "bad.jpg"
    if broken == "empty":
        path.write_bytes(b"")
    elif broken == "text":
        path.write_text("hello, I am text")
    else:
        how, fmt = broken.split("-")
        good = save(tmp_path / f"good.{fmt}", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
        assert check_image(str(good)) == ({"jpeg": 0, "png": 4, "bmp": 5, "gif": 5}[fmt], "")
        data = bytearray(good.read_bytes())
        if how == "truncated":
            data = data[: len(data) * 2 // 3]
        else:
            data[len(data) // 2] ^= 0xFF  # one flipped byte inside the image data
        path.write_bytes(bytes(data))
    code, why = check_image(str(path))
    assert code is None and reason in why


def test_jpeg_decode_scale_follows_the_target(tmp_path):
    good = save(tmp_path / "a.jpg", np.zeros((64, 80, 3), np.uint8))
    assert check_image(str(good), target=(64, 64)) == (0, "")  # full size
    assert check_image(str(good), target=(32, 40)) == (1, "")  # 1/2
    assert check_image(str(good), target=(16, 16)) == (2, "")  # 1/4
    assert check_image(str(good), target=(8, 8)) == (3, "")  # 1/8
