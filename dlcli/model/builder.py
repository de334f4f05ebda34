"""Build a Keras model from `model.layers`, a stack or a graph.

Each entry is `ClassName` or `{ClassName: {kwargs}}`, optionally with
`name:` and `inputs:` (beside the class or inside its arguments). An entry
without `inputs:` takes the previous entry's output, the first one the
model's input; with them the entries form a graph (skip connections into
`Add` / `Concatenate`, several inputs from `model.inputs`, several outputs
from `model.outputs`). The graph is built with the functional API,
constructing and calling each layer in turn, exactly as hand-written Keras
code does, so a config model starts from the same weights as its
hand-written twin under the same seed.

Classes come from Keras: `keras.layers.<ClassName>`, objects registered
with `keras.saving.register_keras_serializable`, or a dotted import path
(`mypkg.layers.Gate`) for a custom layer. Besides, `Backbone` builds a
`keras.applications` model (see `backbones.py`).

Every mistake becomes a ConfigError located at `model.layers.<i>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import keras

from dlcli.errors import DlcliError
from dlcli.model._common import (
    cfg_error,
    check_kwargs,
    did_you_mean,
    import_dotted,
    public_names,
    short_message,
    split_entry,
)
from dlcli.model.backbones import apply_backbone

# The name a single model input goes by in `inputs:` lists.
INPUT_NAME = "input"
# A kwarg value that stands for the data's number of classes.
NUM_CLASSES = "num_classes"
# Arguments through which Keras wrappers take another layer
# (Bidirectional, TimeDistributed, RNN, StackedRNNCells).
_LAYER_ARGS = ("layer", "backward_layer", "cell")
_LAYER_LIST_ARGS = ("cells",)
# Argument-name endings and the Keras module that resolves their values.
_OBJECT_ARGS = {
    "_initializer": "initializers",
    "_regularizer": "regularizers",
    "_constraint": "constraints",
}


@dataclass
class _Node:
    index: int
    key: str
    class_name: str
    kwargs: dict[str, Any]
    node_id: str
    name: Optional[str]
    inputs: Any
    deps: list[str] = field(default_factory=list)
    takes_list: bool = False


def build_model(cfg: Any, input_shape: Optional[tuple] = None, *, num_classes: Optional[int] = None) -> keras.Model:
    """Build the uncompiled Keras model `cfg.model` describes.

    Args:
        cfg: the Config.
        input_shape: one sample's shape from the data (no batch axis);
            `model.input_shape` overrides it, `model.inputs` replaces it.
        num_classes: the data's class count; a layer argument written as
            `num_classes` (e.g. `Dense: {units: num_classes}`) takes it.

    Returns:
        A Functional `keras.Model` named `model.name` (default: the
        config's name).

    Raises:
        ConfigError: located at `model.layers.<i>` (unknown layer with a
            suggestion, unknown or missing argument, a value Keras rejects,
            an input shape a layer cannot take, graph mistakes), at
            `model.input_shape` (no shape known) or `model.outputs`.
        DataError: a Backbone's ImageNet weights are not cached and
            cannot be downloaded.
    """
    m = cfg.model
    inputs = _make_inputs(cfg, input_shape)
    nodes = [_parse_node(i, raw, cfg) for i, raw in enumerate(m.layers)]
    _link(nodes, inputs, cfg)
    order = _topological_order(nodes, cfg)
    outputs = _output_ids(nodes, inputs, cfg)

    mixed = keras.config.dtype_policy().name.startswith("mixed")
    tensors: dict[str, Any] = dict(inputs)
    for node in order:
        args = [tensors[d] for d in node.deps]
        x = args if node.takes_list else args[0]
        tensors[node.node_id] = _apply(node, x, cfg, num_classes, float32_output=mixed and node.node_id in outputs)

    model_inputs = list(inputs.values())
    model_outputs = [tensors[o] for o in outputs]
    name = str(m.name or getattr(cfg, "name", None) or "model").replace("/", "_")
    try:
        return keras.Model(
            model_inputs[0] if len(model_inputs) == 1 else model_inputs,
            model_outputs[0] if len(model_outputs) == 1 else model_outputs,
            name=name,
        )
    except (ValueError, TypeError) as exc:
        raise cfg_error(cfg, "model.layers", f"Keras cannot assemble the model: {short_message(exc)}") from None


# ---------------------------------------------------------------------------
# Inputs and graph structure


def _shape(value: Any, *, cfg: Any, key: str) -> tuple:
    try:
        shape = tuple(None if d is None else int(d) for d in value)
    except (TypeError, ValueError):
        raise cfg_error(cfg, key, f"an input shape is a list of sizes (null for any), got {value!r}") from None
    if not shape or any(d is not None and d < 1 for d in shape):
        raise cfg_error(cfg, key, f"invalid input shape {list(value)!r}")
    return shape


def _make_inputs(cfg: Any, input_shape: Optional[tuple]) -> dict[str, Any]:
    m = cfg.model
    if m.inputs:
        return {str(n): keras.Input(shape=_shape(s, cfg=cfg, key=f"model.inputs.{n}"), name=str(n)) for n, s in m.inputs.items()}
    if m.input_shape:
        shape = _shape(m.input_shape, cfg=cfg, key="model.input_shape")
    elif input_shape:
        shape = _shape(input_shape, cfg=cfg, key="model.input_shape")
    else:
        raise cfg_error(cfg, "model.input_shape", "the input shape is unknown: the data gives none and model.input_shape is not set",
                        hint="set model.input_shape, e.g. [28, 28, 1]")
    return {INPUT_NAME: keras.Input(shape=shape, name=INPUT_NAME)}


def _parse_node(index: int, raw: Any, cfg: Any) -> _Node:
    key = f"model.layers.{index}"
    class_name, kwargs, name, inputs = split_entry(raw, cfg=cfg, key=key)
    if class_name != "Backbone":
        # For a layer, `name` inside the arguments is the Keras layer name
        # and the node's name alike; for Backbone it names the architecture.
        if name is not None and "name" in kwargs and kwargs["name"] != name:
            raise cfg_error(cfg, key, f"`name:` given twice ({name!r} beside {class_name}, {kwargs['name']!r} inside its arguments)")
        if name is None and "name" in kwargs:
            name = str(kwargs["name"])
        if name is not None:
            kwargs["name"] = name
    node_id = name if name is not None else f"#{index}"
    return _Node(index, key, class_name, kwargs, node_id, name, inputs)


def _link(nodes: list[_Node], inputs: dict[str, Any], cfg: Any) -> None:
    """Fill each node's dependencies; check names are unique and known."""
    owner: dict[str, str] = {n: "model input" for n in inputs}
    for node in nodes:
        if node.name is None:
            continue
        if node.name in owner:
            raise cfg_error(cfg, node.key, f"layer name '{node.name}' is already used by {owner[node.name]}",
                            hint="give every layer its own name")
        owner[node.name] = node.key
    known = [n for n in owner]
    for node in nodes:
        if node.inputs is None:
            if node.index > 0:
                node.deps = [nodes[node.index - 1].node_id]
            elif len(inputs) == 1:
                node.deps = [next(iter(inputs))]
            else:
                raise cfg_error(cfg, node.key, f"the model has {len(inputs)} inputs ({', '.join(inputs)}); say which this layer takes",
                                hint=f"add inputs: {next(iter(inputs))}")
            continue
        refs = node.inputs if isinstance(node.inputs, list) else [node.inputs]
        if not refs:
            raise cfg_error(cfg, node.key, "inputs: is empty", hint="name an earlier layer or a model input")
        for ref in refs:
            if not isinstance(ref, str):
                raise cfg_error(cfg, node.key, f"inputs: names layers or model inputs, got {ref!r}")
            if ref not in owner:
                raise cfg_error(cfg, node.key, f"inputs: '{ref}' is not a layer or model input",
                                hint=did_you_mean(ref, known) or f"known: {', '.join(known)}")
            if ref == node.name:
                raise cfg_error(cfg, node.key, f"layer '{ref}' takes its own output (a cycle)")
        node.deps = list(refs)
        node.takes_list = isinstance(node.inputs, list) and len(refs) > 1


def _topological_order(nodes: list[_Node], cfg: Any) -> list[_Node]:
    """Order nodes so every input comes first; file order where free."""
    by_id = {n.node_id: n for n in nodes}
    pending = {n.node_id: {d for d in n.deps if d in by_id} for n in nodes}
    order: list[_Node] = []
    done: set[str] = set()
    while len(order) < len(nodes):
        ready = [n for n in nodes if n.node_id not in done and pending[n.node_id] <= done]
        if not ready:
            cycle = _find_cycle(nodes, pending, done)
            first = by_id[cycle[0]]
            raise cfg_error(cfg, first.key, "the layers form a cycle: " + " -> ".join(_label(by_id[c]) for c in cycle + cycle[:1]),
                            hint="inputs: must point to layers that do not depend on this one")
        # Take the earliest ready node, so a plain stack keeps its order.
        node = ready[0]
        order.append(node)
        done.add(node.node_id)
    return order


def _find_cycle(nodes: list[_Node], pending: dict[str, set[str]], done: set[str]) -> list[str]:
    start = next(n.node_id for n in nodes if n.node_id not in done)
    path: list[str] = []
    seen: dict[str, int] = {}
    current = start
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(d for d in sorted(pending[current]) if d not in done)
    # `path` follows inputs backwards; show the data flow, from the first entry.
    cycle = path[seen[current]:][::-1]
    index = {n.node_id: n.index for n in nodes}
    first = min(range(len(cycle)), key=lambda i: index[cycle[i]])
    return cycle[first:] + cycle[:first]


def _label(node: _Node) -> str:
    return node.name if node.name is not None else f"{node.class_name} ({node.key})"


def _output_ids(nodes: list[_Node], inputs: dict[str, Any], cfg: Any) -> list[str]:
    names = cfg.model.outputs
    if not names:
        return [nodes[-1].node_id]
    known = [n.name for n in nodes if n.name is not None]
    for i, out in enumerate(names):
        if out not in known:
            raise cfg_error(cfg, f"model.outputs.{i}", f"no layer named '{out}'",
                            hint=did_you_mean(out, known) or "outputs name layers that carry `name:`")
    return [str(o) for o in names]


# ---------------------------------------------------------------------------
# Layers


def _apply(node: _Node, x: Any, cfg: Any, num_classes: Optional[int], *, float32_output: bool) -> Any:
    """Construct the node's layer and call it on `x`."""
    if node.class_name == "Backbone":
        return apply_backbone(x, node.kwargs, cfg=cfg, key=node.key)
    kwargs = dict(node.kwargs)
    if float32_output and "dtype" not in kwargs:
        # Mixed precision: outputs stay float32 for a stable loss (Keras guide).
        kwargs["dtype"] = "float32"
    layer = make_layer(node.class_name, kwargs, cfg=cfg, key=node.key, num_classes=num_classes)
    try:
        return layer(x)
    except DlcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a layer on its input is the config's
        what = f"{node.class_name}{_quoted(node.name)}"
        raise cfg_error(cfg, node.key, f"{what} cannot take its input of shape {_shape_text(x)}: {short_message(exc)}",
                        hint=_call_hint(exc, node.class_name)) from None


def _quoted(name: Optional[str]) -> str:
    return f" '{name}'" if name else ""


def _shape_text(x: Any) -> str:
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_shape_text(t) for t in x) + "]"
    return str(tuple(x.shape))


def _call_hint(exc: BaseException, class_name: str) -> Optional[str]:
    text = str(exc)
    if "expected ndim=3" in text or "expected min_ndim=3" in text:
        return f"{class_name} takes sequences (batch, steps, features): for images use data.sequence: true or a Reshape layer"
    if "expected ndim=4" in text or "expected min_ndim=4" in text:
        return f"{class_name} takes images (batch, height, width, channels): add a Reshape layer or check model.input_shape"
    if "expected ndim=2" in text or "expected axis" in text:
        return "add a Flatten or GlobalAveragePooling2D layer before it"
    if "negative" in text.lower() or "too small" in text.lower():
        return "the input is too small for this kernel/pool size: add padding: same or shrink it"
    return None


def layer_class_names() -> list[str]:
    """Every Keras layer class name, plus `Backbone` (for suggestions)."""
    return [n for n in dir(keras.layers) if isinstance(getattr(keras.layers, n), type)
            and issubclass(getattr(keras.layers, n), keras.layers.Layer)] + ["Backbone"]


def layer_class(name: str, *, cfg: Any = None, key: str = "model.layers") -> type:
    """Resolve a layer class by Keras name, registered name or dotted path.

    Raises:
        ConfigError: unknown name, with the closest Keras layer name.
    """
    if "." in name:
        cls = import_dotted(name, cfg=cfg, key=key, kind="layer", base=keras.layers.Layer)
        # Registered under the name Keras writes into model files, so that
        # reloading in this process finds it (other processes import it
        # where the user trusts its module: dlcli.model.trust). Never over a
        # Keras name: that would take over every such layer.
        from dlcli.model.trust import register

        try:
            register(cls)
        except ValueError as exc:
            raise cfg_error(cfg, key, str(exc)) from None
        return cls
    obj = getattr(keras.layers, name, None)
    if isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
        return obj
    if name in ("Input", "InputLayer"):
        raise cfg_error(cfg, key, f"{name} is not a layer entry: the input comes from the data",
                        hint="set model.input_shape (one input) or model.inputs (several) instead")
    registered = keras.saving.get_registered_object(name)
    if registered is None:
        matches = [obj for reg, obj in keras.saving.get_custom_objects().items() if reg.rsplit(">", 1)[-1] == name]
        registered = matches[0] if len(matches) == 1 else None
    if isinstance(registered, type) and issubclass(registered, keras.layers.Layer):
        return registered
    raise cfg_error(cfg, key, f"unknown layer '{name}'",
                    hint=did_you_mean(name, layer_class_names()) or "a Keras layer class name (keras.layers), or a dotted path to your own")


def make_layer(class_name: str, kwargs: Mapping[str, Any], *, cfg: Any = None, key: str = "model.layers",
               num_classes: Optional[int] = None) -> keras.layers.Layer:
    """Construct one Keras layer from a config entry's class and arguments.

    Nested configs are resolved first, as hand-written code would build
    them: a `layer:` / `backward_layer:` / `cell:` / `cells:` argument given
    as an entry (`Bidirectional: {layer: {LSTM: {units: 32}}}`), and
    initializers, regularizers and constraints in the `{L2: {l2: 0.01}}`
    short form (names and `{class_name, config}` go to Keras unchanged).

    Raises:
        ConfigError: located at `key`.
    """
    if class_name == "Backbone":
        raise cfg_error(cfg, key, "Backbone cannot be nested inside another layer")
    cls = layer_class(class_name, cfg=cfg, key=key)
    check_kwargs(cls, kwargs, cfg=cfg, key=key, what=class_name)
    prepared = {k: _prepare_value(k, v, cfg=cfg, key=key, num_classes=num_classes) for k, v in kwargs.items()}
    try:
        return cls(**prepared)
    except DlcliError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _construction_error(class_name, prepared, exc, cfg, key) from None


def _prepare_value(arg: str, value: Any, *, cfg: Any, key: str, num_classes: Optional[int]) -> Any:
    if isinstance(value, str) and value == NUM_CLASSES:
        if num_classes is None:
            raise cfg_error(cfg, key, f"{arg}: num_classes needs the data's class count, and the data has none",
                            hint="write the number itself")
        return int(num_classes)
    if arg in _LAYER_ARGS and _is_layer_entry(value):
        return _nested_layer(value, cfg=cfg, key=key, arg=arg, num_classes=num_classes)
    if arg in _LAYER_LIST_ARGS and isinstance(value, list) and all(_is_layer_entry(v) for v in value):
        return [_nested_layer(v, cfg=cfg, key=key, arg=arg, num_classes=num_classes) for v in value]
    if any(arg.endswith(sfx) for sfx in _OBJECT_ARGS) and isinstance(value, Mapping) and "class_name" not in value and len(value) == 1:
        ((name, config),) = value.items()
        if config is not None and not isinstance(config, Mapping):
            raise cfg_error(cfg, key, f"{arg}: {{{name}: ...}} takes a mapping of arguments, got {config!r}")
        return {"class_name": str(name), "config": dict(config or {})}
    return value


def _is_layer_entry(value: Any) -> bool:
    if isinstance(value, str):
        return value != NUM_CLASSES
    return isinstance(value, Mapping) and "class_name" not in value


def _nested_layer(value: Any, *, cfg: Any, key: str, arg: str, num_classes: Optional[int]) -> keras.layers.Layer:
    class_name, kwargs, _, _ = split_entry(value, cfg=cfg, key=key, allow_graph=False)
    return make_layer(class_name, kwargs, cfg=cfg, key=key, num_classes=num_classes)


def _object_module(arg: str) -> Optional[tuple[str, Any]]:
    if arg in ("activation", "recurrent_activation"):
        return "activation", keras.activations
    for sfx, module in _OBJECT_ARGS.items():
        if arg.endswith(sfx):
            return sfx.strip("_"), getattr(keras, module)
    return None


def _construction_error(class_name: str, kwargs: Mapping[str, Any], exc: BaseException, cfg: Any, key: str) -> Exception:
    """Say which argument Keras refused, with a suggestion where one exists."""
    for arg, value in kwargs.items():
        found = _object_module(arg)
        if found is None or not isinstance(value, (str, Mapping)):
            continue
        kind, module = found
        try:
            module.get(value)
        except Exception:  # noqa: BLE001 - this argument is the culprit
            name = value if isinstance(value, str) else value.get("class_name")
            return cfg_error(cfg, key, f"{class_name}: unknown {kind} '{name}' for {arg}", hint=did_you_mean(name, public_names(module)))
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if not isinstance(v, keras.layers.Layer))
    return cfg_error(cfg, key, f"{class_name} rejected its arguments: {short_message(exc)}", hint=f"given: {shown}" if shown else None)
