"""Adapt a model's preprocessing layers on the training split before fit.

Every Keras layer with an `adapt` method (Normalization, TextVectorization,
StringLookup, IntegerLookup, Discretization, or a user's own) whose state
the config does not give (`mean`/`variance`, `vocabulary`,
`bin_boundaries`) learns it here, as Keras's own examples do with
`layer.adapt(x_train)`, with one difference: a layer deep in the model
adapts on exactly the values that reach it, so the training inputs are run
through the sub-model that feeds it (with `training=False`). Layers adapt in
the model's topological order, so a layer fed by another preprocessing
layer sees that layer's adapted output. The training split is read in its
stored order, without shuffling or augmentation, so the result is the same
in every run (and a resumed run re-adapts to the same state before its
weights are restored). The adapted state is part of the model: variables
(Normalization, Discretization) or vocabularies saved in model.keras.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import keras

from dlcli.errors import DataError

# Batch size for the fallback that wraps `DataBundle.representative`.
_BATCH = 256


def state_given(layer: Any) -> bool:
    """Whether the layer's adaptable state came from its arguments.

    Lookup layers and TextVectorization record whether a `vocabulary` was
    passed; Normalization keeps the `mean` it was given; Discretization its
    `bin_boundaries`. A layer of another class with `adapt` is adapted
    unless it says it is (`is_adapted`). A layer the data source adapted
    (`dlcli_adapted`) keeps that state.
    """
    if getattr(layer, "dlcli_adapted", False):  # adapted by the data source (a FeatureSpace's layers)
        return True
    if hasattr(layer, "_has_input_vocabulary"):
        return bool(layer._has_input_vocabulary)
    if isinstance(layer, keras.layers.Normalization):
        return layer.input_mean is not None
    if isinstance(layer, keras.layers.Discretization):
        return getattr(layer, "bin_boundaries", None) is not None and getattr(layer, "num_bins", None) is None
    return bool(getattr(layer, "is_adapted", False))


def needs_adapt(layer: Any) -> bool:
    """A layer with `adapt` whose state the config does not give."""
    return callable(getattr(layer, "adapt", None)) and not isinstance(layer, keras.Model) and not state_given(layer)


def adaptable_layers(model: keras.Model) -> list[str]:
    """Names of the layers `adapt_model` would adapt, in order."""
    return [layer.name for layer, _ in _targets(model, None)]


def adapt_model(model: keras.Model, bundle: Any) -> list[str]:
    """Adapt every preprocessing layer of `model` that needs it.

    Args:
        model: the built (compiled or not) model.
        bundle: the DataBundle; its `adapt_data()` (or, for a source
            without it, `representative(num_train)`) gives the training
            inputs in a fixed order.

    Returns:
        The names of the adapted layers (also noted in `bundle.notes`).

    Raises:
        DataError: a layer cannot adapt on the values that reach it.
    """
    adapted = []
    data: Optional[Any] = None
    for layer, feed in _targets(model, None):
        if data is None:
            data = _training_inputs(bundle)
        # The map is built (and traced) only now, after the layers before
        # this one adapted: a lookup layer replaces its table on adapt.
        values = data if feed is None else data.map(feed)
        try:
            layer.adapt(values)
        except (ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"layer '{layer.name}' ({type(layer).__name__}) cannot adapt on the training data: {first}") from None
        adapted.append(layer.name)
    if adapted:
        bundle.notes.append(f"adapted {', '.join(adapted)} on the {bundle.num_train} training samples")
    return adapted


def _training_inputs(bundle: Any) -> Any:
    """Batched training inputs (no labels), stored order, no augmentation."""
    make = getattr(bundle, "adapt_data", None)
    if make is not None:
        return make()
    import tensorflow as tf

    x = bundle.representative(bundle.num_train)
    return tf.data.Dataset.from_tensor_slices(x).batch(_BATCH)


def _targets(model: keras.Model, feed: Optional[Callable]) -> Iterator[tuple[Any, Optional[Callable]]]:
    """Yield `(layer, feed)` for each layer to adapt, in topological order.

    `feed` maps a batch of the model's inputs to what reaches the layer
    (None: the inputs themselves); nested models are walked through.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            # Build a feeder only for a nested model that has something to
            # adapt: a frozen backbone has nothing, and its internal names
            # may clash with the outer model's.
            if getattr(layer, "inputs", None) and _has_adaptable(layer):
                yield from _targets(layer, _compose(feed, _feeder(model, layer)))
        elif needs_adapt(layer):
            yield layer, _compose(feed, _feeder(model, layer))


def _has_adaptable(model: keras.Model) -> bool:
    return any(_has_adaptable(l) if isinstance(l, keras.Model) else needs_adapt(l) for l in model.layers)


def _feeder(model: keras.Model, layer: Any) -> Optional[Callable]:
    """The sub-model from `model`'s inputs to `layer`'s input, or None when
    the layer takes the model's input as it is."""
    inputs = list(model.inputs)
    target = layer.input
    picked = [i for i, t in enumerate(inputs) if t is target]
    if picked and len(inputs) == 1:
        return None
    if picked:
        # A named model input straight into the layer: pick it from the batch.
        i, name = picked[0], inputs[picked[0]].name
        return lambda x: x[name] if isinstance(x, dict) else x[i]
    sub = keras.Model(inputs, target, name=f"feed_{layer.name}")
    return lambda x: sub(x, training=False)


def _compose(outer: Optional[Callable], inner: Optional[Callable]) -> Optional[Callable]:
    if outer is None:
        return inner
    if inner is None:
        return outer
    return lambda x: inner(outer(x))
