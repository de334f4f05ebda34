"""Transfer-learning backbones: which exist, their layer, their sizes.

Every model of `keras.applications` is found by introspection (the
functions that take `include_top`, with their module's
`preprocess_input`), so a Keras upgrade that adds one adds it here too.
Users name them in snake case (`mobilenet_v2`, `efficientnet_b0`,
`resnet50_v2`, `convnext_tiny`, derived from the Keras name and its module)
or by the Keras name (`MobileNetV2`).

A Backbone entry (built by `dlcli.model.backbone_build`) becomes, inside
the model:

    [BackbonePreprocess] -> <keras application, include_top=False>

`BackbonePreprocess` is a registered, serialisable layer that applies the
application's own `preprocess_input` (and turns one-channel images into
three), so the model takes raw 0..255 pixels at predict and export time
and loads with `safe_mode=True`. The application stays one nested
Functional model under its Keras name (`mobilenetv2_1.00_224`), which
`find_backbone` returns for fine-tuning.

`default_size` and `list_backbones` (`dlcli backbones`) describe them
without downloading any weights (see `dlcli.model.backbone_weights`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import keras

from dlcli.model._common import cfg_error, did_you_mean
from dlcli.model.backbone_weights import PATCH_LOCK

# The Backbone entry's own arguments (beside extra application arguments
# such as MobileNet's `alpha`).
BACKBONE_ARGS = ("name", "weights", "trainable", "pooling", "preprocess", "fine_tune_at")
# Keras applications that do not declare a default size (MobileNetV3) load
# ImageNet weights trained at 224x224 (keras/src/applications/mobilenet_v3.py).
_FALLBACK_SIZE = 224


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
# Sizes and listing


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

    with PATCH_LOCK:
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
