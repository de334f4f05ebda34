"""Labels shaped for the loss named in `compile.loss`.

Keras resolves the loss (a name, a class name or `{class_name, config}`);
the label format then follows from the loss function Keras returns, so
`sparse_categorical_crossentropy`, `SparseCategoricalCrossentropy` and
`{class_name: SparseCategoricalCrossentropy, config: {from_logits: true}}`
all give the same labels.

Label modes:
    int: class indices, int32, shape (n,)
    onehot: float32 one-hot rows, shape (n, num_classes)
    binary: float32 0/1, shape (n, 1)
    float: float32 targets, shape (n,) or (n, k) (regression)
    ctc: int32 label sequences padded with Keras's mask index (ctc_digits;
        npz / csv / parquet integer arrays, or strings through
        `dlcli.data.vocab`)
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dlcli.data._util import cfg_error

# Keras loss functions (by their public name in keras.losses) grouped by the
# labels they expect. Only the label format needs naming here: Keras itself
# resolves every spelling of the loss to one of these functions.
_LOSS_LABELS = {
    "int": ("sparse_categorical_crossentropy", "circle"),
    "onehot": ("categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge", "kl_divergence"),
    "binary": ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"),
    "ctc": ("ctc",),
}

TASKS = {"int": "classification", "onehot": "classification", "binary": "binary", "float": "regression", "ctc": "ctc"}


def loss_label_mode(loss: Any) -> Optional[str]:
    """Return the label mode a Keras loss expects.

    Args:
        loss: `compile.loss` as written: a name, `{class_name, config}`, or
            `{ClassName: {kwargs}}`.

    Returns:
        "int", "onehot", "binary", "ctc", "float" (every other Keras loss:
        regression-style targets), or None when Keras cannot resolve it (the
        model stage reports a bad loss name; data then uses the source's
        natural labels).
    """
    import keras

    if isinstance(loss, dict) and "class_name" not in loss and len(loss) == 1:
        (name, kwargs), = loss.items()
        loss = {"class_name": name, "config": kwargs or {}}
    try:
        obj = keras.losses.get(loss)
    except Exception:  # noqa: BLE001 - any unresolvable loss: not ours to report
        return None
    fn = getattr(obj, "fn", obj)
    for mode, names in _LOSS_LABELS.items():
        for name in names:
            if fn is getattr(keras.losses, name, None):
                return mode
    if fn is None or not callable(fn):
        return None
    # A Keras loss that is none of the above compares predictions with
    # targets value by value (mse, mae, huber, log_cosh, poisson, ...).
    return "float" if getattr(fn, "__module__", "").startswith("keras") else None


def loss_name(loss: Any) -> str:
    """The loss as the user wrote it, for messages."""
    if isinstance(loss, dict):
        return str(loss.get("class_name", next(iter(loss), "?")))
    return str(loss)


def choose_label_mode(cfg: Any, *, classification: bool, source: str) -> str:
    """Pick the label mode for a source from `compile.loss`.

    Args:
        cfg: the config.
        classification: whether the source's target is a class label.
        source: the source's name, for messages.

    Raises:
        ConfigError: at `compile.loss` when the loss needs class labels and
            the target is continuous, or expects CTC sequences.
    """
    mode = loss_label_mode(cfg.compile.loss)
    name = loss_name(cfg.compile.loss)
    if mode == "ctc":
        raise cfg_error(
            cfg, "compile.loss", f"the CTC loss needs label sequences, but {source} has one label per sample",
            hint="give padded integer label arrays or strings with data.vocabulary (npz, csv, parquet), "
            "use data.source: ctc_digits, or a classification loss",
        )
    if not classification and mode in ("int", "onehot", "binary"):
        raise cfg_error(
            cfg, "compile.loss", f"{name} needs class labels, but {source} has a continuous target",
            hint="use a regression loss such as mse or mae",
        )
    if mode is None:
        return "int" if classification else "float"
    return mode


def encode_labels(cfg: Any, y: np.ndarray, mode: str, num_classes: Optional[int]) -> np.ndarray:
    """Encode class indices (or float targets) in the given label mode.

    Raises:
        ConfigError: at `compile.loss` for a binary loss on more than two
            classes.
    """
    if mode in ("int", "ctc"):
        return np.asarray(y, dtype=np.int32)
    if mode == "onehot":
        return np.eye(num_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    if mode == "binary":
        if num_classes is not None and num_classes > 2:
            raise cfg_error(
                cfg, "compile.loss", f"{loss_name(cfg.compile.loss)} needs two classes, but the data has {num_classes}",
                hint="use sparse_categorical_crossentropy with a softmax output, or keep two classes with data.classes",
            )
        return np.asarray(y, dtype=np.float32).reshape(-1, 1)
    return np.asarray(y, dtype=np.float32)
