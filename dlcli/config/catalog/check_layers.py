"""Checking layer entries against the Keras catalogue (no TensorFlow).

A layer's class name, its argument names, the values of those arguments
(`units: "8"`, `rate: 1.5`, a missing `units`), the string names of its
activation, initializer, regularizer and constraint arguments, the layers
nested in wrappers (`Bidirectional: {layer: {LSTM: {...}}}`, also in
Keras's `{class_name, config}` form) and dotted paths to a user's own layer
class. Given a `cfg`, every error is located at its file and line.
"""

from __future__ import annotations

import ast
import sys
from typing import TYPE_CHECKING, Any, Optional

from dlcli.config.catalog.store import get_catalog
from dlcli.config.graph import fail, keras_layer_name, kind
from dlcli.config.imports import check_import_path, module_file, user_path
from dlcli.config.suggest import did_you_mean, one_of

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.config.schema import Config

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
# Keys a `{class_name, config}` reference may carry; Keras's own serialized
# form adds `module` and `registered_name`, accepted so pasted configs work.
REF_KEYS = ("class_name", "config", "module", "registered_name")
# Layer arguments that take a layer (or a list of layers) as an entry.
NESTED_LAYER_ARGS = ("layer", "backward_layer", "cell")
NESTED_LAYER_LIST_ARGS = ("cells",)
# A value that stands for the data's number of classes (the model builder's).
NUM_CLASSES = "num_classes"
# Layer arguments whose string values name a Keras object of a category.
_VALUE_CATEGORIES = (
    ("activation", "activations"),
    ("_initializer", "initializers"),
    ("_regularizer", "regularizers"),
    ("_constraint", "constraints"),
)
# Bases that make a class plainly not a layer.
_NOT_LAYER_BASES = frozenset({"object", "dict", "list", "tuple", "set", "str", "int", "float", "Exception", "type"})
# How many `from x import y` a dotted path is followed through.
_MAX_REEXPORTS = 6


def locator(cfg: Optional["Config"]) -> Any:
    """`fail(key, message, hint)` for `check_import_path`, located with `cfg`."""
    return lambda key, message, hint=None: fail(cfg, key, message, hint)


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


def check_layer_name(class_name: str, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check that a layer class exists in Keras (or is dlcli's or an import path).

    Raises:
        ConfigError: an unknown layer, with the closest Keras name; a
            dotted path that names no layer class.
    """
    if class_name in EXTRA_LAYERS:
        return
    cat = get_catalog()
    if "." in class_name:
        check_import_path(class_name, key_path, locator(cfg), kind="layer")
        module, _, attr = class_name.rpartition(".")
        if module == "keras.layers" and cat is not None:
            plainly_not = cat.dict_target("layers", attr) is None
        else:
            plainly_not = _names_no_layer(module, attr, 0)
        if plainly_not:
            raise fail(cfg, key_path, f"'{class_name}' is not a Keras layer class (a subclass of keras.layers.Layer)")
        return
    if cat is None or cat.dict_target("layers", class_name) is not None or _live_registered(class_name):
        return
    raise fail(cfg, key_path, f"unknown layer '{class_name}'", did_you_mean(class_name, cat.names("layers") + list(EXTRA_LAYERS)))


def _names_no_layer(module: str, name: str, depth: int) -> bool:
    """True when `module.name`, read from source (nothing imported), is
    plainly not a layer class: a function, or a class whose bases are all
    plainly not layers. `from x import name` is followed; anything unsure
    (no source, a base from elsewhere) is left to the builder."""
    try:
        path = module_file(module)
        tree = ast.parse(path.read_text(encoding="utf-8")) if path is not None else None
    except (ImportError, ValueError, OSError, SyntaxError, UnicodeDecodeError):
        return False
    if tree is None:
        return False
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for node in reversed(tree.body):  # the last binding wins
        if isinstance(node, ast.ClassDef) and node.name == name:
            return not _may_be_layer(node, classes, set())
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom) and depth < _MAX_REEXPORTS:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(node, module, str(path))
                    return source is not None and _names_no_layer(source, alias.name, depth + 1)
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Import)):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            bound = [t.id for t in targets if isinstance(t, ast.Name)] + [
                (a.asname or a.name) for a in getattr(node, "names", [])]
            if name in bound:
                return False
    return False


def _absolute(node: ast.ImportFrom, module: str, path: str) -> Optional[str]:
    """The module a `from ... import` reads from, made absolute."""
    if not node.level:
        return node.module
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _may_be_layer(node: Any, classes: dict[str, Any], seen: set[str]) -> bool:
    """False when every base of the class is plainly not a layer."""
    for base in node.bases:
        text = ast.unparse(base)
        if text in classes and text not in seen:
            seen.add(text)
            if _may_be_layer(classes[text], classes, seen):
                return True
        elif text.rsplit(".", 1)[-1] not in _NOT_LAYER_BASES:
            return True
    return False


def check_layer_kwargs(class_name: str, kwargs: dict[str, Any], key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a layer's arguments against its Keras constructor: names,
    required ones, values, and the string names of activation,
    initializer, regularizer and constraint arguments (`activation: rellu`).

    Args:
        class_name: the layer class.
        kwargs: its arguments.
        key_path: the path of the arguments (`model.layers.1.Conv2D`).
        cfg: the config, to locate errors.

    Raises:
        ConfigError: an argument the class does not take (with the
            closest), a required one missing, a value Keras refuses.
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
        check_args(class_name, kwargs, info, key_path, cfg)
        check_values(class_name, kwargs, info, key_path, cfg)
    for arg, value in kwargs.items():
        if user_path(value) is not None:
            check_import_path(user_path(value)[0], f"{key_path}.{arg}", locator(cfg), kind=arg, functions=True)
            continue
        if not isinstance(value, str):
            continue
        for suffix, category in _VALUE_CATEGORIES:
            if arg.endswith(suffix) and cat.names(category) and not cat.accepts(category, value):
                raise fail(cfg, f"{key_path}.{arg}", f"unknown {category[:-1]} '{value}' for {class_name}",
                           did_you_mean(value, cat.names(category)))


def check_args(owner: str, kwargs: dict[str, Any], info: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    """Refuse an argument `owner` does not take (with the closest one)."""
    args = info.get("args")
    if args is None:
        if kwargs:
            raise fail(cfg, key_path, f"{owner} is a function and takes no config", "use its class name to pass arguments")
        return
    if info.get("open"):
        return
    for k in kwargs:
        if k not in args:
            hint = did_you_mean(k, args) or (one_of(args) if args else f"{owner} takes no arguments")
            raise fail(cfg, f"{key_path}.{k}", f"{owner} has no argument '{k}'", hint)


def check_values(owner: str, kwargs: dict[str, Any], info: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    """Refuse a missing required argument, or a value Keras would refuse
    (the catalogue's rules, learned from Keras: `dlcli.config.catalog.probe`)."""
    missing = [a for a in info.get("required") or [] if a not in kwargs]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise fail(cfg, key_path, f"{owner} needs argument{'s' if len(missing) > 1 else ''} {names}",
                   f"write it as {owner}: {{{missing[0]}: ...}}")
    for arg, rule in (info.get("values") or {}).items():
        if arg in kwargs:
            problem = value_problem(kwargs[arg], rule)
            if problem is not None:
                hint = "write the number without quotes" if _numeric_text(kwargs[arg]) and rule["kind"] != "bool" else None
                raise fail(cfg, f"{key_path}.{arg}", f"{owner}: {arg} {problem}", hint)


def _numeric_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and float(value) is not None
    except ValueError:
        return False


def wanted(rule: dict[str, Any]) -> str:
    """What a rule asks for, in a user's words ("a positive integer")."""
    if rule["kind"] == "bool":
        return "true or false"
    low, high, open_ = rule.get("min"), rule.get("max"), rule.get("min_open")
    if rule["kind"] == "int":
        text = {1: "a positive integer", 0: "a non-negative integer"}.get(low, "an integer")
    elif low == 0 and high == 1:
        text = "a number from 0 to 1"
    else:
        text = "a positive number" if low == 0 and open_ else "a non-negative number" if low == 0 else "a number"
    if not rule.get("scalar", True):
        return f"a list of {text.split(' ', 1)[1]}s"
    if rule.get("seq") and not rule.get("loose"):
        sizes = " or ".join(str(n) for n in rule.get("lengths") or [])
        return f"{text} or a list of {sizes + ' ' if sizes else ''}such"
    return text


def value_problem(value: Any, rule: dict[str, Any]) -> Optional[str]:
    """What is wrong with an argument's value under its rule, or None.

    Returns:
        "must be a positive integer, got '8'"-style text, or None.
    """
    if value is None:
        return None if rule.get("none", True) else f"must be {wanted(rule)}, got null"
    if rule["kind"] == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
    if isinstance(value, list):
        fits = ((rule.get("seq") or rule.get("loose")) and len(value) in (rule.get("lengths") or [len(value)])
                and all(_fits(v, rule) for v in value))
    else:
        fits = rule.get("scalar", True) and _fits(value, rule)
    return None if fits else f"must be {wanted(rule)}, got {_shown(value)}"


def _shown(value: Any) -> str:
    """A value as a YAML user wrote it (true, not True), or its kind when long."""
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 40 else kind(value)


def _fits(value: Any, rule: dict[str, Any]) -> bool:
    if isinstance(value, str):
        return value == NUM_CLASSES and rule["kind"] == "int"
    if isinstance(value, list) and rule.get("loose"):
        return all(_fits(v, rule) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if rule.get("loose"):
        return True
    if rule["kind"] == "int" and isinstance(value, float) and not (value.is_integer() and rule.get("whole_floats")):
        return False
    low, high = rule.get("min"), rule.get("max")
    if low is not None and (value < low or (rule.get("min_open") and value == low)):
        return False
    return high is None or value <= high


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

    def flat(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    by_flat = {flat(n): t for n, t in cat.data.get("backbones", {}).get("dict_names", {}).items()}
    return by_flat.get(flat(name))


def _check_backbone(kwargs: dict[str, Any], key_path: str, cfg: Optional["Config"]) -> None:
    name = kwargs.get("name")
    weights = kwargs.get("weights")
    if (isinstance(weights, str) and weights.lower() not in {"imagenet", "none", "null", "random", ""}
            and not weights.endswith(".h5")):
        # A dlcli run folder or .keras file as the backbone: the builder
        # reads the model from there (existence is checked when it builds).
        allowed = ["name", "weights", "trainable", "fine_tune_at", "preprocess"]
        for k in kwargs:
            if k not in allowed:
                raise fail(cfg, f"{key_path}.{k}", f"a Backbone from a run takes no argument '{k}'", one_of(allowed))
        return
    if not isinstance(name, str) or not name:
        raise fail(cfg, key_path, "Backbone needs name: a keras.applications model", "for example name: mobilenet_v2")
    allowed = list(BACKBONE_ARGS)
    cat = get_catalog()
    if cat is not None:
        target = backbone_target(name)
        if target is None:
            raise fail(cfg, f"{key_path}.name", f"unknown backbone '{name}'",
                       did_you_mean(name, cat.names("backbones")) or "see keras.applications")
        # The application's own options (alpha, include_preprocessing, ...)
        # pass through; those the builder sets itself do not.
        info = cat.arguments("backbones", target) or {}
        allowed += [a for a in info.get("args") or [] if a not in BACKBONE_APP_ARGS_SET_BY_DLCLI and a not in allowed]
    for k in kwargs:
        if k not in allowed:
            raise fail(cfg, f"{key_path}.{k}", f"Backbone has no argument '{k}'", did_you_mean(k, allowed) or one_of(allowed))


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
            name = keras_layer_name(str(name))
            if name == BACKBONE:
                raise fail(cfg, key, "Backbone cannot be nested inside another layer")
            check_layer_name(str(name), key, cfg=cfg)
            check_layer_kwargs(str(name), inner, key, cfg=cfg)

