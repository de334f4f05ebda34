"""ctc_digits: shapes, the label format Keras 3's CTC loss expects (blank
and padding at index 0, digits at 1..10), disjoint source pools."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.config import config_from_dict
from dlcli.data import load_data
from dlcli.data.ctc import decode_labels
from dlcli.errors import ConfigError


def cfg_of(ctc=None, loss="ctc", **data):
    d = {"source": "ctc_digits", **data}
    if ctc is not None:
        d["ctc"] = ctc
    return config_from_dict({"data": d, "model": {"layers": ["Flatten"]}, "compile": {"loss": loss}})


def split(ds):
    """Inputs and labels of one pass (training data reshuffles each pass)."""
    pairs = [(x.numpy(), y.numpy()) for x, y in ds]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def test_shapes_counts_and_label_encoding():
    b = load_data(cfg_of({"length": 4, "samples": 500}))
    assert b.input_shape == (8, 32, 1)
    assert (b.num_train, b.num_val, b.num_test) == (360, 40, 100)
    spec = b.spec
    assert spec.task == "ctc" and spec.label_mode == "ctc"
    assert spec.blank_index == 0 and spec.mask_index == 0 and spec.label_offset == 1
    assert spec.max_label_length == 4 and spec.num_classes == 11
    assert spec.class_names[0] == "<blank>" and spec.class_names[1:] == [str(i) for i in range(10)]
    x, y = split(b.train)
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.shape == (360, 4)
    assert y.min() >= 1 and y.max() <= 10  # no blank inside a full-length label
    assert x.max() == 16.0
    # Each 8-pixel block shows the digit its label names: compare with the
    # mean image of that digit from scikit-learn.
    from sklearn.datasets import load_digits

    d = load_digits()
    means = np.stack([d.images[d.target == k].mean(axis=0) for k in range(10)])
    blocks = x[:50, :, :, 0].reshape(50, 8, 4, 8).transpose(0, 2, 1, 3)
    nearest = np.abs(blocks[:, :, None] - means[None, None]).sum(axis=(-1, -2)).argmin(-1)
    assert np.mean(nearest == y[:50] - 1) > 0.8


def test_variable_length_labels_are_padded_with_the_mask_index():
    b = load_data(cfg_of({"length": 5, "min_length": 2, "samples": 300, "gap": 3}))
    width = 8 * 5 + 3 * 4
    assert b.input_shape == (8, width, 1)
    x, y = split(b.train)
    lengths = (y != 0).sum(axis=1)
    assert lengths.min() == 2 and lengths.max() == 5
    for row, n in zip(y, lengths):  # digits first, then only padding
        assert (row[:n] > 0).all() and (row[n:] == 0).all()
    assert decode_labels(y[:1], b.spec)[0] == "".join(str(v - 1) for v in y[0] if v)


def test_test_strings_use_digit_images_training_never_saw():
    b = load_data(cfg_of({"length": 3, "samples": 600}))
    blocks = lambda x: {x[i, :, 8 * j: 8 * j + 8, 0].tobytes() for i in range(len(x)) for j in range(3)}  # noqa: E731
    train, test = blocks(split(b.train)[0]), blocks(split(b.test)[0])
    # scikit-learn's digits hold a handful of pixel-identical duplicates.
    assert len(train & test) <= 3
    assert sum(b.spec.source_pools.values()) == 1797


def test_seeded():
    a, b = load_data(cfg_of({"samples": 100})), load_data(cfg_of({"samples": 100}))
    np.testing.assert_array_equal(split(a.test)[1], split(b.test)[1])


def test_labels_fit_keras_ctc_loss_and_decoder():
    """A prediction that spells the label (blank between characters) costs
    almost nothing under keras.losses.CTC, and keras.ops.ctc_decode with
    mask_index 0 gives the digit strings back."""
    import keras

    b = load_data(cfg_of({"length": 4, "min_length": 2, "samples": 100}, sequence=True))
    assert b.input_shape == (32, 8)  # one time step per column
    _, y = split(b.test)
    steps = 2 * y.shape[1] + 1
    logits = np.full((len(y), steps, 11), -10.0, np.float32)
    logits[:, :, 0] = 10.0  # blank everywhere ...
    for i, row in enumerate(y):
        for j, c in enumerate(row[row > 0]):
            logits[i, 2 * j + 1, 0] = -10.0
            logits[i, 2 * j + 1, c] = 10.0  # ... but each label at odd steps
    loss = keras.losses.CTC()(y, logits)
    assert float(loss) < 0.01
    wrong = keras.losses.CTC()(np.roll(y, 1, axis=0), logits)
    assert float(wrong) > 10
    decoded, _ = keras.ops.ctc_decode(logits, np.full(len(y), steps), strategy="greedy", mask_index=0)
    assert decode_labels(np.asarray(decoded[0]), b.spec) == decode_labels(y, b.spec)


def test_ctc_options_and_loss_are_checked():
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"lenght": 4}))
    assert err.value.key == "data.ctc.lenght" and "length" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"length": 3, "min_length": 4}))
    assert err.value.key == "data.ctc.min_length"
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of(loss="sparse_categorical_crossentropy"))
    assert err.value.key == "compile.loss" and "ctc" in str(err.value)


@pytest.mark.slow
def test_a_small_model_learns_to_read_digit_strings():
    import keras

    keras.utils.set_random_seed(0)
    b = load_data(cfg_of({"length": 4, "samples": 3000}, sequence=True, batch_size=64))
    model = keras.Sequential([
        keras.Input(b.input_shape),
        keras.layers.Conv1D(64, 5, padding="same", activation="relu"),
        keras.layers.Conv1D(64, 5, padding="same", activation="relu"),
        keras.layers.Dense(11),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.CTC())
    model.fit(b.train, validation_data=b.val, epochs=6, verbose=0)
    x, y = split(b.test)
    logits = model.predict(x, verbose=0)
    decoded, _ = keras.ops.ctc_decode(logits, np.full(len(x), logits.shape[1]), strategy="greedy", mask_index=0)
    predicted = decode_labels(np.asarray(decoded[0]), b.spec)
    truth = decode_labels(y, b.spec)
    assert np.mean([p == t for p, t in zip(predicted, truth)]) > 0.6  # whole strings right
