"""CTC: label format, greedy decoding, the sequence-accuracy metric, training."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlcli.config import config_from_dict  # noqa: E402
from dlcli.model import BLANK_INDEX, PAD_VALUE, build_model, compile_model, ctc_greedy_decode  # noqa: E402
from dlcli.model.ctc import CTCSequenceAccuracy, ctc_sequence_match  # noqa: E402


def logits_for(paths, classes=4):
    """Logits whose argmax at each step is the given path (one row per sample)."""
    out = np.full((len(paths), len(paths[0]), classes), -5.0, dtype="float32")
    for i, path in enumerate(paths):
        for t, c in enumerate(path):
            out[i, t, c] = 5.0
    return out


def test_keras_ctc_uses_zero_as_blank_and_padding():
    assert BLANK_INDEX == 0 and PAD_VALUE == 0
    # A label padded with 0 has the loss of the unpadded label: Keras counts
    # a label's length as its non-zero entries.
    y_pred = logits_for([[0, 1, 0, 2, 2, 0]])
    loss = keras.losses.CTC(reduction=None)
    short = float(loss(np.array([[1, 2]]), y_pred)[0])
    padded = float(loss(np.array([[1, 2, 0, 0]]), y_pred)[0])
    assert np.isclose(short, padded)
    assert short < 0.1  # the path spells exactly 1, 2
    assert float(loss(np.array([[2, 1]]), y_pred)[0]) > 5.0


def test_greedy_decode_merges_repeats_then_drops_blanks():
    y_pred = logits_for([[0, 3, 3, 0, 3, 1, 1], [0, 0, 0, 0, 0, 0, 0], [2, 2, 2, 2, 2, 2, 2]])
    assert ctc_greedy_decode(y_pred) == [[3, 3, 1], [], [2]]


def test_sequence_match_counts_exact_sequences_only():
    y_true = np.array([[3, 3, 1, 0], [1, 2, 0, 0], [2, 0, 0, 0], [1, 2, 3, 0]])
    y_pred = logits_for([
        [0, 3, 3, 0, 3, 1, 1],   # 3 3 1: right
        [1, 1, 0, 2, 2, 2, 2],   # 1 2: right
        [2, 0, 2, 0, 0, 0, 0],   # 2 2: one too many
        [1, 2, 0, 0, 0, 0, 0],   # 1 2: one short
    ])
    got = keras.ops.convert_to_numpy(ctc_sequence_match(y_true, y_pred))
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0, 0.0])
    metric = CTCSequenceAccuracy()
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == 0.5


def synthetic_sequences(n, steps=16, seed=0):
    """Frames of noisy one-hot symbols 1..3 separated by silent frames; labels
    are the symbol sequences, 0-padded to length 3 (Keras's CTC format)."""
    rng = np.random.RandomState(seed)
    x = rng.normal(0.0, 0.1, (n, steps, 4)).astype("float32")
    y = np.zeros((n, 3), dtype="int32")
    for i in range(n):
        length = rng.randint(1, 4)
        symbols = rng.randint(1, 4, length)
        y[i, :length] = symbols
        t = rng.randint(0, 2)
        for s in symbols:
            span = rng.randint(2, 4)
            x[i, t:t + span, s] += 1.0
            t += span + rng.randint(1, 3)
    x[:, :, 0] += (x[:, :, 1:].max(axis=-1) < 0.5)  # channel 0: silence
    return x, y


@pytest.mark.slow
def test_conv_recurrent_model_learns_with_ctc():
    # Measured: loss 14.7 -> 0.24 and sequence accuracy 0.05 -> 0.90 (~20 s on 2 CPUs).
    cfg = config_from_dict({
        "name": "ctc_toy",
        "seed": 1,
        "data": {"source": "ctc_digits"},
        "model": {"layers": [
            {"Conv1D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"Bidirectional": {"layer": {"GRU": {"units": 16, "return_sequences": True}}}},
            {"Dense": {"units": 4}},  # blank + 3 symbols, logits
        ]},
        "compile": {"loss": "ctc", "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}},
                    "metrics": ["ctc_sequence_accuracy"]},
    })
    keras.utils.set_random_seed(1)
    x, y = synthetic_sequences(384)
    model = build_model(cfg, x.shape[1:])
    compile_model(model, cfg)
    first = model.evaluate(x, y, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0).history
    last = model.evaluate(x, y, verbose=0, return_dict=True)
    assert last["loss"] < 0.3 * first["loss"], (first, history["loss"], last)
    assert last["ctc_sequence_accuracy"] > first["ctc_sequence_accuracy"] + 0.3
    decoded = ctc_greedy_decode(model.predict(x[:64], verbose=0))
    labels = [[int(v) for v in row if v != PAD_VALUE] for row in y[:64]]
    exact = np.mean([d == t for d, t in zip(decoded, labels)])
    assert abs(exact - float(ctc_sequence_match(y[:64], model.predict(x[:64], verbose=0)).numpy().mean())) < 1e-6


def test_compiled_ctc_model_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.compile(optimizer="adam", loss=keras.losses.CTC(), metrics=[CTCSequenceAccuracy()], jit_compile=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.loss, keras.losses.CTC)
    x, y = np.random.RandomState(0).rand(8, 6, 3).astype("float32"), np.array([[1, 2]] * 8)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert set(got) == {"loss", "ctc_sequence_accuracy"}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
