"""load_inputs: predict-time inputs preprocessed exactly as in training,
per-file errors for bad inputs, up-front errors for wrong kinds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from dlcli.config import config_from_dict
from dlcli.data import load_data, load_inputs, make_demo_image_folder
from dlcli.errors import DataError


def cfg_of(data: dict, loss: str = "sparse_categorical_crossentropy"):
    return config_from_dict({"data": data, "model": {"layers": ["Flatten", {"Dense": {"units": 2}}]},
                             "compile": {"loss": loss}})


def collect(batches):
    names, xs, errors = [], [], []
    for n, x, e in batches:
        assert len(n) == len(x)
        names += n
        xs.append(x)
        errors += e
    return names, np.concatenate(xs), errors


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs") / "cats_dogs"
    make_demo_image_folder(root, n_per_class=6, size=48, corrupt=True, seed=5)
    return root


def test_images_equal_training_preprocessing(demo):
    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [24, 20],
                          "validation_split": 0.0, "test_split": 0.5}))
    # The test split keeps its order; find its files by matching pixels.
    test_x = np.concatenate([x.numpy() for x, _ in b.test])
    names, x, errors = collect(load_inputs(b.spec, [str(demo)], batch_size=5))
    assert x.shape == (12, 24, 20, 3) and x.dtype == np.float32
    assert names == sorted(names)
    for img in test_x:  # every test image is one of the predicted ones, exactly
        assert min(np.abs(x - img).max(axis=(1, 2, 3))) < 1e-4
    assert sorted(e[0].rsplit("/", 1)[1] for e in errors) == ["broken_truncated.jpg", "empty.png", "notes_renamed.jpg"]


def test_single_files_and_errors_keep_their_order(demo, tmp_path):
    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [16, 16], "color_mode": "grayscale"}))
    good = sorted(str(p) for p in (demo / "cats").glob("cat_*"))[:3]
    bad = str(demo / "cats" / "empty.png")
    out = list(load_inputs(b.spec, [good[0], bad, good[1], good[2]], batch_size=2))
    assert [n for n, _, _ in out] == [[good[0], good[1]], [good[2]]]
    assert out[0][2] == [(bad, "empty file")]
    assert out[0][1].shape == (2, 16, 16, 1)


def test_missing_path_and_wrong_kinds_fail_before_any_batch(demo, tmp_path):
    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [16, 16]}))
    good = str(next((demo / "dogs").glob("dog_*")))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    for paths, message in (
        ([good, str(tmp_path / "missing.png")], "does not exist"),
        ([str(tmp_path / "notes.txt")], "is a TXT file, but this model takes images"),
        ([str(tmp_path / "t.csv")], "is a CSV file, but this model takes images"),
    ):
        with pytest.raises(DataError, match=message) as err:
            load_inputs(b.spec, paths, 4)
        assert err.value.exit_code == 2


def collect_columns(batches):
    """Like `collect`, for models that take raw table columns by name."""
    names, xs, errors = [], [], []
    for n, x, e in batches:
        assert all(len(v) == len(n) for v in x.values())
        names += n
        xs.append(x)
        errors += e
    return names, {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}, errors


def test_csv_rows_read_as_the_models_raw_columns(tmp_path):
    # Behaviour changed with issue 12: a csv model holds its FeatureSpace,
    # so predict feeds raw columns (gaps filled as in training) and an
    # unseen category goes to FeatureSpace's out-of-vocabulary slot
    # instead of being an error.
    train = tmp_path / "train.csv"
    rows = [f"{i * 0.5},{['red', 'blue', 'green'][i % 3]},{i % 2}" for i in range(30)]
    train.write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    b = load_data(cfg_of({"source": "csv", "path": str(train), "target": "label", "validation_split": 0.0, "test_split": 0.0}))
    # Predict on the training file itself (target column ignored), reordered columns.
    again = tmp_path / "again.csv"
    again.write_text("label,colour,size\n" + "\n".join(",".join(reversed(r.split(","))) for r in rows) + "\n")
    names, x, errors = collect_columns(load_inputs(b.spec, [str(again)], batch_size=7))
    assert not errors and names[0] == f"{again}:2" and len(names) == 30
    np.testing.assert_allclose(x["size"][:, 0], [i * 0.5 for i in range(30)])
    assert x["colour"][:, 0].tolist() == [["red", "blue", "green"][i % 3] for i in range(30)]
    # A word in a numeric column is skipped with its line; a gap is the training mean.
    bad = tmp_path / "bad.csv"
    bad.write_text("size,colour\n1.0,red\nbig,red\n2.0,purple\n,blue\n")
    names, x, errors = collect_columns(load_inputs(b.spec, [str(bad)], batch_size=8))
    assert names == [f"{bad}:2", f"{bad}:4", f"{bad}:5"]
    assert [e[0] for e in errors] == [f"{bad}:3"] and "'big'" in errors[0][1] and "'size'" in errors[0][1]
    assert x["colour"][1, 0] == "purple"
    assert x["size"][2, 0] == pytest.approx(np.mean([i * 0.5 for i in range(30)]))


def test_csv_without_feature_columns_is_an_error(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("size,weight,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(10)))
    b = load_data(cfg_of({"source": "csv", "path": str(train), "target": "label"}))
    other = tmp_path / "other.csv"
    other.write_text("size,wieght\n1,2\n")
    with pytest.raises(DataError) as err:
        load_inputs(b.spec, [str(other)], 4)
    assert "'weight'" in str(err.value) and "did you mean 'wieght'" in str(err.value)


def test_npz_inputs_for_vector_and_image_sets(tmp_path):
    b = load_data(cfg_of({"source": "iris"}))
    from sklearn.datasets import load_iris

    raw = load_iris().data[:5]
    np.savez(tmp_path / "x.npz", x=raw)
    names, x, _ = collect(load_inputs(b.spec, [str(tmp_path / "x.npz")], 4))
    stats = b.spec.standardize
    np.testing.assert_allclose(x, (raw - np.asarray(stats.mean)) / np.asarray(stats.std), rtol=1e-5)
    assert names == [f"{tmp_path / 'x.npz'}:{i}" for i in range(5)]
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5)))
    with pytest.raises(DataError, match=r"shape \(5,\), but the model takes \(4,\)"):
        load_inputs(b.spec, [str(tmp_path / "wrong.npy")], 4)


def test_digit_images_get_the_training_pixel_range_and_sequence_layout(tmp_path):
    b = load_data(cfg_of({"source": "digits", "sequence": True}))
    from sklearn.datasets import load_digits

    img = load_digits().images[0]  # 0..16
    Image.fromarray((img * 255 / 16).round().astype(np.uint8)).save(tmp_path / "d.png")
    np.savez(tmp_path / "d.npz", x=img[None])
    _, x, _ = collect(load_inputs(b.spec, [str(tmp_path / "d.png"), str(tmp_path / "d.npz")], 4))
    assert x.shape == (2, 8, 8)
    np.testing.assert_allclose(x[0], img, atol=0.05)
    np.testing.assert_allclose(x[1], img)


def test_ctc_images_become_columns(tmp_path):
    b = load_data(cfg_of({"source": "ctc_digits", "sequence": True, "ctc": {"length": 3, "samples": 60}}, loss="ctc"))
    assert b.input_shape == (24, 8)
    strip = np.zeros((8, 24), np.uint8)
    strip[:, 8:16] = 255
    Image.fromarray(strip).save(tmp_path / "s.png")
    _, x, _ = collect(load_inputs(b.spec, [str(tmp_path / "s.png")], 1))
    assert x.shape == (1, 24, 8)
    np.testing.assert_allclose(x[0, 8:16], 16.0)  # columns 8..15 lit, in range 0..16
    np.testing.assert_allclose(x[0, :8], 0.0)


def _undecodable_png(path, size=(20, 20)):
    """A PNG whose chunks and checksums are all valid (it passes the
    pre-flight check) but whose pixel data is not zlib: decoding fails."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", size[1], size[0], 8, 2, 0, 0, 0)
    pixels = b"not zlib at all" * 8
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _one_by_one(spec, files, batch_size):
    """The expected batches: each file loaded alone, regrouped in order
    (an error goes with the batch of the next good file)."""
    out, names, xs, errors = [], [], [], []
    for f in files:
        if f.endswith(".txt"):  # not an input on its own; an error in a folder
            errors.append((f, "not an image file (extension not .jpg, .jpeg, .png, .bmp, .gif)"))
            continue
        (n, x, e), = load_inputs(spec, [f], 1)
        errors += e
        if n:
            names += n
            xs.append(x)
        if len(names) == batch_size:
            out.append((names, np.concatenate(xs), errors))
            names, xs, errors = [], [], []
    if names or errors:
        out.append((names, np.concatenate(xs) if xs else None, errors))
    return out


def test_file_that_fails_to_decode_mid_batch_is_an_error_and_the_rest_predicts(demo, tmp_path):
    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [16, 16]}))
    folder = tmp_path / "mixed"
    shutil.copytree(demo / "cats", folder)
    _undecodable_png(folder / "cat_0002a.png")  # sorts in the middle of the good files
    _undecodable_png(folder / "zz_last.png")  # and last
    (folder / "cat_0004.txt").write_text("notes")  # a non-image between images
    files = sorted(str(p) for p in folder.iterdir())
    for batch_size in (1, 3, 4, 64):
        got = list(load_inputs(b.spec, [str(folder)], batch_size))
        want = _one_by_one(b.spec, files, batch_size)
        assert [(n, e) for n, _, e in got] == [(n, e) for n, _, e in want]
        for (_, x, _), (_, wx, _) in zip(got, want):
            if wx is not None:
                np.testing.assert_allclose(x, wx, atol=1e-4)
        errors = dict(e for _, _, es in got for e in es)
        # The pre-flight check now finds pixel data that does not inflate
        # (issue 11); a file it lets through still fails in the decoder.
        assert errors[str(folder / "cat_0002a.png")].startswith(("corrupt PNG (its pixel data", "cannot decode (Invalid PNG data"))
        assert errors[str(folder / "zz_last.png")].startswith(("corrupt PNG", "cannot decode"))
        assert errors[str(folder / "cat_0004.txt")].startswith("not an image file")
        assert sum(len(n) for n, _, _ in got) == 6


def test_images_and_arrays_share_batches_in_input_order(demo, tmp_path):
    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [16, 16]}))
    cats = sorted(str(p) for p in (demo / "cats").glob("cat_*"))
    np.savez(tmp_path / "x.npz", x=np.full((3, 16, 16, 3), 7.0, np.float32))
    inputs = [cats[0], str(tmp_path / "x.npz"), str(demo / "dogs"), cats[1]]
    got = list(load_inputs(b.spec, inputs, 4))
    names = [n for ns, _, _ in got for n in ns]
    assert names[:4] == [cats[0]] + [f"{tmp_path / 'x.npz'}:{i}" for i in range(3)]
    assert names[-1] == cats[1] and len(names) == 4 + 6 + 1
    assert [len(n) for n, _, _ in got] == [4, 4, 3]
    assert [e[0] for e in got[2][2]] == [str(demo / "dogs" / "notes_renamed.jpg")]
    assert (got[0][1][1:] == 7.0).all()
    np.testing.assert_array_equal(got[0][1][0], collect(load_inputs(b.spec, [cats[0]], 1))[1][0])


def test_pipeline_failure_falls_back_to_file_by_file(demo, monkeypatch):
    """Should the pipeline itself fail mid-run (not one file), the files it
    did not deliver are decoded one by one, in batches, in order."""
    import tensorflow as tf

    b = load_data(cfg_of({"source": "image_dir", "path": str(demo), "image_size": [16, 16]}))
    want = list(load_inputs(b.spec, [str(demo)], 3))
    prefetch = tf.data.Dataset.prefetch

    class FailsAfterOne:
        def __init__(self, ds):
            self.ds = ds

        def __iter__(self):
            it = iter(self.ds)
            yield next(it)
            raise tf.errors.UnknownError(None, None, "the pipeline broke")

    monkeypatch.setattr(tf.data.Dataset, "prefetch", lambda self, n: FailsAfterOne(prefetch(self, n)))
    got = list(load_inputs(b.spec, [str(demo)], 3))
    assert [(n, e) for n, _, e in got] == [(n, e) for n, _, e in want]
    for (_, x, _), (_, wx, _) in zip(got, want):
        np.testing.assert_allclose(x, wx, atol=1e-4)
