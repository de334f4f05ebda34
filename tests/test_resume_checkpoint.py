"""The checkpoint format on its own: what a resumed run gets back."""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

keras = pytest.importorskip("keras")

from dlcli.errors import RunError  # noqa: E402
from dlcli.training import checkpoint as ckpt  # noqa: E402


def _model(units: int = 3, dropout: float = 0.5):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(dropout), keras.layers.Dense(units)]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _train_a_little(model, steps: int = 3):
    x = np.linspace(0, 1, 32, dtype="float32").reshape(8, 4)
    y = np.ones((8, model.output_shape[-1]), "float32")
    model.fit(x, y, epochs=steps, batch_size=4, verbose=0)


def test_rng_state_round_trips_without_pickle():
    random.seed(3)
    np.random.seed(3)
    saved = ckpt.capture_rng()
    text = json.dumps(saved)  # plain JSON, nothing executable
    expected = (random.random(), np.random.rand())
    random.seed(99)
    np.random.seed(99)
    ckpt.restore_rng(json.loads(text))
    assert (random.random(), np.random.rand()) == expected


def test_weights_optimizer_and_dropout_rng_come_back(tmp_path):
    keras.utils.set_random_seed(1)
    model = _model()
    _train_a_little(model)
    state = ckpt.TrainState(epoch=3)
    ckpt.save(tmp_path, model, state)

    keras.utils.set_random_seed(2)  # a different process would start elsewhere
    other = _model()
    ckpt.restore(tmp_path, other, ckpt.read_state(tmp_path))

    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(other.optimizer.iterations.numpy()) == 6
    # Keras weight files leave the dropout SeedGenerator out; the state
    # keeps it, so both models now draw the same masks.
    x = np.ones((5, 4), "float32")
    np.testing.assert_array_equal(model(x, training=True).numpy(), other(x, training=True).numpy())


def test_checkpoint_files_are_replaced_not_accumulated(tmp_path):
    model = _model()
    for epoch in (1, 2, 3):
        state = ckpt.TrainState(epoch=epoch)
        state.best_file = ckpt.save_best(tmp_path, model, epoch)
        ckpt.save(tmp_path, model, state)
    # A killed write leaves a temporary file; the next checkpoint removes it.
    (tmp_path / "checkpoints" / ".epoch-0004.weights.x1y2.weights.h5").write_bytes(b"half")
    ckpt.save(tmp_path, model, ckpt.TrainState(epoch=4, best_file="best-epoch-0003.weights.h5"))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best-epoch-0003.weights.h5", "epoch-0004.weights.h5", "state.json"]


def test_callback_state_keeps_progress_but_not_options():
    model = _model()
    saved_cb = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    saved_cb.set_model(model)
    saved_cb.on_train_begin()
    baseline = ckpt.callback_baseline(saved_cb)
    saved_cb.wait, saved_cb.best, saved_cb.best_epoch = 2, 0.25, 4
    saved_cb.best_weights = model.get_weights()

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        state = ckpt.TrainState(epoch=5)
        ckpt.save(Path(d), model, state, callbacks=[(saved_cb, baseline)])
        state = ckpt.read_state(Path(d))
        arrays = ckpt.load_callback_arrays(Path(d), state)

    # On resume the user raised the patience with --set: that stays.
    resumed = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    resumed.set_model(model)
    resumed.on_train_begin()
    ckpt.restore_callback_state([resumed], state.callbacks, arrays)
    assert (resumed.wait, resumed.best, resumed.best_epoch, resumed.patience) == (2, 0.25, 4, 10)
    for a, b in zip(resumed.best_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_state_json_holds_nan_and_inf(tmp_path):
    state = ckpt.TrainState(epoch=2, history={"epoch": [1, 2], "val_loss": [float("nan"), 0.5]})
    cb = keras.callbacks.ReduceLROnPlateau()
    cb.on_train_begin()
    baseline = {"best": 0.0}  # so that inf counts as changed
    cb.best = float("inf")
    ckpt.save(tmp_path, _model(), state, callbacks=[(cb, baseline)])
    text = (tmp_path / "checkpoints" / "state.json").read_text()
    json.loads(text)  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    back = ckpt.read_state(tmp_path)
    assert math.isnan(back.history["val_loss"][0]) and back.history["val_loss"][1] == 0.5
    fresh = keras.callbacks.ReduceLROnPlateau()
    fresh.on_train_begin()
    ckpt.restore_callback_state([fresh], back.callbacks, {})
    assert fresh.best == float("inf")


@pytest.mark.parametrize("text", ['{"epoch": 1, ', "[]", "\x00\x01"])
def test_unreadable_state_is_a_run_error(tmp_path, text):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.json").write_text(text)
    with pytest.raises(RunError, match="state.json"):
        ckpt.read_state(tmp_path)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    ckpt.save(tmp_path, _model(units=3), ckpt.TrainState(epoch=1))
    with pytest.raises(RunError, match="does not fit"):
        ckpt.restore(tmp_path, _model(units=5), ckpt.read_state(tmp_path))
