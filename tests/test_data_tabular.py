"""csv and npz sources: encoding recorded in the spec, labels, errors that
name the column, the line or the arrays."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.config import config_from_dict
from dlcli.data import load_data
from dlcli.errors import ConfigError, DataError

MODEL = {"layers": [{"Dense": {"units": 3, "activation": "softmax"}}]}

CSV = """\
size,colour,weight,label
1.0,red,10,small
2.0,blue,20,large
3.0,red,,large
1.5,green,12,small
2.5,blue,22,large
0.5,green,8,small
1.2,red,11,small
2.8,green,25,large
"""


def cfg_of(data: dict, loss=None) -> object:
    d = {"data": data, "model": MODEL}
    if loss is not None:
        d["compile"] = {"loss": loss}
    return config_from_dict(d)


def csv_cfg(path, **data):
    return cfg_of({"source": "csv", "path": str(path), "target": "label", "validation_split": 0.0,
                   "test_split": 0.25, **{k: v for k, v in data.items() if k != "loss"}}, loss=data.get("loss"))


def everything(b):
    """All rows of every split: x (a dict of raw columns for csv), y."""
    parts = [ds for ds in (b.train, b.val, b.test) if ds is not None]
    pairs = [(a, c.numpy()) for ds in parts for a, c in ds]  # one pass each
    y = np.concatenate([p[1] for p in pairs])
    if isinstance(pairs[0][0], dict):
        x = {k: np.concatenate([p[0][k].numpy() for p in pairs]) for k in pairs[0][0]}
    else:
        x = np.concatenate([p[0].numpy() for p in pairs])
    return x, y


def encoded(b, x):
    """The model input the bundle's FeatureSpace head makes of raw columns."""
    import keras
    import tensorflow as tf

    x_in = keras.Input(b.input_shape)
    inner = keras.Model(x_in, keras.layers.Identity()(x_in))
    return np.asarray(b.attach(inner).predict({k: tf.constant(v) for k, v in x.items()}, verbose=0))


def test_csv_numeric_normalized_categorical_one_hot(tmp_path):
    # Behaviour changed with issue 12: the encoding is a Keras FeatureSpace
    # inside the model (numbers float_normalized, strings string_categorical),
    # so the data yields raw columns and the spec records column types.
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    b = load_data(csv_cfg(path))
    spec = b.spec
    assert spec.features == ["size", "colour", "weight"]
    assert [(c.name, c.type, c.dtype) for c in spec.columns] == [
        ("size", "float_normalized", "float32"), ("colour", "string_categorical", "string"),
        ("weight", "float_normalized", "float32")]
    assert spec.input_kind == "table"
    # size, weight, and colour one-hot over its 3 values plus the
    # out-of-vocabulary slot FeatureSpace keeps for unseen ones.
    assert b.input_shape == (6,)
    assert b.class_names == ["large", "small"]  # sorted
    assert (b.num_train, b.num_test) == (6, 2)
    x, y = everything(b)
    np.testing.assert_allclose(sorted(x["size"][:, 0]), sorted([1.0, 2.0, 3.0, 1.5, 2.5, 0.5, 1.2, 2.8]), rtol=1e-6)
    # The empty weight is filled with the training mean and reported.
    weights = [float(v) for v in x["weight"][:, 0]]
    assert np.isfinite(weights).all() and any("weight" in n and "missing" in n for n in b.notes)
    enc = encoded(b, x)
    assert enc.shape == (8, 6) and np.isfinite(enc).all()
    # Encodings are concatenated in column order: size, colour (one-hot), weight.
    onehot = enc[:, 1:5]
    assert set(np.unique(onehot)) <= {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()
    train_sizes = np.asarray(next(iter(b.train.unbatch().batch(100)))[0]["size"])[:, 0]
    np.testing.assert_allclose(enc[:, 0], (x["size"][:, 0] - train_sizes.mean()) / train_sizes.std(), rtol=1e-3, atol=1e-4)


def test_csv_integer_labels_sort_as_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "".join(f"{i},{[2, 10, 1][i % 3]}\n" for i in range(12)))
    b = load_data(csv_cfg(path))
    assert b.class_names == ["1", "2", "10"]


def test_csv_regression_target_with_regression_loss(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i * 0.5 + 1}\n" for i in range(20)))
    b = load_data(csv_cfg(path, loss="mse"))
    assert b.spec.task == "regression" and b.class_names is None
    _, y = everything(b)
    assert y.dtype == np.float32 and sorted(y.tolist()) == [i * 0.5 + 1 for i in range(20)]


def test_csv_features_subset(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    b = load_data(csv_cfg(path, features=["weight", "size"]))
    assert b.input_shape == (2,) and b.spec.features == ["weight", "size"]
    assert [c.name for c in b.spec.columns] == ["weight", "size"]


def test_csv_missing_target_column_suggests(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "csv", "path": str(path), "target": "lable"}))
    assert err.value.key == "data.target"
    assert "'lable'" in str(err.value) and "did you mean 'label'" in str(err.value)


def test_csv_missing_feature_columns_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    with pytest.raises(ConfigError) as err:
        load_data(csv_cfg(path, features=["size", "colour_", "height"]))
    msg = str(err.value)
    assert err.value.key == "data.features"
    assert "'colour_'" in msg and "'height'" in msg and str(path) in msg and "colour" in msg


def test_csv_word_in_numeric_column_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("2.5,blue", "big,blue"))
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path))
    assert f"{path}:6" in str(err.value) and "'size'" in str(err.value) and "'big'" in str(err.value)


def test_csv_ragged_row_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("0.5,green,8,small", "0.5,green,8"))
    with pytest.raises(DataError) as err:
        load_data(csv_cfg(path))
    assert f"{path}:7" in str(err.value)


def test_npz_arrays_with_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 3
    xt, yt = rng.normal(size=(9, 6)).astype(np.float32), np.arange(9) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt, class_names=np.array(["a", "b", "c"]))
    b = load_data(cfg_of({"source": "npz", "path": str(path), "validation_split": 0.25}))
    assert (b.num_train, b.num_val, b.num_test) == (30, 10, 9)
    assert b.class_names == ["a", "b", "c"] and b.input_shape == (6,)
    test_x = np.concatenate([a.numpy() for a, _ in b.test])
    np.testing.assert_array_equal(test_x, xt)  # used as given, in order


def test_npz_one_hot_y_becomes_indices(tmp_path):
    y = np.eye(3)[np.arange(30) % 3]
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((30, 2, 2)), y=y)
    b = load_data(cfg_of({"source": "npz", "path": str(path)}))
    assert b.num_classes == 3 and b.input_shape == (2, 2)
    assert sorted(b.spec.class_counts) == sorted(np.bincount(np.concatenate(
        [c.numpy() for _, c in b.train]), minlength=3).tolist())


def test_npz_missing_arrays_named_with_what_was_found(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((5, 3)), y=np.zeros(5))
    with pytest.raises(DataError) as err:
        load_data(cfg_of({"source": "npz", "path": str(path)}))
    msg = str(err.value)
    assert "'x'" in msg and "features (5, 3)" in msg and "y (5,)" in msg


def test_npz_length_mismatch(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 3)), y=np.zeros(4))
    with pytest.raises(DataError, match="x has 5 samples but y has 4"):
        load_data(cfg_of({"source": "npz", "path": str(path)}))


def test_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "npz", "path": str(tmp_path / "nope.npz")}))
    assert err.value.key == "data.path" and "does not exist" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "csv", "target": "label"}))
    assert err.value.key == "data.path"
