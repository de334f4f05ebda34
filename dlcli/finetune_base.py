"""What `dlcli finetune --base` names, resolved: a keras.applications
backbone or a dlcli run / .keras file, the head for the classes found, and
the option values (`--unfreeze`, `--weights`) the config takes from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dlcli.errors import ConfigError, DataError, RunError

PathLike = Union[str, Path]
# The head's dropout before its last Dense layer.
DROPOUT_RATE = 0.2


@dataclass
class BaseModel:
    """What `--base` names, as needed to write the config.

    Attributes:
        kind: `application` (a keras.applications model) or `run` (a dlcli
            run folder or `.keras` file).
        label: a short name for the run name (`mobilenet`, `cnn_digits`).
        backbone: the Backbone entry's arguments `--base` decides.
        image_size: the input size (height, width) it expects by default.
        channels: input channels (3, or 1 for a grayscale run), or None.
        output_rank: the rank of the backbone's output with the batch axis
            (4 for feature maps, 3 for sequences, 2 for vectors).
        reduce: the layer that turns feature maps into a vector in the
            head (default: global average pooling).
    """

    kind: str
    label: str
    backbone: dict[str, Any]
    image_size: Optional[tuple[int, int]]
    channels: Optional[int]
    output_rank: int = 4
    reduce: Optional[str] = None


def parse_unfreeze(value: Union[str, int, float]) -> Union[int, float]:
    """Read `--unfreeze`: a number of top backbone layers, or a fraction.

    Args:
        value: `"20"` (layers) or `"0.3"` (a fraction of the layers).

    Returns:
        An int >= 1, or a float in (0, 1].

    Raises:
        ConfigError: anything else.
    """
    text = str(value).strip()
    try:
        number: Union[int, float] = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"expected a number of layers (20) or a fraction (0.3), got {text!r}", key="--unfreeze") from None
    if isinstance(number, int) and number < 1:
        raise ConfigError(f"the number of layers to unfreeze must be at least 1, got {number}", key="--unfreeze")
    if isinstance(number, float) and not (0.0 < number <= 1.0 and math.isfinite(number)):
        raise ConfigError(f"a fraction of layers must be in (0, 1], got {text}", key="--unfreeze",
                          hint="or give a whole number of layers, e.g. 20")
    return number


def count_classes(data_dir: PathLike) -> list[str]:
    """List the class folders of an image folder, without reading images.

    The same listing `image_dir` uses: one sub-folder per class, or
    `train/` (+ `val/`, `test/`) holding class folders.

    Raises:
        DataError: the folder is missing, not a folder, or has fewer than
            two class folders.
    """
    from dlcli.data.images import list_image_folder

    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist", hint="pass an image folder with one sub-folder per class, or make one with `dlcli demo-data`")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", hint="DATA_DIR is a folder with one sub-folder of images per class")
    return list(list_image_folder(root).class_names)


def resolve_base(base: str, weights: Optional[str] = None) -> BaseModel:
    """Work out what `--base` names: a keras.applications model or a run.

    Args:
        base: a backbone name (`mobilenet`, `MobileNetV2`, see `dlcli
            backbones`), a dlcli run folder (or a run name folder, whose
            latest run is taken) or a `.keras` file.
        weights: `--weights` (imagenet | none | a .h5 weights file); only
            for a keras.applications backbone.

    Returns:
        A BaseModel.

    Raises:
        ConfigError: an unknown backbone name (with a suggestion), or
            `--weights` given with a run.
        RunError: a path that holds no usable model.
    """
    text = str(base).strip()
    path = Path(text).expanduser()
    looks_like_path = path.exists() or text.endswith(".keras") or "/" in text or "\\" in text
    if looks_like_path:
        if weights is not None:
            raise ConfigError("--weights applies to a keras.applications backbone; a run brings its own weights",
                              key="--weights", hint=f"drop --weights, or use --base NAME --weights {text}")
        return _run_base(text)

    from dlcli.model.backbones import backbone_names, default_size, find_info
    from dlcli.model._common import did_you_mean

    info = find_info(text)
    if info is None:
        raise ConfigError(f"unknown backbone '{text}', and no run folder or .keras file of that name exists",
                          key="--base", hint=did_you_mean(text, backbone_names()) or "`dlcli backbones` lists them")
    size = default_size(info.name)
    value = _weights_value(weights)
    # Random weights hold nothing to protect: the whole backbone trains.
    entry: dict[str, Any] = {"name": info.name, "weights": value, "trainable": value is None}
    return BaseModel(kind="application", label=info.name, backbone=entry, image_size=(size, size), channels=3)


def _weights_value(weights: Optional[str]) -> Optional[str]:
    if weights is None or str(weights).strip().lower() == "imagenet":
        return "imagenet"
    text = str(weights).strip()
    if text.lower() in ("none", "null", "random"):
        return None
    if not Path(text).expanduser().exists():
        raise ConfigError(f"weights file not found: {text}", key="--weights",
                          hint="imagenet (through Keras's cache), none (random), or a .h5 / .weights.h5 file")
    return text


def _run_base(text: str) -> BaseModel:
    """A dlcli run (or .keras file) as the backbone: its model cut before
    its head, on the input it was trained on."""
    from dlcli.model import load_model
    from dlcli.model.backbone_build import cut_before_head
    from dlcli.runs import resolve_run

    run = resolve_run(text)
    model = load_model(run.model_path, compile=False)
    try:
        cut = cut_before_head(model)
    except ValueError as exc:
        raise RunError(f"{run.model_path} cannot serve as a backbone: {exc}") from None
    shape = tuple(model.input_shape[1:])
    image_size = (int(shape[0]), int(shape[1])) if len(shape) == 3 and shape[0] and shape[1] else None
    channels = int(shape[-1]) if len(shape) == 3 and shape[-1] else None
    label = model.name if model.name and not model.name.startswith("functional") else Path(text).name
    return BaseModel(
        kind="run",
        label=str(label),
        backbone={"weights": text, "trainable": False},
        image_size=image_size,
        channels=channels,
        output_rank=len(cut.output.shape),
        reduce=_layer_after(model, cut.output),
    )


def _layer_after(model: Any, tensor: Any) -> Optional[str]:
    """The class of the layer that turned the cut feature maps into vectors
    in the run's own model (Flatten, GlobalAveragePooling2D, ...), if any.

    A new head keeps what the features were trained with: a Flatten keeps
    the spatial layout small inputs (digits) depend on; global pooling
    throws it away.
    """
    import keras

    reducers = (keras.layers.Flatten, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
                keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)
    for layer in model.layers:
        if isinstance(layer, reducers):
            ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
            if any(t is tensor for t in ins):
                return type(layer).__name__
    return None


def head_layers(base: BaseModel, num_classes: Optional[int]) -> tuple[list[Any], str]:
    """The layers after the backbone, and the loss that fits them.

    Two classes get one sigmoid unit and binary_crossentropy; more (or an
    unknown count, filled in from the data) a softmax and
    sparse_categorical_crossentropy.
    """
    layers: list[Any] = []
    if base.reduce and base.output_rank > 2:
        layers.append(base.reduce)
    elif base.output_rank == 4:
        layers.append("GlobalAveragePooling2D")
    elif base.output_rank == 3:
        layers.append("GlobalAveragePooling1D")
    layers.append({"Dropout": {"rate": DROPOUT_RATE}})
    if num_classes == 2:
        layers.append({"Dense": {"units": 1, "activation": "sigmoid"}})
        return layers, "binary_crossentropy"
    units: Any = num_classes if num_classes else "num_classes"
    layers.append({"Dense": {"units": units, "activation": "softmax"}})
    return layers, "sparse_categorical_crossentropy"
