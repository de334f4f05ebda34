"""Build a Keras model from `model.layers`, a stack or a graph.

Each entry is `ClassName` or `{ClassName: {kwargs}}`, optionally with
`name:` and `inputs:` (beside the class or inside its arguments). An entry
without `inputs:` takes the previous entry's output, the first one the
model's input; with them the entries form a graph (skip connections into
`Add` / `Concatenate`, several inputs from `model.inputs`, several outputs
from `model.outputs`, call arguments such as `{query: x, value: ctx}`,
element N of a layer's outputs as `name.N`). Blocks are expanded and the
graph is checked and ordered on the config side (`dlcli.config.graph`),
once for `dlcli validate` and the builder alike. The graph is built with the functional API,
constructing and calling each layer in turn, exactly as hand-written Keras
code does, so a config model starts from the same weights as its
hand-written twin under the same seed.

Classes come from Keras: `keras.layers.<ClassName>`, objects registered
with `keras.saving.register_keras_serializable`, or a dotted import path
(`mypkg.layers.Gate`) for a custom layer. Besides, `Backbone` builds a
`keras.applications` model (see `backbone_build.py`).

Every mistake becomes a ConfigError located at `model.layers.<i>`.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import keras

from dlcli.config.graph import Node, Ref, in_context, model_graph, parse_entry
from dlcli.errors import DlcliError
from dlcli.model._common import (
    cfg_error,
    check_kwargs,
    did_you_mean,
    import_dotted,
    public_names,
    short_message,
    user_object,
)
from dlcli.model.backbone_build import apply_backbone

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
    graph = model_graph(cfg)
    inputs = _make_inputs(cfg, input_shape, graph.inputs)
    outputs = {o.node for o in graph.outputs}

    mixed = keras.config.dtype_policy().name.startswith("mixed")
    tensors: dict[str, Any] = dict(inputs)
    for node in graph.nodes:
        with in_context(node.entry.context):
            tensors[node.node_id] = _apply(node, tensors, cfg, num_classes, float32_output=mixed and node.node_id in outputs)

    model_inputs = list(inputs.values())
    model_outputs = [_tensor(tensors, ref, cfg, "model.outputs") for ref in graph.outputs]
    from dlcli.runs import keras_name

    # TensorFlow takes few characters in names: `my iris`, `_base` and
    # non-ASCII run names (file stems) would not build.
    name = keras_name(str(m.name or getattr(cfg, "name", None) or "model"))
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


def _data_input(name: str, shape: Any, cfg: Any) -> Any:
    """A model input shaped as the data says: a shape, or {shape, dtype}
    (raw strings take shape [] and dtype string)."""
    if isinstance(shape, Mapping):
        dims = tuple(shape.get("shape") or ())
        return keras.Input(shape=_shape(dims, cfg=cfg, key="model.inputs") if dims else (), dtype=shape.get("dtype"), name=name)
    return keras.Input(shape=_shape(shape, cfg=cfg, key="model.input_shape"), name=name)


def _make_inputs(cfg: Any, input_shape: Any, names: list[str]) -> dict[str, Any]:
    m = cfg.model
    if m.inputs:
        return _named_inputs(cfg, input_shape)
    if isinstance(input_shape, Mapping) and "shape" not in input_shape:
        # Named inputs whose shapes come from the data.
        return {str(n): _data_input(str(n), input_shape[n], cfg) for n in names}
    if isinstance(input_shape, Mapping) and not m.input_shape:
        # One input of raw strings.
        return {names[0]: _data_input(names[0], input_shape, cfg)}
    if m.input_shape:
        shape = _shape(m.input_shape, cfg=cfg, key="model.input_shape")
    elif input_shape:
        shape = _shape(input_shape, cfg=cfg, key="model.input_shape")
    else:
        raise cfg_error(cfg, "model.input_shape", "the input shape is unknown: the data gives none and model.input_shape is not set",
                        hint="set model.input_shape, e.g. [28, 28, 1]")
    return {names[0]: keras.Input(shape=shape, name=names[0])}


def _named_inputs(cfg: Any, input_shape: Any) -> dict[str, Any]:
    """`model.inputs`: names (shapes from the data) or {name: shape}
    (null: from the data)."""
    m = cfg.model
    given = m.inputs if isinstance(m.inputs, Mapping) else {n: None for n in m.inputs}
    data = input_shape if isinstance(input_shape, Mapping) and "shape" not in input_shape else {}
    out = {}
    for n, s in given.items():
        if s is None and n not in data:
            raise cfg_error(cfg, f"model.inputs.{n}", f"the shape of input '{n}' is unknown: the data has no input named so",
                            hint=f"give it, e.g. {n}: [8]" + (f" (the data's inputs: {', '.join(data)})" if data else ""))
        out[str(n)] = (keras.Input(shape=_shape(s, cfg=cfg, key=f"model.inputs.{n}"), name=str(n)) if s is not None
                       else _data_input(str(n), data[n], cfg))
    return out


# ---------------------------------------------------------------------------
# Layers


def _tensor(tensors: dict[str, Any], ref: Ref, cfg: Any, key: str) -> Any:
    """The tensor a reference names; `name.N` takes element N of a layer's outputs."""
    value = tensors[ref.node]
    if ref.index is None:
        return value
    if not isinstance(value, (list, tuple)):
        raise cfg_error(cfg, key, f"'{ref.text}': layer '{ref.node}' has one output, not several",
                        hint=f"write {ref.node} without .{ref.index}")
    if ref.index >= len(value):
        raise cfg_error(cfg, key, f"'{ref.text}': layer '{ref.node}' has {len(value)} outputs (0 to {len(value) - 1})")
    return value[ref.index]


def _call_inputs(node: Node, tensors: dict[str, Any], cfg: Any) -> tuple[list[Any], dict[str, Any]]:
    e = node.entry
    args = [_tensor(tensors, r, cfg, e.inputs_path) for r in node.args]
    if e.takes_list and len(args) > 1:
        args = [args]
    call: dict[str, Any] = {}
    for arg, value in node.call.items():
        where = f"{e.inputs_path}.{arg}"
        if isinstance(value, Ref):
            call[arg] = _tensor(tensors, value, cfg, where)
        elif isinstance(value, list):
            call[arg] = [_tensor(tensors, v, cfg, where) for v in value]
        else:
            call[arg] = value
    return args, call


def _check_call_args(layer: Any, node: Node, cfg: Any) -> None:
    """A mapping names arguments of the layer's `call`, checked before calling."""
    if not node.call:
        return
    params = inspect.signature(layer.call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n not in ("self", "training", "args", "kwargs")]
    for arg in node.call:
        if arg not in params:
            raise cfg_error(cfg, f"{node.entry.inputs_path}.{arg}", f"{node.entry.class_name}.call() has no argument '{arg}'",
                            hint=did_you_mean(arg, valid) or f"it takes: {', '.join(valid)}")


def _apply(node: Node, tensors: dict[str, Any], cfg: Any, num_classes: Optional[int], *, float32_output: bool) -> Any:
    """Construct the node's layer and call it on its inputs."""
    e = node.entry
    args, call = _call_inputs(node, tensors, cfg)
    if e.class_name == "Backbone":
        return apply_backbone(args[0], e.kwargs, cfg=cfg, key=e.key_path)
    kwargs = dict(e.kwargs)
    if e.name is not None:
        kwargs["name"] = e.name
    if float32_output and "dtype" not in kwargs:
        # Mixed precision: outputs stay float32 for a stable loss (Keras guide).
        kwargs["dtype"] = "float32"
    layer = make_layer(e.class_name, kwargs, cfg=cfg, key=e.key_path, num_classes=num_classes)
    _check_call_args(layer, node, cfg)
    try:
        return layer(*args, **call)
    except DlcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a layer on its input is the config's
        what = f"{e.class_name}{_quoted(e.name)}"
        given = args[0] if len(args) == 1 and not call else [*args, *call.values()]
        raise cfg_error(cfg, e.key_path, f"{what} cannot take its input of shape {_shape_text(given)}: {short_message(exc)}",
                        hint=_call_hint(exc, e.class_name)) from None


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
    module = next((m for sfx, m in _OBJECT_ARGS.items() if arg.endswith(sfx)), None)
    if module is not None:
        base = {"initializers": keras.initializers.Initializer, "regularizers": keras.regularizers.Regularizer,
                "constraints": keras.constraints.Constraint}[module]
        user = user_object(value, cfg=cfg, key=key, kind=f"{module[:-1]} for {arg}", base=base)
        if user is not None:
            return user
    if module is not None and isinstance(value, Mapping) and "class_name" not in value and len(value) == 1:
        ((name, config),) = value.items()
        if config is not None and not isinstance(config, Mapping):
            raise cfg_error(cfg, key, f"{arg}: {{{name}: ...}} takes a mapping of arguments, got {config!r}")
        return {"class_name": str(name), "config": dict(config or {})}
    return value


def _is_layer_entry(value: Any) -> bool:
    if isinstance(value, str):
        return value != NUM_CLASSES
    return isinstance(value, Mapping)


def _nested_layer(value: Any, *, cfg: Any, key: str, arg: str, num_classes: Optional[int]) -> keras.layers.Layer:
    entry = parse_entry(value, key, cfg=cfg, graph=False)
    return make_layer(entry.class_name, entry.kwargs, cfg=cfg, key=key, num_classes=num_classes)


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
