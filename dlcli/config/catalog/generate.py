"""Generating the Keras catalogue from the installed Keras.

    python -m dlcli.config.catalog [--output FILE]

writes `dlcli/config/keras_catalog.json`: every layer, loss, optimizer,
learning-rate schedule, metric, callback, application (backbone),
activation, initializer, regularizer and constraint name Keras accepts,
and each constructor's arguments. Everything is asked of Keras's public
API: the classes `keras.layers`, `keras.losses`, ... export, their
`inspect.signature`, and Keras's own `get()` / `deserialize()`, which
decide which spellings are names. Only the aliases Keras resolves but
exports nowhere public (`mse`, `acc`) come from a private module, in one
function (`_private_aliases`). The values a layer's required arguments
take are learned by building the layer (`dlcli.config.catalog.probe`).

Run it after a Keras upgrade; a process that imports Keras anyway
regenerates a missing catalogue into the user cache (`store.ensure_catalog`).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from dlcli.config.catalog.store import FORMAT, SHIPPED_CATALOG, installed_keras_version

# keras.layers.Layer takes these two out of **kwargs itself (documented
# with Layer; no signature shows them).
LAYER_KWARGS = ("input_shape", "input_dim")
_NOT_NAMES = ("get", "serialize", "deserialize")


def _snake(name: str) -> str:
    text = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


def _variants(names: Iterable[str]) -> set[str]:
    """Spellings worth asking Keras about; Keras decides which it accepts."""
    out: set[str] = set()
    for name in names:
        if isinstance(name, str) and name and not name.startswith("_"):
            out.update((name, name.lower(), name.upper(), name.capitalize(), _snake(name)))
    return out


def constructor_args(cls: type) -> dict[str, Any]:
    """The keyword arguments `cls(...)` accepts, read from the signatures.

    Walks the MRO while each `__init__` forwards `**kwargs` to its parent
    (Conv2D takes its own, BaseConv's and Layer's arguments). The walk ends
    at a class without `**kwargs`, at keras.layers.Layer (which refuses
    leftover kwargs itself, after taking `LAYER_KWARGS`) or at Keras's
    BaseOptimizer (likewise); `open` is True when `**kwargs` leads nowhere
    known, so any argument may be accepted. The model builder checks with
    the same walk (`dlcli.model._common.check_kwargs`).

    Returns:
        {"args": sorted names, "open": bool, "required": the first
        constructor's arguments without a default, "defaults": {name: default}}.
    """
    import keras

    names: set[str] = set()
    required: Optional[list[str]] = None
    defaults: dict[str, Any] = {}
    forwards = False  # the last __init__ seen passes **kwargs on

    def result(is_open: bool) -> dict[str, Any]:
        return {"args": sorted(names), "open": is_open, "required": sorted(required or []), "defaults": defaults}

    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if klass is object:
            return result(forwards)
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return result(True)
        named = [p for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if not named and var_kw and any(p.kind is p.VAR_POSITIONAL for p in params.values()):
            forwards = True
            continue  # a pure pass-through (*args, **kwargs): look further up
        names.update(p.name for p in named)
        for p in named:
            defaults.setdefault(p.name, p.default)
        if required is None:
            required = [p.name for p in named if p.default is p.empty]
        if klass is keras.layers.Layer:
            names.update(LAYER_KWARGS)
            return result(False)
        if klass.__name__ == "BaseOptimizer" and klass.__module__.startswith("keras."):
            return result(False)
        if not var_kw:
            return result(False)
        forwards = True
    return result(True)


def _target_info(obj: Any, rules: Optional[Callable[[type, dict], dict]] = None) -> dict[str, Any]:
    if not inspect.isclass(obj):
        return {"args": None, "open": False}
    info = constructor_args(obj)
    defaults = info.pop("defaults")
    if rules is not None:
        info["values"] = rules(obj, {**info, "defaults": defaults})
    return info


def _targets(objects: dict[str, Any], rules: Optional[Callable] = None) -> tuple[dict[str, str], dict[str, dict]]:
    """Map names to their class (or function) name, and record arguments."""
    names: dict[str, str] = {}
    targets: dict[str, dict] = {}
    for name, obj in objects.items():
        if not callable(obj):
            continue
        target = obj.__name__ if inspect.isclass(obj) else getattr(obj, "__name__", name)
        if target not in targets:
            targets[target] = _target_info(obj, rules)
        names[name] = target
    return names, targets


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


def _public(module: Any) -> dict[str, Any]:
    return {n: getattr(module, n) for n in dir(module) if not n.startswith("_") and n not in _NOT_NAMES}


def _private_aliases(family: str) -> tuple[dict[str, Any], list[str]]:
    """What Keras resolves by name for `family` but exports nowhere public.

    PRIVATE KERAS, on purpose and only here: `keras.losses.get("mse")`
    works, yet no public module lists `mse`; Keras looks such aliases up
    in `keras.src.<family>.ALL_OBJECTS_DICT`, which is also the table its
    `deserialize` reads a `class_name` from. And `model.compile()` alone
    turns "acc", "ce", "crossentropy" into the right metric or loss
    (`keras.src.trainers.compile_utils`), known only to its code. Nothing
    here is trusted blindly: every name found is asked of Keras again.

    Returns:
        (aliases: name -> object, strings compile() alone accepts).
    """
    import importlib

    import numpy as np

    try:
        table = dict(getattr(importlib.import_module(f"keras.src.{family}"), "ALL_OBJECTS_DICT", {}))
    except ImportError:
        table = {}
    compile_only: list[str] = []
    resolver_name = {"losses": "get_loss", "metrics": "get_metric"}.get(family)
    try:
        compile_utils = importlib.import_module("keras.src.trainers.compile_utils")
        resolver = getattr(compile_utils, resolver_name) if resolver_name else None
    except (ImportError, AttributeError):
        resolver = None
    if resolver is not None:
        y_true, y_pred = np.zeros((2, 1), "float32"), np.zeros((2, 3), "float32")
        consts = [c for const in resolver.__code__.co_consts for c in (const if isinstance(const, tuple) else (const,))]
        words = {c for c in consts if isinstance(c, str) and c.isidentifier()}
        compile_only = _accepted(lambda name: resolver(name, y_true, y_pred), _variants(words))
    return table, compile_only


def _class_names(module: Any, candidates: Iterable[str]) -> list[str]:
    """The candidates Keras's `get` accepts as `{class_name: ...}`: built,
    or refused by the class itself for want of arguments (a TypeError or
    KeyError from its constructor); Keras refuses a name it cannot
    deserialize (unknown, or a plain function alias) with a ValueError."""
    found = []
    for name in sorted(set(candidates)):
        try:
            _quiet_call(module.get, {"class_name": name, "config": {}})
        except (TypeError, KeyError):
            pass  # located, but it needs arguments
        except Exception:  # noqa: BLE001 - not a class name to Keras
            continue
        found.append(name)
    return found


def _mixed(name: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


def _keras_refs(module: Any, family: str, base: type) -> dict[str, Any]:
    """Names of a loss/metric/optimizer family, as strings and as class_name."""
    aliases, compile_only = _private_aliases(family)
    public = {n: o for n, o in _public(module).items()
              if (inspect.isclass(o) and issubclass(o, base) and o is not base) or inspect.isfunction(o)}
    objects = {**public, **{n: o for n, o in aliases.items() if callable(o) and o is not base}}
    class_names = _class_names(module, _variants(objects))
    dict_names, targets = _targets({n: objects.get(n) or objects.get(n.lower()) for n in class_names if n in objects})
    names = sorted(set(_accepted(module.get, _variants(objects))) | set(compile_only))
    # Optimizers resolve a class_name case-insensitively: find out by asking,
    # with a mIxEd-case spelling no one registers.
    probes = [_mixed(n) for n in sorted(dict_names) if _mixed(n) not in set(dict_names) | set(names)]
    case_insensitive = bool(probes) and bool(_class_names(module, probes[:3]))
    return {"names": names, "dict_names": dict_names, "targets": targets, "dict_case_insensitive": case_insensitive}


def _classes(module: Any, base: type, rules: Optional[Callable] = None) -> dict[str, Any]:
    objects = {n: o for n, o in _public(module).items() if inspect.isclass(o) and issubclass(o, base)}
    names, targets = _targets(objects, rules)
    return {"names": sorted(names), "dict_names": names, "targets": targets}


def _backbones(keras: Any) -> dict[str, Any]:
    functions = {n: o for n, o in _public(keras.applications).items()
                 if inspect.isfunction(o) and "include_top" in inspect.signature(o).parameters}
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


def _simple(module: Any, family: str) -> dict[str, Any]:
    aliases, _ = _private_aliases(family)
    return {"names": _accepted(module.get, _variants(list(aliases) + list(_public(module))))}


def _layers(keras: Any, probe: bool) -> dict[str, Any]:
    from dlcli.config.catalog.probe import default_rules, value_rules

    base = keras.layers.Layer
    objects = {n: o for n, o in _public(keras.layers).items() if inspect.isclass(o) and issubclass(o, base)}
    # Layers registered with @keras.saving.register_keras_serializable.
    for name, obj in keras.saving.get_custom_objects().items():
        if inspect.isclass(obj) and issubclass(obj, base):
            objects.setdefault(name, obj)
    names, targets = _targets(objects, value_rules if probe else default_rules)
    return {"names": sorted(names), "dict_names": names, "targets": targets}


def generate(probe: bool = True) -> dict[str, Any]:
    """Build the catalogue by asking the installed Keras.

    Args:
        probe: learn the values of required layer arguments by building
            layers (creates TensorFlow variables: not in a process that
            has yet to make its distribution strategy); without, only the
            defaults' types are recorded.

    Returns:
        The catalogue as plain JSON-ready data, tagged with the Keras
        version it came from.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return {
        "format": FORMAT,
        "keras_version": installed_keras_version() or keras.__version__,
        "generator": "python -m dlcli.config.catalog",
        "probed": probe,
        "layers": _layers(keras, probe),
        "losses": _keras_refs(keras.losses, "losses", keras.losses.Loss),
        "metrics": _keras_refs(keras.metrics, "metrics", keras.metrics.Metric),
        "optimizers": _keras_refs(keras.optimizers, "optimizers", keras.optimizers.Optimizer),
        "schedules": _classes(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "callbacks": _classes(keras.callbacks, keras.callbacks.Callback),
        "backbones": _backbones(keras),
        "activations": _simple(keras.activations, "activations"),
        "initializers": _simple(keras.initializers, "initializers"),
        "regularizers": _simple(keras.regularizers, "regularizers"),
        "constraints": _simple(keras.constraints, "constraints"),
    }


def main(argv: Optional[list[str]] = None) -> int:
    """Regenerate `dlcli/config/keras_catalog.json` from the installed Keras."""
    import argparse
    import json

    from dlcli.runs import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m dlcli.config.catalog", description=main.__doc__)
    parser.add_argument("--output", "-o", type=Path, default=SHIPPED_CATALOG, help="where to write the JSON")
    args = parser.parse_args(argv)
    data = generate()
    atomic_write_text(args.output, json.dumps(data, indent=1, sort_keys=True) + "\n")
    kinds = ("layers", "losses", "metrics", "optimizers", "schedules", "callbacks", "backbones")
    counts = ", ".join(f"{len(data[k]['names'])} {k}" for k in kinds)
    print(f"wrote {args.output} (keras {data['keras_version']}: {counts})", file=sys.stderr)
    return 0
