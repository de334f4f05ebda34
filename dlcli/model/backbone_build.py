"""Building a `Backbone` entry: a Keras application or a dlcli run's model.

Weights:
- `imagenet`: through Keras's own download and cache
  (`dlcli.model.backbone_weights`).
- `none`: random initialisation.
- a `.h5` / `.weights.h5` file: loaded by Keras into the application.
- a dlcli run folder or `.keras` file: that model cut before its head (see
  `cut_before_head`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import keras

from dlcli.model._common import cfg_error, did_you_mean, short_message
from dlcli.model.backbone_weights import keras_weights_cache
from dlcli.model.backbones import BACKBONE_ARGS, BackboneInfo, BackbonePreprocess, backbone_names, backbone_registry, find_info

# Application arguments the Backbone entry sets itself.
_RESERVED_APP_ARGS = {"include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation", "name"}


def apply_backbone(x: Any, kwargs: dict[str, Any], *, cfg: Any, key: str) -> Any:
    """Build the layers of a `Backbone` entry and call them on `x`.

    Args:
        x: the incoming KerasTensor (images, channels last).
        kwargs: the entry's arguments: name, weights (imagenet | none |
            a .h5/.weights.h5 file | a dlcli run folder or .keras file),
            trainable (default: false for pretrained weights, true for
            none), pooling (null | avg | max), preprocess (default true),
            fine_tune_at (layer index or name from which layers train), and
            any further argument of the Keras application (`alpha`, ...).
        cfg: the Config, for errors.
        key: the entry's key path.

    Returns:
        The backbone's output tensor.

    Raises:
        ConfigError: located at `key`: unknown backbone (with a suggestion),
            bad arguments, input the application refuses.
        DataError: ImageNet weights not cached and not downloadable.
    """
    kwargs = dict(kwargs)
    weights = kwargs.pop("weights", "imagenet")
    if isinstance(weights, str) and weights.lower() in {"none", "null", "random", ""}:
        weights = None
    pretrained = weights is not None
    trainable = kwargs.pop("trainable", not pretrained)
    fine_tune_at = kwargs.pop("fine_tune_at", None)
    preprocess = kwargs.pop("preprocess", True)
    pooling = kwargs.pop("pooling", None)
    if pooling not in (None, "avg", "max"):
        raise cfg_error(cfg, key, f"Backbone pooling must be null, avg or max, got {pooling!r}")
    name = kwargs.pop("name", None)

    if isinstance(weights, str) and weights != "imagenet" and not _is_weights_file(weights):
        backbone = backbone_from_run(weights, x.shape[1:], cfg=cfg, key=key)
        if pooling:
            raise cfg_error(cfg, key, "Backbone pooling applies to keras.applications backbones, not to a run's model",
                            hint="add a GlobalAveragePooling2D layer after the Backbone")
        if kwargs:
            raise cfg_error(cfg, key, f"Backbone from a run takes no argument '{next(iter(kwargs))}'")
        _set_trainable(backbone, trainable, fine_tune_at, cfg=cfg, key=key)
        return backbone(x, training=False)

    if name is None:
        raise cfg_error(cfg, key, "Backbone needs a name", hint="e.g. Backbone: {name: mobilenet_v2}; `dlcli backbones` lists them")
    info = find_info(str(name))
    if info is None:
        raise cfg_error(cfg, key, f"unknown backbone '{name}'",
                        hint=did_you_mean(name, backbone_names() + [i.keras_name for i in backbone_registry().values()])
                        or "`dlcli backbones` lists them")
    _check_app_kwargs(info, kwargs, cfg=cfg, key=key)

    shape = tuple(x.shape[1:])
    if len(shape) != 3:
        raise cfg_error(cfg, key, f"Backbone {info.name} takes images (height, width, channels), got input shape {shape}",
                        hint="use image data (data.source: image_dir, mnist, cifar10, ...)")
    if preprocess:
        x = BackbonePreprocess(info.module, to_rgb=shape[-1] == 1, name=f"{info.name}_preprocess")(x)
        shape = tuple(x.shape[1:])
    app_weights = _weights_arg(weights)
    try:
        with keras_weights_cache(info.name):
            backbone = info.fn(include_top=False, weights=app_weights, input_shape=shape, pooling=pooling, **kwargs)
    except (ValueError, TypeError) as exc:
        raise cfg_error(cfg, key, f"Backbone {info.name}: {short_message(exc)}", hint=_shape_hint(exc, shape)) from None
    _set_trainable(backbone, trainable, fine_tune_at, cfg=cfg, key=key)
    if not pretrained:
        _quick_batchnorm(backbone)
    # Pretrained BatchNormalization statistics stay frozen even when the
    # backbone is unfrozen for fine-tuning (the Keras transfer-learning guide).
    return backbone(x, training=False) if pretrained else backbone(x)


# BatchNormalization momentum for a backbone trained from random weights.
# The applications use 0.99-0.999 (ImageNet-length training): after a few
# hundred steps their moving statistics are still near the initial ones,
# so validation (inference mode) sits at chance while training learns.
SCRATCH_BN_MOMENTUM = 0.9


def _quick_batchnorm(backbone: keras.Model) -> None:
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, SCRATCH_BN_MOMENTUM)


def _check_app_kwargs(info: BackboneInfo, kwargs: dict[str, Any], *, cfg: Any, key: str) -> None:
    params = inspect.signature(info.fn).parameters
    extra = [p for p in params if p not in _RESERVED_APP_ARGS]
    for arg in kwargs:
        if arg not in extra:
            valid = list(BACKBONE_ARGS) + extra
            raise cfg_error(cfg, key, f"Backbone {info.name} has no argument '{arg}'",
                            hint=did_you_mean(arg, valid) or f"its arguments are: {', '.join(valid)}")


def _is_weights_file(weights: str) -> bool:
    return weights.endswith(".h5") or weights.endswith(".hdf5")


def _weights_arg(weights: Any) -> Any:
    if weights is None or weights == "imagenet":
        return weights
    path = Path(weights).expanduser()
    return str(path)


def _shape_hint(exc: BaseException, shape: tuple) -> Optional[str]:
    text = str(exc)
    if "at least" in text or "Input size" in text:
        return "set data.image_size to a larger size"
    if "3 channels" in text or "channels" in text:
        return "set data.color_mode: rgb, or keep preprocess: true to repeat the gray channel"
    if "weights" in text and ("file" in text or "path" in text):
        return "weights is imagenet, none, a .h5/.weights.h5 file or a dlcli run folder"
    return None


def _set_trainable(backbone: keras.Model, trainable: Any, fine_tune_at: Any, *, cfg: Any, key: str) -> None:
    """Freeze the backbone, or train it from layer `fine_tune_at` on."""
    if not isinstance(trainable, bool):
        raise cfg_error(cfg, key, f"Backbone trainable must be true or false, got {trainable!r}")
    backbone.trainable = bool(trainable) or fine_tune_at is not None
    if fine_tune_at is None:
        return
    layers = backbone.layers
    if isinstance(fine_tune_at, bool) or not isinstance(fine_tune_at, (int, str)):
        raise cfg_error(cfg, key, f"fine_tune_at must be a layer index or name, got {fine_tune_at!r}")
    if isinstance(fine_tune_at, str):
        names = [layer.name for layer in layers]
        if fine_tune_at not in names:
            raise cfg_error(cfg, key, f"the backbone has no layer '{fine_tune_at}'", hint=did_you_mean(fine_tune_at, names))
        start = names.index(fine_tune_at)
    else:
        if not -len(layers) <= fine_tune_at < len(layers):
            raise cfg_error(cfg, key, f"fine_tune_at {fine_tune_at} is outside the backbone's {len(layers)} layers")
        start = fine_tune_at % len(layers)
    for layer in layers[:start]:
        layer.trainable = False


# ---------------------------------------------------------------------------
# A dlcli model as a backbone


def cut_before_head(model: keras.Model) -> keras.Model:
    """Return `model` without its classifier head, as a Functional model.

    The rule: find the model's last Dense layer (its head). The backbone is
    the model up to and including the last layer before that head whose
    output has more than two axes (feature maps or sequences: the layer
    before Flatten / global pooling); a model with no such layer (vector
    data, an MLP) keeps everything up to its second-to-last Dense layer.

    Args:
        model: a single-input model trained by dlcli.

    Returns:
        A Functional model sharing `model`'s layers and weights, named
        `<model name>_backbone`.

    Raises:
        ValueError: the model has several inputs, no Dense head, or nothing
            left before it.
    """
    if len(model.inputs) != 1:
        raise ValueError(f"model '{model.name}' has {len(model.inputs)} inputs; a backbone needs one")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"model '{model.name}' has no Dense head to cut")
    head = dense[-1]
    cut = None
    for layer in layers[:head]:
        if len(_single_output(layer).shape) > 2:
            cut = layer
    if cut is None:
        if len(dense) < 2:
            raise ValueError(f"model '{model.name}' has nothing before its head (one Dense layer, no feature maps)")
        cut = layers[dense[-2]]
    return keras.Model(model.inputs[0], _single_output(cut), name=f"{model.name}_backbone")


def _single_output(layer: Any) -> Any:
    out = layer.output
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError(f"layer '{layer.name}' has several outputs")
        out = out[0]
    return out


def backbone_from_run(path: str, input_shape: tuple, *, cfg: Any, key: str) -> keras.Model:
    """Load a dlcli run's model (safe mode), cut before its head, on a new input shape.

    Args:
        path: a run folder, a run name folder (the latest run) or a .keras file.
        input_shape: the new data's sample shape.
        cfg: the Config, for errors.
        key: the entry's key path.

    Returns:
        A Functional model taking `input_shape`, sharing the run's weights.

    Raises:
        ConfigError: the path holds no model, or its model cannot serve as
            a backbone for this input.
    """
    from dlcli.errors import RunError
    from dlcli.model.io import load_model
    from dlcli.runs import resolve_run

    try:
        run = resolve_run(path)
    except RunError as exc:
        raise cfg_error(cfg, key, f"Backbone weights: {exc.message}",
                        hint="weights is imagenet, none, a .h5/.weights.h5 file, or a dlcli run folder / .keras file") from None
    try:
        model = load_model(run.model_path, compile=False)
    except RunError as exc:
        raise cfg_error(cfg, key, f"Backbone weights: {exc}") from None
    try:
        sub = cut_before_head(model)
    except ValueError as exc:
        raise cfg_error(cfg, key, f"Backbone from {run.model_path}: {exc}") from None
    if tuple(sub.input_shape[1:]) == tuple(input_shape):
        return sub
    # Re-run the same layers on an input of the new shape (they keep their
    # weights): convolutions and pooling do not care about the spatial size.
    new_input = keras.Input(shape=tuple(input_shape), name=f"{sub.name}_input")
    try:
        return keras.models.clone_model(sub, input_tensors=new_input, clone_function=lambda layer: layer)
    except Exception as exc:  # noqa: BLE001 - Keras raises several types for shape mismatches
        raise cfg_error(
            cfg, key,
            f"the model in {run.model_path} was trained on inputs {tuple(sub.input_shape[1:])} "
            f"and cannot take {tuple(input_shape)}: {short_message(exc, 200)}",
            hint="use data of the same number of channels (data.color_mode) as that run",
        ) from None
