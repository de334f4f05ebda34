"""Transfer-learning backbones: the `Backbone` layer entry.

Every model of `keras.applications` is found by introspection (the
functions that take `include_top`, with their module's
`preprocess_input`), so a Keras upgrade that adds one adds it here too.
Users name them in snake case (`mobilenet_v2`, `efficientnet_b0`,
`resnet50_v2`, `convnext_tiny`, derived from the Keras name and its module)
or by the Keras name (`MobileNetV2`).

A Backbone entry becomes, inside the model:

    [BackbonePreprocess] -> <keras application, include_top=False>

`BackbonePreprocess` is a registered, serialisable layer that applies the
application's own `preprocess_input` (and turns one-channel images into
three), so the model takes raw 0..255 pixels at predict and export time
and loads with `safe_mode=True`. The application stays one nested
Functional model under its Keras name (`mobilenetv2_1.00_224`), which
`find_backbone` returns for fine-tuning.

Weights:
- `imagenet`: through Keras's own download and cache (`$KERAS_HOME/models`,
  default `~/.keras/models`). Offline and not cached, a DataError names the
  exact file Keras asks for and the folder to put it in.
- `none`: random initialisation.
- a `.h5` / `.weights.h5` file: loaded by Keras into the application.
- a dlcli run folder or `.keras` file: that model cut before its head (see
  `cut_before_head`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import json
import os
import re
import socket
import sys
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import keras

from dlcli.errors import DataError
from dlcli.model._common import cfg_error, did_you_mean, short_message

# Application arguments the Backbone entry sets itself.
_RESERVED_APP_ARGS = {"include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation", "name"}
# The Backbone entry's own arguments (beside extra application arguments
# such as MobileNet's `alpha`).
BACKBONE_ARGS = ("name", "weights", "trainable", "pooling", "preprocess", "fine_tune_at")
# Keras applications that do not declare a default size (MobileNetV3) load
# ImageNet weights trained at 224x224 (keras/src/applications/mobilenet_v3.py).
_FALLBACK_SIZE = 224
# A download that stalls this long is treated as offline.
_DOWNLOAD_TIMEOUT_S = 60

# Keras's application code calls module-level helpers (file_utils.get_file,
# imagenet_utils.obtain_input_shape); dlcli swaps them briefly to learn what
# Keras asks for. One swap at a time.
_PATCH_LOCK = threading.RLock()


@dataclass(frozen=True)
class BackboneInfo:
    """One `keras.applications` model.

    Attributes:
        name: the dlcli name (`mobilenet_v2`).
        keras_name: the Keras function name (`MobileNetV2`).
        module: its `keras.applications` submodule (`mobilenet_v2`), whose
            `preprocess_input` prepares raw pixels for it.
        fn: the Keras function that builds it.
    """

    name: str
    keras_name: str
    module: str
    fn: Callable[..., keras.Model]


def _snake_name(keras_name: str, module: str) -> str:
    """Derive a user-facing name from a Keras name and its module.

    The module's name carries Keras's own word breaks (`mobilenet_v3`,
    `inception_resnet_v2`); the rest of the Keras name adds a depth
    (`ResNet50` -> `resnet50`) or a variant (`MobileNetV3Small` ->
    `mobilenet_v3_small`, `ResNet50V2` -> `resnet50_v2`).
    """
    m = re.fullmatch(r"(.+?)(?:_(v\d+))?", module)
    base, version = (m.group(1), m.group(2)) if m else (module, None)
    low = keras_name.lower()
    flat = base.replace("_", "")
    if not low.startswith(flat):
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keras_name).lower()
    rest = low[len(flat):]
    digits = re.match(r"\d*", rest).group()
    rest = rest[len(digits):]
    out = base + digits
    if version and rest.startswith(version):
        out += "_" + version
        rest = rest[len(version):]
    if rest:
        out += "_" + rest
    return out


@functools.lru_cache(maxsize=None)
def backbone_registry() -> dict[str, BackboneInfo]:
    """Every `keras.applications` model, by dlcli name (in Keras's order)."""
    apps = keras.applications
    found: dict[str, BackboneInfo] = {}
    for attr in dir(apps):
        fn = getattr(apps, attr)
        if not (attr[:1].isupper() and callable(fn) and not isinstance(fn, type)):
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            continue
        if "include_top" not in params or "weights" not in params:
            continue
        module = getattr(fn, "__module__", "").rsplit(".", 1)[-1]
        public = getattr(apps, module, None)
        if public is None or not callable(getattr(public, "preprocess_input", None)):
            continue
        info = BackboneInfo(_snake_name(attr, module), attr, module, fn)
        found.setdefault(info.name, info)
    return found


def find_info(name: str) -> Optional[BackboneInfo]:
    """Look a backbone up by dlcli name, Keras name, or either without case
    and underscores (`MobileNetV2`, `mobilenetv2`, `mobilenet_v2`)."""
    reg = backbone_registry()
    if name in reg:
        return reg[name]

    def flat(s: str) -> str:
        return s.replace("_", "").replace("-", "").lower()

    for info in reg.values():
        if name == info.keras_name or flat(name) in (flat(info.name), flat(info.keras_name)):
            return info
    return None


def backbone_names() -> list[str]:
    """The dlcli names of every backbone, for suggestions."""
    return list(backbone_registry())


# ---------------------------------------------------------------------------
# The preprocessing layer


@keras.saving.register_keras_serializable(package="dlcli")
class BackbonePreprocess(keras.layers.Layer):
    """Apply a Keras application's `preprocess_input` inside the model.

    Raw 0..255 pixels go in; the application's expected input comes out
    (scaled to -1..1, mean-subtracted BGR, ... as its module defines). Only
    a `keras.applications` submodule can be named, so loading a model with
    this layer runs no code from the file (`safe_mode=True` works).

    Args:
        application: the `keras.applications` submodule, e.g. `mobilenet_v2`.
        to_rgb: repeat a single channel three times first (grayscale data
            on an RGB backbone).
        **kwargs: Layer arguments (name, dtype, ...).
    """

    def __init__(self, application: str, to_rgb: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        module = getattr(keras.applications, str(application), None)
        fn = getattr(module, "preprocess_input", None)
        if module is None or not callable(fn):
            raise ValueError(f"keras.applications has no module '{application}' with a preprocess_input")
        self.application = str(application)
        self.to_rgb = bool(to_rgb)
        self._preprocess = fn

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.to_rgb:
            x = keras.ops.concatenate([x, x, x], axis=-1)
        return self._preprocess(x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        if self.to_rgb:
            return tuple(input_shape[:-1]) + (3,)
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"application": self.application, "to_rgb": self.to_rgb})
        return config


# ---------------------------------------------------------------------------
# Keras's weights cache


def keras_home() -> Path:
    """The Keras cache root: `$KERAS_HOME` now, else what Keras computed.

    Keras reads KERAS_HOME once, when it is imported
    (keras/src/backend/config.py); dlcli reads it at call time and passes it
    to Keras explicitly, so setting it later still counts.
    """
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    from keras.src.backend import config as keras_config

    return Path(keras_config.keras_home()).expanduser()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def keras_weights_cache(display: str) -> Iterator[list[Path]]:
    """Route Keras's weight downloads through the cache, with clear errors.

    While active, `keras.utils.get_file` (as the applications call it) looks
    in `keras_home()/<cache_subdir>/<fname>` first, downloads only when the
    file is missing (or fails Keras's hash check), prints its progress on
    stderr (stdout is for `--json`), and turns a failed download into a
    DataError naming the file and the folder Keras expects.

    Args:
        display: the backbone's name, for messages.

    Yields:
        A list that receives the path of every file Keras asked for.
    """
    from keras.src.utils import file_utils

    asked: list[Path] = []
    with _PATCH_LOCK:
        real = file_utils.get_file

        def get_file(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
            base = Path(kwargs.pop("cache_dir", None) or keras_home()).expanduser()
            # Keras creates its home when imported; one named later is
            # created here. An unwritable one sends Keras to /tmp/.keras
            # (keras/src/utils/file_utils.py): follow it, so the message
            # names the folder Keras really uses.
            with contextlib.suppress(OSError):
                base.mkdir(parents=True, exist_ok=True)
            if not os.access(base, os.W_OK):
                base = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
            cache_dir = str(base)
            subdir = kwargs.get("cache_subdir", "datasets")
            name = str(fname) if fname else os.path.basename(urllib.parse.urlsplit(str(origin)).path)
            target = base / subdir / name
            asked.append(target)
            cached = target.exists()
            try:
                with contextlib.redirect_stdout(sys.stderr), _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                    return real(fname, origin, *args, cache_dir=cache_dir, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any download failure: one clear message
                # Keras words it "URL fetch failure on <url>: <code> -- <reason>".
                reason = str(exc).rsplit(" -- ", 1)[-1].strip() or type(exc).__name__
                reason = short_message(Exception(reason), 120)
                if cached:
                    message = (f"the cached weights file {target} for {display} fails Keras's hash check "
                               f"and a fresh copy could not be downloaded ({reason})")
                else:
                    message = (f"ImageNet weights for {display} are not in Keras's cache and could not be downloaded "
                               f"({reason}): Keras expects the file {name} in {target.parent}")
                raise DataError(message, hint=f"download {origin} into that folder, or use weights: none") from None

        file_utils.get_file = get_file
        try:
            yield asked
        finally:
            file_utils.get_file = real


class _SizeFound(Exception):
    def __init__(self, size: Optional[int]) -> None:
        super().__init__(size)
        self.size = size


@functools.lru_cache(maxsize=None)
def default_size(name: str) -> int:
    """The input size a Keras application was trained at (224, 299, 331...).

    Learned from the `default_size` Keras passes to
    `imagenet_utils.obtain_input_shape`; the call is stopped right there (or
    at the model's first `Input`, for applications that never ask), so
    nothing is built. Applications that declare no size use 224.
    """
    info = find_info(name)
    if info is None:
        raise KeyError(name)
    from keras.src import layers as keras_layers
    from keras.src.applications import imagenet_utils

    def probe(input_shape: Any = None, default_size: Any = None, *args: Any, **kwargs: Any) -> Any:
        raise _SizeFound(default_size)

    def no_input(*args: Any, **kwargs: Any) -> Any:
        raise _SizeFound(None)

    with _PATCH_LOCK:
        real_shape, real_input = imagenet_utils.obtain_input_shape, keras_layers.Input
        imagenet_utils.obtain_input_shape, keras_layers.Input = probe, no_input
        try:
            info.fn(include_top=False, weights=None)
        except _SizeFound as found:
            if found.size:
                return int(found.size)
        finally:
            imagenet_utils.obtain_input_shape, keras_layers.Input = real_shape, real_input
    return _FALLBACK_SIZE


# ---------------------------------------------------------------------------
# Building a Backbone entry


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


# ---------------------------------------------------------------------------
# Finding and listing backbones


def find_backbone(model: keras.Model) -> Optional[keras.Model]:
    """Return the backbone inside a dlcli model (a nested model), or None.

    A Backbone entry leaves exactly one nested Functional model in the
    model (the Keras application, or a run's model cut before its head);
    where there are several nested models, the largest is taken.
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not nested:
        return None
    return max(nested, key=lambda m: m.count_params())


# Parameter counts generated from Keras by `python -m dlcli.model.backbones`
# (shipped, so the first `dlcli backbones` is instant for that Keras version).
SHIPPED_PARAMS = Path(__file__).with_name("backbone_params.json")


def _keras_version() -> str:
    return importlib.metadata.version("keras")


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "dlcli" / f"backbones-keras-{_keras_version()}.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _shipped_params() -> dict[str, int]:
    data = _read_json(SHIPPED_PARAMS)
    if data.get("keras") != _keras_version():
        return {}
    return dict(data.get("params") or {})


def list_backbones(names: Optional[Iterable[str]] = None, *, count_params: bool = True,
                   use_shipped: bool = True) -> list[dict[str, Any]]:
    """Describe every backbone `Backbone: {name: ...}` accepts.

    Parameter counts are those of each application built with
    `include_top=False, weights=None` at its default size (without the
    ImageNet classifier). They come from the counts shipped with dlcli for
    the installed Keras version, else from a per-version cache under
    `$XDG_CACHE_HOME/dlcli/` (default `~/.cache/dlcli/`), else by building
    the model once (all 40: several minutes on a small CPU).

    Args:
        names: only these backbones (dlcli or Keras names); default all.
        count_params: False never builds (params is None where unknown).
        use_shipped: False ignores the shipped counts (to regenerate them).

    Returns:
        `[{"name", "keras_name", "default_size", "params"}]`, sorted by name.

    Raises:
        ConfigError: a name in `names` is no backbone (with a suggestion).
    """
    if names is None:
        infos = list(backbone_registry().values())
    else:
        infos = []
        for name in names:
            info = find_info(str(name))
            if info is None:
                raise cfg_error(None, "", f"unknown backbone '{name}'", hint=did_you_mean(name, backbone_names()))
            infos.append(info)
    cache_path = _cache_file()
    cached = _read_json(cache_path)
    known = {**(_shipped_params() if use_shipped else {}), **cached}
    out = []
    changed = False
    for info in infos:
        size = default_size(info.name)
        params = known.get(info.name)
        if params is None and count_params:
            model = info.fn(include_top=False, weights=None, input_shape=(size, size, 3))
            params = int(model.count_params())
            del model
            cached[info.name] = params
            changed = True
        out.append({"name": info.name, "keras_name": info.keras_name, "default_size": size, "params": params})
    if changed:
        from dlcli.runs import atomic_write_json

        with contextlib.suppress(OSError):
            atomic_write_json(cache_path, cached)
    return out


def main() -> int:
    """Regenerate the shipped parameter counts from the installed Keras."""
    from dlcli.runs import atomic_write_json

    rows = list_backbones(use_shipped=False)
    atomic_write_json(SHIPPED_PARAMS, {"keras": _keras_version(), "params": {r["name"]: r["params"] for r in rows}})
    print(f"wrote {SHIPPED_PARAMS} ({len(rows)} backbones, keras {_keras_version()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
