"""A model's layers and parameter counts as plain data (for `dlcli summary`)."""

from __future__ import annotations

from typing import Any

import keras


def _shape(value: Any) -> Any:
    """A KerasTensor's shape as a JSON-ready list (None for any size)."""
    if isinstance(value, (list, tuple)):
        shapes = [_shape(v) for v in value]
        return shapes[0] if len(shapes) == 1 else shapes
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    shape = getattr(value, "shape", None)
    return None if shape is None else [None if d is None else int(d) for d in shape]


def _count(weights: list[Any]) -> int:
    # A weight shared by two layers counts once, as in Keras's own summary.
    seen: dict[int, int] = {}
    for w in weights:
        seen[id(w)] = _size(w.shape)
    return sum(seen.values())


def _size(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def summarize(model: keras.Model) -> dict[str, Any]:
    """Describe a built model's layers and parameters.

    Args:
        model: a built Keras model.

    Returns:
        `{"name", "layers": [{"name", "class_name", "output_shape",
        "params"}], "total_params", "trainable_params",
        "non_trainable_params"}`; a nested model (a Backbone) is one row.
    """
    layers = []
    for layer in model.layers:
        try:
            output_shape = _shape(layer.output)
        except (AttributeError, ValueError):
            output_shape = None
        layers.append({
            "name": layer.name,
            "class_name": type(layer).__name__,
            "output_shape": output_shape,
            "params": _count(layer.weights),
        })
    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    return {
        "name": model.name,
        "layers": layers,
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
    }
