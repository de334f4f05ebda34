"""Keras names and arguments, checked without importing TensorFlow.

`dlcli validate` must answer in a fraction of a second, so it cannot ask
Keras whether `Conv2d` is a layer. Instead it reads a catalogue generated
*from* Keras (`python -m dlcli.config.catalog` writes
`dlcli/config/keras_catalog.json`): every layer, loss, optimizer, learning
rate schedule, metric, callback, application (backbone), activation,
initializer, regularizer and constraint name Keras accepts, found by asking
Keras's own `get()` functions and registries, and every constructor's
argument names, read with `inspect` through the class hierarchy.

The shipped catalogue is used when it was generated from the installed
Keras version; otherwise a TensorFlow-importing command (`summary`,
`train`) calls `ensure_catalog()`, which generates one into the user cache
(`$XDG_CACHE_HOME/dlcli` or `~/.cache/dlcli`). Without either, only the
config's structure is checked, and `check_config` says so in a notice.

The check functions (`check_layer_kwargs`, `check_loss`, ...) raise
`ConfigError`; given a `cfg` they locate the error at its file and line,
so the model builder can reuse them with the same messages.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from dlcli.config.graph import in_context, model_graph, parse_entry
from dlcli.config.imports import check_import_path, user_path
from dlcli.config.suggest import closest, did_you_mean, one_of
from dlcli.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.config.schema import Config

# Bump when the JSON layout changes, so an old cached file is not misread.
FORMAT = 1
SHIPPED_CATALOG = Path(__file__).with_name("keras_catalog.json")

# Names dlcli adds where Keras has none. Backbone wraps a keras.applications
# model; its `name` is the application (MobileNetV2 or mobilenet_v2).
BACKBONE = "Backbone"
BACKBONE_ARGS = ("name", "weights", "trainable", "pooling", "preprocess", "fine_tune_at")
# keras.applications arguments the model builder sets itself, so a config
# may not (the others, such as MobileNet's alpha, pass through).
BACKBONE_APP_ARGS_SET_BY_DLCLI = (
    "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation", "name",
)
EXTRA_LAYERS = {BACKBONE: BACKBONE_ARGS, "PositionEmbedding": ("sequence_length", "initializer", "name", "dtype", "trainable")}
EXTRA_LOSSES = ("ctc",)
EXTRA_METRICS = ("ctc_sequence_accuracy", "sequence_accuracy")


# Keys a `{class_name, config}` reference may carry; Keras's own serialized
# form adds `module` and `registered_name`, accepted so pasted configs work.
REF_KEYS = ("class_name", "config", "module", "registered_name")

# Layer arguments that take a layer (or a list of layers) as an entry.
NESTED_LAYER_ARGS = ("layer", "backward_layer", "cell")
NESTED_LAYER_LIST_ARGS = ("cells",)

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

# Layer arguments whose string values name a Keras object of a category.
_VALUE_CATEGORIES = (
    ("activation", "activations"),
    ("_initializer", "initializers"),
    ("_regularizer", "regularizers"),
    ("_constraint", "constraints"),
)


# --------------------------------------------------------------------------
# Generating the catalogue (imports Keras)
# --------------------------------------------------------------------------


def _snake(name: str) -> str:
    text = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


def _variants(names: Iterable[str]) -> set[str]:
    """Spellings worth asking Keras about; Keras decides which it accepts."""
    out: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("_"):
            continue
        for v in (name, name.lower(), name.upper(), name.capitalize(), _snake(name)):
            out.add(v)
    return out


def _popped_kwargs(fn: Any) -> list[str]:
    """Names an `__init__` takes out of `**kwargs` (`kwargs.pop("input_shape")`)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return []
    found = re.findall(r"kwargs\.(?:pop|get)\(\s*[\"'](\w+)[\"']", source)
    found += re.findall(r"[\"'](\w+)[\"']\s+in\s+kwargs", source)
    return found


def _init_args(cls: type, stops: tuple = ()) -> dict[str, Any]:
    """Constructor argument names of `cls`, following `**kwargs` up the MRO.

    A class whose `__init__` forwards `**kwargs` accepts its base's
    arguments too; the walk stops at a class without `**kwargs`, or at one
    of `stops` (Keras's Layer and optimizer base check leftover kwargs
    themselves). `open` is True when `**kwargs` leads nowhere known, so any
    argument may be accepted and none can be refused.
    """
    names: list[str] = []
    following = False
    last = None
    for klass in cls.__mro__:
        if klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        last = klass
        try:
            params = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return {"args": sorted(set(names)), "open": True}
        following = False
        for i, p in enumerate(params):
            if i == 0 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                continue  # self
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.append(p.name)
            elif p.kind == p.VAR_KEYWORD:
                following = True
        names += _popped_kwargs(init)
        if not following or klass in stops:
            break
    is_open = following and last not in stops
    return {"args": sorted(set(names)), "open": bool(is_open)}


def _quiet_call(fn: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _accepted(get: Any, candidates: Iterable[str]) -> list[str]:
    """The candidates Keras's `get` accepts as a string identifier."""
    ok = []
    for name in sorted(set(candidates)):
        try:
            if _quiet_call(get, name) is not None:
                ok.append(name)
        except Exception:  # noqa: BLE001 - any refusal means "not a name"
            continue
    return ok


def _private_dict(module_name: str) -> dict[str, Any]:
    """A Keras module's ALL_OBJECTS_DICT (what its deserialize looks up), if any."""
    try:
        return dict(getattr(importlib.import_module(module_name), "ALL_OBJECTS_DICT", {}))
    except ImportError:
        return {}


def _public(module: Any) -> dict[str, Any]:
    return {n: getattr(module, n) for n in dir(module) if not n.startswith("_")}


def _source_literals(fn: Any) -> set[str]:
    """Quoted words in a Keras function's source (compile's "acc", "ce")."""
    try:
        return set(re.findall(r"[\"']([A-Za-z_]+)[\"']", inspect.getsource(fn)))
    except (OSError, TypeError):
        return set()


def _targets(objects: dict[str, Any], stops: tuple = ()) -> tuple[dict[str, str], dict[str, dict]]:
    """Map names to their class (or function) name, and record arguments."""
    names: dict[str, str] = {}
    targets: dict[str, dict] = {}
    for name, obj in objects.items():
        if inspect.isclass(obj):
            target = obj.__name__
            if target not in targets:
                targets[target] = _init_args(obj, stops)
        elif callable(obj):
            target = getattr(obj, "__name__", name)
            targets.setdefault(target, {"args": None, "open": False})
        else:
            continue
        names[name] = target
    return names, targets


def _compile_resolver(name: str) -> Optional[Any]:
    """Keras's compile-time resolver (`get_loss`, `get_metric`), if present."""
    try:
        return getattr(importlib.import_module("keras.src.trainers.compile_utils"), name)
    except (ImportError, AttributeError):
        return None


def _with_dummy_labels(resolver: Any) -> Any:
    import numpy as np

    y_true, y_pred = np.zeros((2, 1), "float32"), np.zeros((2, 3), "float32")
    return lambda name: resolver(name, y_true, y_pred)


def _keras_refs(keras: Any, module: Any, private: str, compile_fn: Optional[str], base: type, stops: tuple = ()) -> dict[str, Any]:
    """Names of a loss/metric/optimizer family, as strings and as class_name."""
    objects = _private_dict(private) or {
        n: o for n, o in _public(module).items() if (inspect.isclass(o) and issubclass(o, base)) or inspect.isfunction(o)
    }
    objects = {n: o for n, o in objects.items() if not (inspect.isclass(o) and o is base)}
    dict_names, targets = _targets(objects, stops)
    candidates = _variants(list(objects) + list(_public(module)))
    resolver = _compile_resolver(compile_fn) if compile_fn is not None else None
    if resolver is not None:
        # model.compile() accepts a few more strings than `get` ("acc",
        # "ce"): ask compile's own resolver, with dummy labels.
        candidates |= _variants(_source_literals(resolver))
        names = _accepted(_with_dummy_labels(resolver), candidates)
    else:
        names = _accepted(module.get, candidates)
    # Optimizers resolve a class_name case-insensitively: find out by asking.
    # Probe with a mIxEd-case spelling no one registers ("BCE" -> "bce" would
    # hit a function alias), in a fixed order: Keras's object dicts are
    # built from sets, so their order changes between processes.
    known = set(dict_names) | set(names)

    def mixed(n: str) -> str:
        return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(n))

    probes = [mixed(n) for n in sorted(dict_names) if mixed(n) not in known]
    case_insensitive = False
    for name in probes[:3]:
        try:
            _quiet_call(module.get, {"class_name": name, "config": {}})
            case_insensitive = True
            break
        except Exception:  # noqa: BLE001
            continue
    return {
        "names": names,
        "dict_names": dict_names,
        "targets": targets,
        "dict_case_insensitive": case_insensitive,
    }


def _classes(module: Any, base: type, stops: tuple = ()) -> dict[str, Any]:
    objects = {n: o for n, o in _public(module).items() if inspect.isclass(o) and issubclass(o, base)}
    names, targets = _targets(objects, stops)
    return {"names": sorted(names), "dict_names": names, "targets": targets}


def _backbones(keras: Any) -> dict[str, Any]:
    apps = keras.applications
    functions = {
        n: o
        for n, o in _public(apps).items()
        if inspect.isfunction(o) and "include_top" in inspect.signature(o).parameters
    }
    names: dict[str, str] = {}
    for n, fn in functions.items():
        names[n] = n
        names.setdefault(n.lower(), n)
        # The snake-case name takes Keras's own word breaks from the module
        # (keras.applications.mobilenet_v3.MobileNetV3Small ->
        # mobilenet_v3_small; efficientnet.EfficientNetB0 -> efficientnet_b0).
        module = getattr(fn, "__module__", "").rsplit(".", 1)[-1]
        flat_module = module.replace("_", "")
        if module and n.lower().startswith(flat_module):
            rest = n.lower()[len(flat_module):]
            names.setdefault(module + (rest if not rest or rest[0].isdigit() else "_" + rest), n)
    targets = {n: {"args": sorted(inspect.signature(f).parameters), "open": False} for n, f in functions.items()}
    return {"names": sorted(names), "dict_names": names, "targets": targets}


def _simple(module: Any, private: str) -> dict[str, Any]:
    candidates = _variants(list(_private_dict(private)) + list(_public(module)))
    candidates.discard("get")
    candidates.discard("serialize")
    candidates.discard("deserialize")
    return {"names": _accepted(module.get, candidates)}


def generate() -> dict[str, Any]:
    """Build the catalogue by asking the installed Keras.

    Returns:
        The catalogue as plain JSON-ready data, tagged with the Keras
        version it came from.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    layer_base = keras.layers.Layer
    layer_objects = {n: o for n, o in _public(keras.layers).items() if inspect.isclass(o) and issubclass(o, layer_base)}
    # Layers registered with @keras.saving.register_keras_serializable.
    for name, obj in keras.saving.get_custom_objects().items():
        if inspect.isclass(obj) and issubclass(obj, layer_base):
            layer_objects.setdefault(name, obj)
    layer_names, layer_targets = _targets(layer_objects, (layer_base,))
    optimizer_base = keras.optimizers.Optimizer
    optimizer_stops = tuple(k for k in optimizer_base.__mro__ if k.__name__ == "BaseOptimizer") or (optimizer_base,)
    return {
        "format": FORMAT,
        "keras_version": _installed_keras_version() or keras.__version__,
        "generator": "python -m dlcli.config.catalog",
        "layers": {"names": sorted(layer_names), "dict_names": layer_names, "targets": layer_targets},
        "losses": _keras_refs(keras, keras.losses, "keras.src.losses", "get_loss", keras.losses.Loss),
        "metrics": _keras_refs(keras, keras.metrics, "keras.src.metrics", "get_metric", keras.metrics.Metric),
        "optimizers": _keras_refs(keras, keras.optimizers, "keras.src.optimizers", None, optimizer_base, optimizer_stops),
        "schedules": _classes(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "callbacks": _classes(keras.callbacks, keras.callbacks.Callback),
        "backbones": _backbones(keras),
        "activations": _simple(keras.activations, "keras.src.activations"),
        "initializers": _simple(keras.initializers, "keras.src.initializers"),
        "regularizers": _simple(keras.regularizers, "keras.src.regularizers"),
        "constraints": _simple(keras.constraints, "keras.src.constraints"),
    }


# --------------------------------------------------------------------------
# Finding a catalogue (no Keras import)
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _installed_keras_version() -> Optional[str]:
    # Read from the package metadata: importing Keras would load TensorFlow.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return None


def cache_path(keras_version: str) -> Path:
    """Where a catalogue generated at run time is cached for `keras_version`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "dlcli" / f"keras_catalog-{keras_version}.json"


class Catalog:
    """Read access to a generated catalogue."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.keras_version: str = data.get("keras_version", "")

    def names(self, category: str) -> list[str]:
        """Every string identifier of a category (`losses`: "mse", "MSE", ...)."""
        return list(self.data.get(category, {}).get("names", []))

    def accepts(self, category: str, name: str) -> bool:
        """True when Keras accepts `name` as a string identifier."""
        return name in self._name_set(category)

    def _name_set(self, category: str) -> set[str]:
        cache = self.__dict__.setdefault("_sets", {})
        if category not in cache:
            cache[category] = set(self.names(category))
        return cache[category]

    def dict_target(self, category: str, name: str) -> Optional[str]:
        """The class (or function) a `class_name` resolves to, or None."""
        section = self.data.get(category, {})
        table = section.get("dict_names", {})
        if name in table:
            return table[name]
        if section.get("dict_case_insensitive"):
            lowered = {k.lower(): v for k, v in table.items()}
            return lowered.get(name.lower())
        return None

    def dict_names(self, category: str) -> list[str]:
        return list(self.data.get(category, {}).get("dict_names", {}))

    def arguments(self, category: str, target: str) -> Optional[dict[str, Any]]:
        """`{"args": [...] or None (a function), "open": bool}` for a target."""
        return self.data.get(category, {}).get("targets", {}).get(target)


_memo: dict[str, Optional[Catalog]] = {}


def _read_catalog(path: Path, keras_version: str) -> Optional[Catalog]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == FORMAT and data.get("keras_version") == keras_version:
        return Catalog(data)
    return None


def get_catalog() -> Optional[Catalog]:
    """The catalogue for the installed Keras, without importing it.

    Returns:
        The shipped catalogue when its Keras version matches, else the user
        cache's; when Keras is already imported (a training process), one
        generated now; else None (structural checks only).
    """
    version = _installed_keras_version()
    if version is None:
        return None
    if _memo.get(version) is not None:
        return _memo[version]
    found = _read_catalog(SHIPPED_CATALOG, version) or _read_catalog(cache_path(version), version)
    if found is None and "keras" in sys.modules:
        found = ensure_catalog()
    _memo[version] = found
    return found


def ensure_catalog() -> Catalog:
    """Return a catalogue for the installed Keras, generating and caching
    one when none matches (imports Keras: call it where TensorFlow is
    loaded anyway, e.g. before building a model).

    Returns:
        The catalogue.
    """
    version = _installed_keras_version() or ""
    if _memo.get(version) is not None:
        return _memo[version]  # type: ignore[return-value]
    found = _read_catalog(SHIPPED_CATALOG, version) or _read_catalog(cache_path(version), version)
    if found is None:
        data = generate()
        found = Catalog(data)
        try:
            from dlcli.runs import atomic_write_text

            target = cache_path(data["keras_version"])
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only home only costs a regeneration next time
    _memo[version] = found
    return found


def main(argv: Optional[list[str]] = None) -> int:
    """Regenerate `dlcli/config/keras_catalog.json` from the installed Keras."""
    import argparse

    from dlcli.runs import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m dlcli.config.catalog", description=main.__doc__)
    parser.add_argument("--output", "-o", type=Path, default=SHIPPED_CATALOG, help="where to write the JSON")
    args = parser.parse_args(argv)
    data = generate()
    atomic_write_text(args.output, json.dumps(data, indent=1, sort_keys=True) + "\n")
    counts = ", ".join(f"{len(data[k]['names'])} {k}" for k in ("layers", "losses", "metrics", "optimizers", "schedules", "callbacks", "backbones"))
    print(f"wrote {args.output} (keras {data['keras_version']}: {counts})", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _fail(cfg: Optional["Config"], key: str, message: str, hint: Optional[str] = None) -> ConfigError:
    if cfg is not None:
        return cfg.error(key, message, hint)
    return ConfigError(message, key=key, hint=hint)


def _locator(cfg: Optional["Config"]) -> Any:
    return lambda key, message, hint=None: _fail(cfg, key, message, hint)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def is_import_path(name: str) -> bool:
    """True for a dotted import path such as `mypkg.layers.Gate`."""
    return bool(_IMPORT_PATH.match(name))


def _live_registered(name: str) -> bool:
    """Registered custom objects count, when Keras is already loaded."""
    if "keras" not in sys.modules:
        return False
    try:
        return sys.modules["keras"].saving.get_registered_object(name) is not None
    except Exception:  # noqa: BLE001
        return False


def as_layer_entry(value: Any) -> Any:
    """Keras's serialized `{class_name, config}` form of a nested layer (or
    a list of them) as a config entry `{ClassName: {config}}`; a custom
    class's `module` makes it a dotted path. Anything else as it is."""
    if isinstance(value, list):
        return [as_layer_entry(v) for v in value]
    if not (isinstance(value, dict) and "class_name" in value and set(value) <= set(REF_KEYS)):
        return value
    name, module = str(value["class_name"]), value.get("module")
    if module and not str(module).startswith("keras"):
        name = f"{module}.{name}"
    return {name: dict(value.get("config") or {})}


def _check_nested_layers(kwargs: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    """Check the layers a wrapper takes as arguments (`Bidirectional:
    {layer: {LSTM: {units: 8}}}`, `RNN: {cell: ...}`, `cells: [...]`)."""
    for arg, value in kwargs.items():
        if arg in NESTED_LAYER_LIST_ARGS and isinstance(value, list):
            entries = [(f"{key_path}.{arg}.{i}", v) for i, v in enumerate(value)]
        elif arg in NESTED_LAYER_ARGS:
            entries = [(f"{key_path}.{arg}", value)]
        else:
            continue
        for key, entry in entries:
            entry = as_layer_entry(entry)
            if isinstance(entry, str):
                name, inner = entry, {}
            elif isinstance(entry, dict) and len(entry) == 1:
                ((name, inner),) = entry.items()
            else:
                continue  # not an entry: the builder says what is wrong
            if not isinstance(inner, dict):
                continue
            check_layer_name(str(name), key, cfg=cfg)
            check_layer_kwargs(str(name), inner, key, cfg=cfg)


def _check_import_path(path: str, key_path: str, cfg: Optional["Config"]) -> None:
    """Refuse a dotted path whose class is plainly not a Keras layer, read
    from the module's source (nothing is imported: validate stays free of
    TensorFlow). A module without source, or a class whose bases come
    from elsewhere, is left to the builder."""
    import ast

    module, _, name = path.rpartition(".")
    source = _module_source(module)
    if source is None:
        return
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    if name in classes and not _may_be_layer(classes[name], classes, set()):
        raise _fail(cfg, key_path, f"'{path}' is not a Keras layer class (a subclass of keras.layers.Layer)")


def _module_source(module: str) -> Optional[str]:
    """The source of `module`, found without importing it (None if unknown)."""
    import importlib.util
    from pathlib import Path

    if module in sys.modules:
        origin = getattr(sys.modules[module], "__file__", None)
    else:
        top, *rest = module.split(".")
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
        for part in rest:
            if origin is None or not origin.endswith("__init__.py"):
                return None
            folder = Path(origin).parent
            candidates = [folder / f"{part}.py", folder / part / "__init__.py"]
            origin = next((str(c) for c in candidates if c.is_file()), None)
    if not origin or not origin.endswith(".py"):
        return None
    try:
        return Path(origin).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# Bases that make a class plainly not a layer.
_NOT_LAYER_BASES = frozenset({"object", "dict", "list", "tuple", "set", "str", "int", "float", "Exception", "type"})


def _may_be_layer(node: Any, classes: dict[str, Any], seen: set[str]) -> bool:
    """False when every base of the class is plainly not a layer."""
    import ast

    if not node.bases:
        return False
    for base in node.bases:
        text = ast.unparse(base)
        last = text.rsplit(".", 1)[-1]
        if text in classes and text not in seen:
            seen.add(text)
            if _may_be_layer(classes[text], classes, seen):
                return True
        elif last not in _NOT_LAYER_BASES:
            return True
    return False


def check_layer_name(class_name: str, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check that a layer class exists in Keras (or is dlcli's or an import path).

    Args:
        class_name: the class key as written.
        key_path: the entry's dotted path, for the error.
        cfg: the config, to locate errors.

    Raises:
        ConfigError: an unknown layer, with the closest Keras name.
    """
    if class_name in EXTRA_LAYERS:
        return
    if "." in class_name:
        check_import_path(class_name, key_path, _locator(cfg), kind="layer")
        _check_import_path(class_name, key_path, cfg)
        return
    cat = get_catalog()
    if cat is None or cat.dict_target("layers", class_name) is not None or _live_registered(class_name):
        return
    candidates = cat.names("layers") + list(EXTRA_LAYERS)
    raise _fail(cfg, key_path, f"unknown layer '{class_name}'", did_you_mean(class_name, candidates))


def check_layer_kwargs(class_name: str, kwargs: dict[str, Any], key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a layer's arguments against its Keras constructor.

    Also checks string values of activation, initializer, regularizer and
    constraint arguments (`activation: rellu`).

    Args:
        class_name: the layer class.
        kwargs: its arguments.
        key_path: the path of the arguments (`model.layers.1.Conv2D`).
        cfg: the config, to locate errors.

    Raises:
        ConfigError: an argument the class does not take, with the closest.
    """
    if class_name == BACKBONE:
        _check_backbone(kwargs, key_path, cfg)
        return
    _check_nested_layers(kwargs, key_path, cfg)
    cat = get_catalog()
    if cat is None or "." in class_name:
        return
    target = cat.dict_target("layers", class_name)
    info = cat.arguments("layers", target) if target else None
    if info is not None:
        _check_args(class_name, kwargs, info, key_path, cfg)
    for arg, value in kwargs.items():
        if user_path(value) is not None:
            check_import_path(user_path(value)[0], f"{key_path}.{arg}", _locator(cfg), kind=arg, functions=True)
            continue
        if not isinstance(value, str):
            continue
        for suffix, category in _VALUE_CATEGORIES:
            if arg.endswith(suffix) and cat.names(category) and not cat.accepts(category, value):
                kind = category[:-1]
                raise _fail(
                    cfg,
                    f"{key_path}.{arg}",
                    f"unknown {kind} '{value}' for {class_name}",
                    did_you_mean(value, cat.names(category)),
                )


def _check_args(owner: str, kwargs: dict[str, Any], info: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    args = info.get("args")
    if args is None:
        if kwargs:
            raise _fail(cfg, key_path, f"{owner} is a function and takes no config", "use its class name to pass arguments")
        return
    if info.get("open"):
        return
    for k in kwargs:
        if k not in args:
            near = did_you_mean(k, args)
            raise _fail(
                cfg,
                f"{key_path}.{k}",
                f"{owner} has no argument '{k}'",
                near or (one_of(args) if args else f"{owner} takes no arguments"),
            )


def _flat(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def backbone_target(name: str) -> Optional[str]:
    """The keras.applications function a Backbone `name` means, or None
    (no catalogue, or no such application).

    Spelling is free as in the model builder: `MobileNetV2`,
    `mobilenet_v2` and `mobilenetv2` are one backbone.
    """
    cat = get_catalog()
    if cat is None:
        return None
    found = cat.dict_target("backbones", name)
    if found is not None:
        return found
    by_flat = {_flat(n): t for n, t in cat.data.get("backbones", {}).get("dict_names", {}).items()}
    return by_flat.get(_flat(name))


def _check_backbone(kwargs: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    cat = get_catalog()
    name = kwargs.get("name")
    weights = kwargs.get("weights")
    if (
        isinstance(weights, str)
        and weights.lower() not in {"imagenet", "none", "null", "random", ""}
        and not weights.endswith(".h5")
    ):
        # A dlcli run folder or .keras file as the backbone: the builder
        # reads the model from there (existence is checked when it builds).
        allowed = ["name", "weights", "trainable", "fine_tune_at", "preprocess"]
        for k in kwargs:
            if k not in allowed:
                raise _fail(cfg, f"{key_path}.{k}", f"a Backbone from a run takes no argument '{k}'", one_of(allowed))
        return
    if not isinstance(name, str) or not name:
        raise _fail(cfg, key_path, "Backbone needs name: a keras.applications model", "for example name: mobilenet_v2")
    allowed = list(BACKBONE_ARGS)
    if cat is not None:
        target = backbone_target(name)
        if target is None:
            raise _fail(
                cfg,
                f"{key_path}.name",
                f"unknown backbone '{name}'",
                did_you_mean(name, cat.names("backbones")) or "see keras.applications",
            )
        # The application's own options (alpha, include_preprocessing, ...)
        # pass through; those the builder sets itself do not.
        info = cat.arguments("backbones", target) or {}
        allowed += [a for a in info.get("args") or [] if a not in BACKBONE_APP_ARGS_SET_BY_DLCLI and a not in allowed]
    for k in kwargs:
        if k not in allowed:
            raise _fail(
                cfg, f"{key_path}.{k}", f"Backbone has no argument '{k}'", did_you_mean(k, allowed) or one_of(allowed)
            )


def _check_ref(
    category: str,
    label: str,
    ref: Any,
    key_path: str,
    cfg: Optional["Config"],
    extras: tuple = (),
) -> Optional[str]:
    """Check a `name` or `{class_name, config}` reference; return the target."""
    user = user_path(ref)
    if user is not None:  # the user's own class or function (dlcli.config.imports)
        where = key_path
        if isinstance(ref, dict) and ("module" in ref or "class_name" in ref):
            where = f"{key_path}.{'module' if 'module' in ref else 'class_name'}"
        check_import_path(user[0], where, _locator(cfg), kind=label, functions=True)
        return user[0]
    cat = get_catalog()
    if isinstance(ref, str):
        if ref in extras or cat is None or cat.accepts(category, ref):
            return ref
        hint = did_you_mean(ref, cat.names(category) + list(extras))
        if hint is None and cat.dict_target(category, ref) is not None:
            hint = f"{ref} needs arguments: write {{class_name: {ref}, config: {{...}}}}"
        raise _fail(cfg, key_path, f"unknown {label} '{ref}'", hint)
    if not isinstance(ref, dict):
        raise _fail(cfg, key_path, f"expected a {label} name or {{class_name: ..., config: {{...}}}}, got {_kind(ref)}")
    if "class_name" not in ref:
        near = next((k for k in ref if isinstance(k, str) and closest(k, REF_KEYS)), None)
        hint = did_you_mean(near, REF_KEYS) if near is not None else None
        raise _fail(cfg, key_path, f"a {label} mapping needs class_name (and optionally config)", hint)
    for k in ref:
        if k not in REF_KEYS:
            raise _fail(cfg, f"{key_path}.{k}", f"unexpected key '{k}' in a {label} reference", did_you_mean(k, REF_KEYS) or "use class_name and config")
    name = ref["class_name"]
    if not isinstance(name, str) or not name:
        raise _fail(cfg, f"{key_path}.class_name", f"class_name must be a {label} class name, got {_kind(name)}")
    config = ref.get("config")
    if config is not None and not isinstance(config, dict):
        raise _fail(cfg, f"{key_path}.config", f"config must be a mapping of {name}'s arguments, got {_kind(config)}")
    if name in extras or cat is None:
        return name
    target = cat.dict_target(category, name)
    if target is None:
        raise _fail(cfg, f"{key_path}.class_name", f"unknown {label} '{name}'", did_you_mean(name, cat.dict_names(category) + list(extras)))
    info = cat.arguments(category, target)
    if info is not None and config:
        _check_args(target, {k: v for k, v in config.items()}, info, f"{key_path}.config", cfg)
    return target


def check_loss(ref: Any, key_path: str = "compile.loss", *, cfg: Optional["Config"] = None, outputs: Optional[list[str]] = None) -> None:
    """Check a loss: a Keras name (`mse`), `{class_name, config}`, dlcli's `ctc`,
    or, for a model with named outputs, a mapping of output name to loss.

    Raises:
        ConfigError: an unknown loss or argument, with the closest.
    """
    if isinstance(ref, dict) and "class_name" not in ref and outputs and all(k in outputs for k in ref):
        for out, sub in ref.items():
            check_loss(sub, f"{key_path}.{out}", cfg=cfg)
        return
    _check_ref("losses", "loss", ref, key_path, cfg, EXTRA_LOSSES)


def check_metric(ref: Any, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a metric: a Keras name, `{class_name, config}` or dlcli's own.

    Raises:
        ConfigError: an unknown metric or argument, with the closest.
    """
    _check_ref("metrics", "metric", ref, key_path, cfg, EXTRA_METRICS)


def check_schedule(ref: Any, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a learning-rate schedule `{class_name: ExponentialDecay, config: {...}}`.

    Raises:
        ConfigError: an unknown schedule or argument, with the closest.
    """
    if isinstance(ref, str):
        raise _fail(cfg, key_path, f"expected a number or a schedule {{class_name: ..., config: {{...}}}}, got {ref!r}")
    _check_ref("schedules", "learning-rate schedule", ref, key_path, cfg)
    from dlcli.config import refs

    config = ref.get("config") if isinstance(ref, dict) else None
    for arg, value in (config or {}).items():
        problem = refs.check(value) if refs.is_reference(arg, value) else None
        if problem:
            raise _fail(cfg, f"{key_path}.config.{arg}", problem, f"a number, or an expression of {', '.join(refs.NAMES)}")


def check_optimizer(ref: Any, key_path: str = "compile.optimizer", *, cfg: Optional["Config"] = None) -> None:
    """Check an optimizer name or `{class_name, config}`, including a
    learning-rate schedule given as its `learning_rate`.

    Raises:
        ConfigError: an unknown optimizer, argument or schedule.
    """
    _check_ref("optimizers", "optimizer", ref, key_path, cfg)
    if isinstance(ref, dict) and isinstance(ref.get("config"), dict):
        lr = ref["config"].get("learning_rate")
        lr_path = f"{key_path}.config.learning_rate"
        if isinstance(lr, (dict, str)):
            check_schedule(lr, lr_path, cfg=cfg)
        elif lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
            raise _fail(cfg, lr_path, f"expected a number or a schedule {{class_name: ..., config: {{...}}}}, got {_kind(lr)}")


def check_callback(class_name: str, kwargs: dict[str, Any], key_path: str, args_path: Optional[str] = None, *, cfg: Optional["Config"] = None) -> None:
    """Check a Keras callback name and its arguments.

    Raises:
        ConfigError: an unknown callback or argument, with the closest.
    """
    if "." in class_name:
        check_import_path(class_name, key_path, _locator(cfg), kind="callback")
        return
    cat = get_catalog()
    if cat is None:
        return
    target = cat.dict_target("callbacks", class_name)
    if target is None:
        raise _fail(cfg, key_path, f"unknown callback '{class_name}'", did_you_mean(class_name, cat.names("callbacks")))
    info = cat.arguments("callbacks", target)
    if info is not None:
        _check_args(class_name, kwargs, info, args_path or f"{key_path}.{class_name}", cfg)


def check_data(cfg: "Config") -> None:
    """Check the data source name and the keys it needs.

    Raises:
        ConfigError: an unknown source, or path/target missing.
    """
    from dlcli.data.registry import check_data_keys

    data = cfg.data
    check_data_keys(cfg)
    for i, raw in enumerate(data.augment):
        entry = parse_entry(raw, f"data.augment.{i}", cfg=cfg, what="augment layer", graph=False)
        check_layer_name(entry.class_name, entry.key_path, cfg=cfg)
        check_layer_kwargs(entry.class_name, entry.kwargs, entry.args_path, cfg=cfg)


def check_config(cfg: "Config") -> list[str]:
    """Run every check that needs no TensorFlow on a validated config.

    Args:
        cfg: the config (from `load_config`, which calls this).

    Returns:
        Notices (one line each) about checks that could not run.

    Raises:
        ConfigError: the first problem, at its file, line and key.
    """
    notices: list[str] = []
    cat = get_catalog()
    if cat is None:
        version = _installed_keras_version()
        notices.append(
            f"no Keras catalogue for keras {version or '(not installed)'}: checked the config's structure, "
            "not Keras names (`dlcli summary` builds the catalogue)"
        )
    check_data(cfg)
    entries = [node.entry for node in model_graph(cfg).nodes]
    for entry in entries:
        with in_context(entry.context):
            check_layer_name(entry.class_name, entry.key_path, cfg=cfg)
            check_layer_kwargs(entry.class_name, entry.kwargs, entry.args_path, cfg=cfg)
    check_loss(cfg.compile.loss, "compile.loss", cfg=cfg, outputs=cfg.model.outputs)
    check_optimizer(cfg.compile.optimizer, "compile.optimizer", cfg=cfg)
    metrics = cfg.compile.metrics
    per_output = metrics.items() if isinstance(metrics, dict) else [(None, metrics or [])]
    for out, listed in per_output:  # a mapping: {output name: metrics}
        for i, metric in enumerate(listed if isinstance(listed, list) else [listed]):
            check_metric(metric, f"compile.metrics.{out + '.' if out else ''}{i}", cfg=cfg)
    for i, raw in enumerate(cfg.train.callbacks):
        entry = parse_entry(raw, f"train.callbacks.{i}", cfg=cfg, what="callback", graph=False)
        check_callback(entry.class_name, entry.kwargs, entry.key_path, entry.args_path, cfg=cfg)
    if cfg.finetune is not None and cfg.finetune.fine_tune_epochs > 0 and not any(e.class_name == BACKBONE for e in entries):
        raise _fail(cfg, "finetune", "fine-tuning needs a Backbone layer in model.layers", "for example Backbone: {name: mobilenet_v2}")
    cfg._notices = notices
    return notices


if __name__ == "__main__":
    sys.exit(main())
