"""The layer graph of `model.layers`, read once for the checker and the builder.

`dlcli validate` (no TensorFlow) and the model builder (Keras) both call
`model_graph(cfg)`: it expands blocks (`dlcli.config.blocks`), parses every
entry, resolves every `inputs:` reference and orders the layers so that
each one comes after its inputs. The checker then looks up class names and
arguments in the Keras catalogue; the builder constructs and calls the
layers in the order given. So a duplicate name, an unknown input or a cycle
gets the same message from both.

An entry's `inputs:` is one of:

- a name (`inputs: conv1`) or a list of names (`inputs: [a, b]`, passed
  as one list, as `Add` and `Concatenate` take it);
- a mapping of call arguments (`inputs: {query: x, value: ctx,
  attention_mask: mask}`), each a name, a list of names or a constant
  (`use_causal_mask: true`).

A name is an earlier or later layer, a model input (`input` when the data
gives one), a block use, or `name.N`: element N of a layer that returns
several tensors (`MultiHeadAttention` with `return_attention_scores`, a
layer returning `(tokens, mask)`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Optional

from dlcli.config.suggest import closest, did_you_mean
from dlcli.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.config.schema import Config

# Keys a layer entry may carry beside its class key.
ENTRY_KEYS = ("name", "inputs")
# A block use may also carry a repeat count.
USE_KEYS = ("name", "inputs", "repeat")
# The name `inputs:` uses for the model's input when `model.inputs` does
# not name several (and, inside a block, for the block's input).
DEFAULT_INPUT = "input"
BACKBONE = "Backbone"
# Call arguments Keras sets itself.
_KERAS_CALL_ARGS = ("training",)
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
_ELEMENT = re.compile(r"^(.+)\.(\d+)$")


class LayerEntry(NamedTuple):
    """One parsed `model.layers` (or augment, callbacks) entry.

    Attributes:
        class_name: `Conv2D`, `Backbone`, or a dotted import path.
        kwargs: the constructor arguments (graph keys removed).
        name: the layer's name in the graph (entry `name:`, or the
            `name` argument), or None.
        inputs: the names of the positional input, or None (the previous
            layer).
        key_path: where the entry is (`model.layers.2`).
        args_path: where its arguments are (`model.layers.2.Conv2D`).
        name_path: where its name is written.
        inputs_path: where its inputs are written.
        call_args: `inputs:` given as a mapping of call arguments.
        takes_list: `inputs:` was written as a list (one list argument).
        context: for a layer of a block: which block, which use.
    """

    class_name: str
    kwargs: dict[str, Any]
    name: Optional[str]
    inputs: Optional[list[str]]
    key_path: str
    args_path: str
    name_path: str = ""
    inputs_path: str = ""
    call_args: Optional[dict[str, Any]] = None
    takes_list: bool = False
    context: str = ""


class Ref(NamedTuple):
    """A resolved reference: a node (layer or model input) and an element."""

    node: str
    index: Optional[int]
    text: str


class Node(NamedTuple):
    """A layer in the graph, with its inputs resolved.

    Attributes:
        entry: the parsed entry.
        node_id: its name, or `#<i>` for an unnamed layer.
        args: the positional input(s); empty when only `call` is given.
        call: keyword call arguments: a Ref, a list of Refs or a constant.
    """

    entry: LayerEntry
    node_id: str
    args: list[Ref]
    call: dict[str, Any]


class Graph(NamedTuple):
    """`model.layers` as a DAG, in an order where inputs come first."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[Ref]

    def deps(self, node: Node) -> list[Ref]:
        """Every reference a node reads, positional and keyword."""
        refs = list(node.args)
        for value in node.call.values():
            refs += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, Ref)]
        return refs


def fail(cfg: Optional["Config"], key: str, message: str, hint: Optional[str] = None) -> ConfigError:
    """A ConfigError at `key`, located at its file and line where `cfg` knows it."""
    if cfg is not None:
        return cfg.error(key, message, hint)
    return ConfigError(message, key=key, hint=hint)


def kind(value: Any) -> str:
    """How a wrong value is shown in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@contextmanager
def in_context(context: str) -> Iterator[None]:
    """Add a block context ("in block 'enc' used at ...") to a ConfigError."""
    try:
        yield
    except ConfigError as err:
        if context and context not in err.message:
            err.message = f"{err.message} ({context})"
            err.args = (err.message,)
        raise


# ---------------------------------------------------------------------------
# Entries


def parse_entry(entry: Any, key_path: str, *, cfg: Optional["Config"] = None, what: str = "layer", graph: bool = True) -> LayerEntry:
    """Split a layer or callback entry into class, arguments, name and inputs.

    An entry is `ClassName`, or `{ClassName: {kwargs}}` with, for graph
    layers, `name:` and `inputs:` beside the class key or among the kwargs.

    Args:
        entry: the entry as written.
        key_path: its dotted path, for errors.
        cfg: the config, to locate errors at their line.
        what: "layer", "augment layer" or "callback", for messages.
        graph: whether `name:`/`inputs:` may stand beside the class key.

    Returns:
        The parsed `LayerEntry`.

    Raises:
        ConfigError: an entry of the wrong shape.
    """
    if isinstance(entry, str):
        if not entry.strip():
            raise fail(cfg, key_path, f"empty {what} name")
        name = entry.strip() if what == "callback" else keras_layer_name(entry.strip())
        return LayerEntry(name, {}, None, None, key_path, key_path, f"{key_path}.name", f"{key_path}.inputs")
    class_name, kwargs = _class_and_kwargs(entry, key_path, cfg, what, ENTRY_KEYS if graph else ())
    args_path = f"{key_path}.config" if "class_name" in entry else f"{key_path}.{class_name}"
    if what != "callback":
        class_name = keras_layer_name(class_name)
    name = entry.get("name") if graph else None
    if graph and "name" in entry and "name" in kwargs and class_name != BACKBONE:
        raise fail(cfg, f"{key_path}.name", f"{class_name} has a name twice: beside the class and in its arguments")
    if name is None and class_name != BACKBONE and "name" in kwargs:
        name = kwargs["name"]
        name_path = f"{args_path}.name"
    else:
        name_path = f"{key_path}.name"
    if name is not None and not (isinstance(name, str) and name):
        raise fail(cfg, name_path, f"a layer name must be a non-empty string, got {kind(name)}")
    inputs_path = f"{key_path}.inputs"
    inputs = entry.get("inputs") if graph else None
    if graph and inputs is None and "inputs" in kwargs and not _takes_inputs(class_name):
        # `Add: {inputs: [a, b]}` as the shipped configs write it.
        inputs = kwargs.pop("inputs")
        inputs_path = f"{args_path}.inputs"
    positional, call_args = _parse_inputs(inputs, inputs_path, cfg)
    return LayerEntry(class_name, kwargs, name, positional, key_path, args_path, name_path, inputs_path,
                      call_args, isinstance(inputs, list))


def uses_num_classes(cfg: "Config") -> bool:
    """True when a layer argument is written `num_classes` (the data's class
    count, so the model cannot be built without reading the data)."""

    def found(value: Any) -> bool:
        if isinstance(value, dict):
            return any(found(v) for v in value.values())
        if isinstance(value, list):
            return any(found(v) for v in value)
        return value == "num_classes"

    return any(found(node.entry.kwargs) for node in model_graph(cfg).nodes)


def keras_layer_name(class_name: str) -> str:
    """`keras.layers.Dense` is Keras's own `Dense`: the bare name, so the
    checker and the builder treat it as written plainly (its values
    checked, nothing imported or registered). Anything else as it is."""
    prefix = "keras.layers."
    bare = class_name[len(prefix):] if class_name.startswith(prefix) else ""
    if not bare or "." in bare:
        return class_name
    from dlcli.config.catalog import get_catalog

    cat = get_catalog()
    return bare if cat is not None and cat.dict_target("layers", bare) is not None else class_name


def _class_and_kwargs(entry: Any, key_path: str, cfg: Optional["Config"], what: str, beside: tuple) -> tuple[str, dict]:
    if not isinstance(entry, dict) or not entry:
        raise fail(cfg, key_path, f"expected a {what} like `Dense` or `Dense: {{units: 8}}`, got {kind(entry)}")
    if "class_name" in entry:
        return _serialized(entry, key_path, cfg, what, beside)
    class_keys = [k for k in entry if k not in beside]
    if not class_keys:
        raise fail(cfg, key_path, f"{what} entry has no class, only {', '.join(map(str, entry))}")
    class_name = class_keys[0]
    if not isinstance(class_name, str):
        raise fail(cfg, key_path, f"a {what} class must be a name, got {class_name!r}")
    if len(class_keys) > 1:
        stray = class_keys[1]
        if stray == "repeat" and beside:
            raise fail(cfg, f"{key_path}.repeat", f"repeat: repeats a block, and '{class_name}' is a layer",
                       "define the layers once under model.blocks and use the block here")
        allowed = ", ".join(f"'{k}'" for k in beside)
        hint = f"only {allowed} may stand beside the class; arguments go under {class_name}: {{...}}" if beside else (
            f"one {what} per list item; arguments go under {class_name}: {{...}}"
        )
        raise fail(cfg, f"{key_path}.{stray}", f"unexpected key '{stray}' beside {what} '{class_name}'", hint)
    raw = entry[class_name]
    if raw is not None and not isinstance(raw, dict):
        raise fail(cfg, f"{key_path}.{class_name}",
                   f"the arguments of {class_name} must be a mapping like {class_name}: {{...}}, got {kind(raw)}")
    kwargs = dict(raw or {})
    for k in kwargs:
        if not isinstance(k, str):
            raise fail(cfg, f"{key_path}.{class_name}.{k}", f"{class_name} argument names must be words, got {k!r}")
    return class_name, kwargs


# Keys of Keras's serialized form, `{class_name: Dense, config: {...}}`.
_SERIALIZED = ("class_name", "config", "module", "registered_name", "build_config")


def _serialized(entry: dict, key_path: str, cfg: Optional["Config"], what: str, beside: tuple) -> tuple[str, dict]:
    """An entry in Keras's own serialized form (pasted from `get_config`)."""
    from dlcli.config.imports import user_path

    for k in entry:
        if k not in _SERIALIZED and k not in beside:
            raise fail(cfg, f"{key_path}.{k}", f"unexpected key '{k}' in a {what} given as {{class_name, config}}",
                       did_you_mean(k, _SERIALIZED + beside))
    name, config = entry["class_name"], entry.get("config")
    if not isinstance(name, str) or not name:
        raise fail(cfg, f"{key_path}.class_name", f"class_name must be a {what} class name, got {kind(name)}")
    if config is not None and not isinstance(config, dict):
        raise fail(cfg, f"{key_path}.config", f"config must be a mapping of {name}'s arguments, got {kind(config)}")
    user = user_path({k: v for k, v in entry.items() if k in _SERIALIZED})
    return (user[0] if user else name), dict(config or {})


def _takes_inputs(class_name: str) -> bool:
    from dlcli.config.catalog import get_catalog

    cat = get_catalog()
    if cat is None:
        return False
    target = cat.dict_target("layers", class_name)
    info = cat.arguments("layers", target) if target else None
    return bool(info and info.get("args") and "inputs" in info["args"])


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _parse_inputs(inputs: Any, path: str, cfg: Optional["Config"]) -> tuple[Optional[list[str]], Optional[dict[str, Any]]]:
    """`inputs:` as written -> (positional names, call-argument mapping)."""
    if inputs is None:
        return None, None
    if isinstance(inputs, str) and inputs:
        return [inputs], None
    if _is_names(inputs):
        return list(inputs), None
    if not isinstance(inputs, dict):
        raise fail(cfg, path, f"inputs must be a layer name or a list of names, got {kind(inputs)}",
                   "or a mapping of call arguments, e.g. inputs: {query: x, value: x}")
    if not inputs:
        raise fail(cfg, path, "inputs is an empty mapping", "name the call arguments, e.g. inputs: {query: x, value: x}")
    for arg, value in inputs.items():
        where = f"{path}.{arg}"
        if not isinstance(arg, str) or not _IDENTIFIER.match(arg):
            raise fail(cfg, where, f"a call argument must be a Python name, got {arg!r}")
        if arg in _KERAS_CALL_ARGS:
            raise fail(cfg, where, f"'{arg}' is set by Keras (true in fit, false in predict)", "leave it out")
        if isinstance(value, str) and value or _is_names(value) or isinstance(value, (bool, int, float)) or value is None:
            continue
        raise fail(cfg, where, f"call argument '{arg}' takes a layer name, a list of names or a constant, got {kind(value)}")
    return None, dict(inputs)


# ---------------------------------------------------------------------------
# The graph


def model_input_names(cfg: "Config") -> list[str]:
    """The names `inputs:` may use for the model's inputs."""
    if cfg.model.inputs:
        return [str(n) for n in cfg.model.inputs]
    named = getattr(cfg.data, "inputs", None)
    if isinstance(named, dict) and named:
        return [str(n) for n in named]
    return [DEFAULT_INPUT]


def model_graph(cfg: "Config") -> Graph:
    """Expand blocks, parse every entry, resolve inputs, order the layers.

    Args:
        cfg: the config.

    Returns:
        The `Graph`: nodes in an order where every input comes first (file
        order where free), the model input names and the output refs.

    Raises:
        ConfigError: a malformed entry, a duplicate name, an unknown input
            or output, a cycle; inside a block, naming the block and use.
    """
    from dlcli.config.blocks import expand_layers

    entries, aliases, last = expand_layers(cfg)
    inputs = model_input_names(cfg)
    ids = _node_ids(cfg, entries, inputs)
    resolver = _Resolver(cfg, ids, inputs, aliases)
    nodes = []
    for entry, node_id in zip(entries, ids):
        with in_context(entry.context):
            nodes.append(_resolve_node(entry, node_id, resolver, inputs, cfg))
    outputs = [resolver.ref(str(o), f"model.outputs.{j}", what="output") for j, o in enumerate(cfg.model.outputs or [])]
    if not outputs:
        outputs = [resolver.ref(last, "model.layers", what="output")]
    return Graph(_order(cfg, nodes), inputs, outputs)


def _node_ids(cfg: "Config", entries: list[LayerEntry], inputs: list[str]) -> list[str]:
    owner: dict[str, str] = {}
    ids = []
    for i, e in enumerate(entries):
        if e.name is None:
            ids.append(f"#{i}")
            continue
        with in_context(e.context):
            if e.name in inputs and (cfg.model.inputs or e.name != DEFAULT_INPUT):
                raise fail(cfg, e.name_path, f"layer name '{e.name}' is also a model input name")
            if e.name in owner:
                raise fail(cfg, e.name_path, f"duplicate layer name '{e.name}' (also {owner[e.name]})",
                           "give every layer its own name")
        owner[e.name] = e.key_path
        ids.append(e.name)
    return ids


class _Resolver:
    """Turns the names written in `inputs:` / `outputs:` into Refs."""

    def __init__(self, cfg: "Config", ids: list[str], inputs: list[str], aliases: dict[str, str]) -> None:
        self.cfg = cfg
        self.known = set(ids) | set(inputs)
        self.aliases = aliases
        self.shown = [n for n in ids if not n.startswith("#")] + inputs + list(aliases)

    def ref(self, text: str, path: str, what: str = "input") -> Ref:
        base, index = _split(text, self.known | set(self.aliases))
        if base in self.aliases:
            inner, inner_index = _split(self.aliases[base], self.known)
            if index is not None and inner_index is not None:
                raise fail(self.cfg, path, f"'{text}': '{base}' is already element {inner_index} of a layer")
            base, index = inner, index if index is not None else inner_index
        if base not in self.known:
            close = closest(base, self.shown)
            suffix = f".{index}" if index is not None else ""
            near = f"did you mean '{close}{suffix}'?" if close else f"known names: {', '.join(self.shown)}"
            if what == "output":
                raise fail(self.cfg, path, f"output '{text}' is not a layer name", near)
            raise fail(self.cfg, path, f"inputs names an unknown layer '{text}'", near)
        return Ref(base, index, text)


def _split(text: str, known: set[str]) -> tuple[str, Optional[int]]:
    """`enc.1` -> ('enc', 1), unless `enc.1` is itself a name."""
    if text in known:
        return text, None
    m = _ELEMENT.match(text)
    if m:
        return m.group(1), int(m.group(2))
    return text, None


def _resolve_node(entry: LayerEntry, node_id: str, resolver: _Resolver, inputs: list[str], cfg: "Config") -> Node:
    if entry.inputs is None and entry.call_args is None:
        if len(inputs) != 1:
            raise fail(cfg, entry.key_path, f"the model has {len(inputs)} inputs ({', '.join(inputs)}); say which this layer takes",
                       f"add inputs: {inputs[0]}")
        return Node(entry, node_id, [Ref(inputs[0], None, inputs[0])], {})
    args = [resolver.ref(t, entry.inputs_path) for t in entry.inputs or []]
    call: dict[str, Any] = {}
    for arg, value in (entry.call_args or {}).items():
        where = f"{entry.inputs_path}.{arg}"
        if isinstance(value, str):
            call[arg] = resolver.ref(value, where)
        elif isinstance(value, list):
            call[arg] = [resolver.ref(v, where) for v in value]
        else:
            call[arg] = value
    return Node(entry, node_id, args, call)


def _order(cfg: "Config", nodes: list[Node]) -> list[Node]:
    """Order nodes so every input comes first; file order where free."""
    graph = Graph(nodes, [], [])
    by_id = {n.node_id: i for i, n in enumerate(nodes)}
    edges = {i: sorted({by_id[r.node] for r in graph.deps(n) if r.node in by_id}) for i, n in enumerate(nodes)}
    cycle = _find_cycle(edges)
    if cycle:
        names = [_label(nodes[i]) for i in cycle]
        first = nodes[cycle[0]].entry
        with in_context(first.context):
            raise fail(cfg, first.inputs_path if first.inputs or first.call_args else first.key_path,
                       "layers form a cycle: " + " -> ".join(names),
                       "inputs: must point to layers that do not depend on this one")
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(nodes):
        # The earliest ready node, so that a plain stack keeps its order.
        i = next(i for i in range(len(nodes)) if i not in done and all(d in done for d in edges[i]))
        order.append(i)
        done.add(i)
    return [nodes[i] for i in order]


def _label(node: Node) -> str:
    e = node.entry
    return e.name if e.name is not None else f"{e.class_name} ({e.key_path})"


def _find_cycle(edges: dict[int, list[int]]) -> Optional[list[int]]:
    """A cycle in the input graph as node indices (first repeated last), or None."""
    state: dict[int, int] = {}  # 1 visiting, 2 done
    stack: list[int] = []

    def visit(node: int) -> Optional[list[int]]:
        state[node] = 1
        stack.append(node)
        for src in edges.get(node, []):
            if state.get(src) == 1:
                # Report in data-flow order (an input before its consumer),
                # starting from the layer written first.
                loop = list(reversed(stack[stack.index(src):]))
                first = loop.index(min(loop))
                loop = loop[first:] + loop[:first]
                return loop + [loop[0]]
            if state.get(src) is None:
                found = visit(src)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None
