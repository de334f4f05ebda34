"""CTC (connectionist temporal classification) support.

Label format, as Keras 3 defines it (`keras.losses.ctc` in
keras/src/losses/losses.py): `y_true` is an int tensor `(batch,
max_label_length)` of class indices, padded with 0; index 0 is both the
padding value and the CTC blank (`mask_index = 0`, passed to
`tf.nn.ctc_loss(blank_index=0)`), so real classes are 1..K and a label's
length is its count of non-zero entries. `y_pred` holds logits `(batch,
time_steps, K + 1)` (column 0 the blank), not softmax probabilities: the
loss applies log-softmax itself.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

# keras.losses.ctc hard-codes mask_index = 0: the blank class and the label
# padding value are both 0.
BLANK_INDEX = 0
PAD_VALUE = 0


def ctc_loss() -> keras.losses.Loss:
    """Return Keras's CTC loss (labels padded with 0, blank class 0)."""
    return keras.losses.CTC()


def ctc_greedy_decode(y_pred: Any, blank_index: int = BLANK_INDEX) -> list[list[int]]:
    """Greedy (best path) CTC decoding in NumPy.

    Takes the most likely class at every time step, merges repeats, then
    drops blanks: `[0, 3, 3, 0, 3, 5, 5]` decodes to `[3, 3, 5]`.

    Args:
        y_pred: logits or probabilities, shape (batch, time_steps, classes).
        blank_index: the blank class (Keras: 0).

    Returns:
        One list of class indices per sample.
    """
    best = np.argmax(np.asarray(y_pred), axis=-1)
    if best.ndim != 2:
        raise ValueError(f"expected (batch, time_steps, classes) predictions, got shape {np.shape(y_pred)}")
    out = []
    for row in best:
        keep = np.ones(row.shape, dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != blank_index
        out.append(row[keep].astype(int).tolist())
    return out


def ctc_sequence_match(y_true: Any, y_pred: Any) -> Any:
    """Per sample: 1.0 where greedy decoding equals the label sequence, else 0.0.

    Built from keras.ops only, so it runs inside the compiled train and test
    steps: the decoded symbols are packed to the left by scattering each
    kept time step to its rank among kept steps (a one-hot over positions),
    then compared with the 0-padded label.

    Args:
        y_true: (batch, max_label_length) labels, 0-padded, classes 1..K.
        y_pred: (batch, time_steps, K + 1) logits.

    Returns:
        A float tensor of shape (batch,).
    """
    y_true = ops.cast(y_true, "int32")
    best = ops.cast(ops.argmax(y_pred, axis=-1), "int32")  # (batch, time)
    prev = ops.pad(best[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    keep = ops.logical_and(ops.not_equal(best, prev), ops.not_equal(best, BLANK_INDEX))
    keep_i = ops.cast(keep, "int32")
    position = ops.cumsum(keep_i, axis=1) - 1
    # Dropped steps go to position -1, which one_hot maps to all zeros;
    # steps beyond the label length fall outside the one-hot and vanish, but
    # then the lengths differ and the sample counts as wrong anyway.
    position = ops.where(keep, position, -1)
    max_len = ops.shape(y_true)[1]
    slots = ops.one_hot(position, max_len, dtype="int32")  # (batch, time, max_len)
    decoded = ops.sum(slots * ops.expand_dims(best, -1), axis=1)  # (batch, max_len)
    label = ops.where(ops.equal(y_true, PAD_VALUE), 0, y_true)
    same_symbols = ops.all(ops.equal(decoded, label), axis=1)
    same_length = ops.equal(ops.sum(keep_i, axis=1), ops.sum(ops.cast(ops.not_equal(y_true, PAD_VALUE), "int32"), axis=1))
    return ops.cast(ops.logical_and(same_symbols, same_length), "float32")


@keras.saving.register_keras_serializable(package="dlcli")
class CTCSequenceAccuracy(keras.metrics.MeanMetricWrapper):
    """Fraction of samples whose greedy CTC decoding equals the label exactly.

    Use by name in a config: `metrics: [ctc_sequence_accuracy]`.

    Args:
        name: the metric's name in logs and history.
        dtype: the metric's dtype.
    """

    def __init__(self, name: str = "ctc_sequence_accuracy", dtype: Any = None) -> None:
        super().__init__(fn=ctc_sequence_match, name=name, dtype=dtype)
        # Higher is better: lets callbacks pick the direction on their own.
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}
