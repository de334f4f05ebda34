"""Image predict feeds the model from the tf.data pipeline's tensors:
the same samples, names, order and per-file errors as the numpy batches,
and the predictions of `model.predict` on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.data import load_inputs, make_demo_image_folder
from test_data_inputs import _undecodable_png, cfg_of  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def run_and_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    make_demo_image_folder(root / "train", n_per_class=8, size=20, corrupt=False, seed=3)
    run = api.train({
        "name": "pipe",
        "data": {"source": "image_dir", "path": str(root / "train"), "image_size": [12, 12], "batch_size": 8},
        "model": {"layers": [{"Rescaling": {"scale": 1 / 255}}, "Flatten", {"Dense": {"units": 2, "activation": "softmax"}}]},
        "compile": {"loss": "sparse_categorical_crossentropy"},
        "train": {"epochs": 1},
    }, output=root / "runs", progress="none").run_dir
    # Bad files among good ones: one that passes every check and fails in
    # the decoder mid-batch (dropped by the pipeline), one whose headers
    # pass predict's header-only check and whose pixel data does not
    # inflate (dropped by the decoder, then named by the full check), one
    # whose header is garbage (refused by the check), a non-image.
    mixed = root / "mixed"
    shutil.copytree(root / "train" / "cats", mixed)
    _short_png(mixed / "cat_0001a.png")
    _undecodable_png(mixed / "cat_0002a.png")
    (mixed / "cat_0004b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (mixed / "cat_0005.txt").write_text("notes")
    return run, mixed


def _short_png(path):
    """A PNG that passes the pre-flight check (its chunks, checksums and
    compressed data are sound) but holds 3 of its 20 pixel rows: only the
    decoder finds out."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20, 20, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 61 * 3)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _spec(run):
    from dlcli.data import DataSpec

    return DataSpec.read(json.loads((run / "data_spec.json").read_text()))


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_tensor_batches_hold_what_the_numpy_batches_hold(run_and_folder, batch_size):
    run, mixed = run_and_folder
    spec = _spec(run)
    arrays = list(load_inputs(spec, [str(mixed)], batch_size))
    tensors = list(load_inputs(spec, [str(mixed)], batch_size, tensors=True))
    assert all(isinstance(x, np.ndarray) for _, x, _ in arrays)
    assert all(len(n) <= batch_size and len(n) == len(x) for n, x, _ in tensors)
    flat = [n for ns, _, _ in arrays for n in ns]
    # Batches stay the pipeline's tensors (those with a file the decoder
    # dropped, two here, are rebuilt in numpy: the only one at batch size 64).
    assert sum(not isinstance(x, np.ndarray) for _, x, _ in tensors) >= (len(tensors) - 2 if batch_size < 64 else 0)
    assert [n for ns, _, _ in tensors for n in ns] == flat == sorted(flat)
    assert dict(e for _, _, es in tensors for e in es) == dict(e for _, _, es in arrays for e in es)
    np.testing.assert_allclose(np.concatenate([np.asarray(x) for _, x, _ in tensors]),
                               np.concatenate([x for _, x, _ in arrays]), atol=1e-5)


def test_predict_rows_equal_model_predict_with_error_rows(run_and_folder):
    import keras

    run, mixed = run_and_folder
    res = runner.invoke(app, ["predict", str(run), str(mixed), "--json", "-b", "3"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    errors = {r["input"]: r["error"] for r in records if "error" in r}
    assert set(errors) == {str(mixed / n) for n in ("cat_0001a.png", "cat_0002a.png", "cat_0004b.png", "cat_0005.txt")}
    assert errors[str(mixed / "cat_0001a.png")].startswith("cannot decode (Invalid PNG data")
    assert errors[str(mixed / "cat_0002a.png")].startswith("corrupt PNG (its pixel data")  # the full check's words
    assert errors[str(mixed / "cat_0004b.png")].startswith("corrupt PNG")
    good = [r for r in records if "error" not in r]
    files = sorted(str(p) for p in mixed.iterdir() if str(p) not in errors)
    assert [r["input"] for r in good] == files  # the files' order
    x = np.concatenate([x for _, x, _ in load_inputs(_spec(run), files, 64)])
    p = keras.saving.load_model(run / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose([r["probability"] for r in good], p.max(1), atol=1e-5)
    names = _spec(run).class_names
    assert [r["class"] for r in good] == [names[int(i)] for i in p.argmax(1)]


def test_the_header_only_check_gives_the_full_checks_decoder_codes(tmp_path):
    """Predict's header-only check picks the same decoder (format, JPEG
    scale) as the full walk, also for a JPEG whose frame header lies past
    the first 64 KiB (a large metadata segment), and refuses a bomb."""
    from dlcli.data.image_check import check_images

    make_demo_image_folder(tmp_path / "f", n_per_class=4, size=40, corrupt=False, seed=5)
    files = sorted(str(p) for p in (tmp_path / "f").rglob("*") if p.is_file())
    jpeg = next(Path(f) for f in files if Path(f).read_bytes()[:3] == b"\xff\xd8\xff")
    data = jpeg.read_bytes()
    app = b"\xff\xe1" + (65_533).to_bytes(2, "big") + b"\x00" * 65_531  # one APP1 segment of 64 KiB
    (tmp_path / "exif.jpg").write_bytes(data[:2] + app + data[2:])
    files.append(str(tmp_path / "exif.jpg"))
    for target in ([40, 40], [10, 10]):
        full, bad_full = check_images(files, target=target)
        quick, bad_quick = check_images(files, target=target, quick=True)
        assert bad_full == bad_quick == [] and full.tolist() == quick.tolist()
    bomb = bytearray(Path(next(f for f in files if f.endswith(".png"))).read_bytes())
    import struct
    import zlib

    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(bomb))
    codes, bad = check_images([str(tmp_path / "bomb.png")], quick=True)
    assert codes.tolist() == [-1] and "decompression bomb" in bad[0][1]
