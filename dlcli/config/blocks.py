"""Blocks: layers written once with parameters, used many times.

A block is defined under `model.blocks` and used in `model.layers` like a
layer, its name in place of the class, its parameters in place of the
arguments, with `repeat:` for several copies in a row:

    model:
      blocks:
        encoder:                     # a transformer encoder block
          params: {heads: 4, key_dim: 64, dropout: 0.1}
          layers:
            - MultiHeadAttention: {num_heads: $heads, key_dim: $key_dim, dropout: $dropout}
              name: att
              inputs: {query: input, value: input}
            - Add
              inputs: [input, att]
      layers:
        - encoder: {heads: 2}
          repeat: 4

Inside a block, `$name` stands for a parameter (`$$` for a literal `$`),
`input` for the block's input (or the names listed in the block's
`inputs:`), and names refer to the block's own layers. The block's output
is its last layer (or the one named by `output:`). Every layer of every
use gets its own name, `<use>_<layer>` (`encoder1_att`, or
`encoder1_2_att` for the second copy of a repeated use); the use's name
(`name:`, default `<block><n>`) refers to its output, `<use>_<k>` to the
output of copy k.

The expansion runs on the config side (no TensorFlow), for `dlcli
validate` and the model builder alike; an error inside a block names the
block, the use and the lines of both.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Optional

from dlcli.config.graph import USE_KEYS, LayerEntry, fail, in_context, kind, model_input_names, parse_entry
from dlcli.config.suggest import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.config.schema import BlockConfig, Config

# Deeper than this, a block that uses a block ... is taken as a loop.
MAX_NESTING = 16


def expand_layers(cfg: "Config") -> tuple[list[LayerEntry], dict[str, str], str]:
    """Expand `model.layers` into plain layer entries with explicit inputs.

    Args:
        cfg: the config.

    Returns:
        (entries, aliases, last): the entries in file order, every one but
        the first with explicit inputs; the names of block uses and their
        copies mapped to their outputs; the output of the last entry.

    Raises:
        ConfigError: a malformed entry or use, an unknown parameter, a
            reference inside a block to a name the block does not have.
    """
    ex = _Expander(cfg)
    for name in ex.blocks:
        _check_block_name(cfg, name)
    prev: Optional[str] = None
    for i, raw in enumerate(cfg.model.layers):
        prev = ex.top(raw, f"model.layers.{i}", prev)
    names = {e.name for e in ex.entries}
    for alias, key in ex.alias_keys.items():
        if alias in names:
            raise fail(cfg, f"{key}.name", f"block use name '{alias}' is also a layer name", "give the use another name:")
    return ex.entries, ex.aliases, str(prev)


def _check_block_name(cfg: "Config", name: str) -> None:
    from dlcli.config.catalog import EXTRA_LAYERS, get_catalog

    if not name.isidentifier():
        raise fail(cfg, f"model.blocks.{name}", f"a block name is a plain name (letters, digits, _), got '{name}'")
    cat = get_catalog()
    if name in EXTRA_LAYERS or (cat is not None and cat.dict_target("layers", name) is not None):
        raise fail(cfg, f"model.blocks.{name}", f"block name '{name}' is also a layer's name, so its uses would be ambiguous",
                   f"rename the block, e.g. {_snake(name)}_block")


def _snake(name: str) -> str:
    name = name.rsplit(".", 1)[-1]
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class _Copy:
    """One copy of a block: its name prefix and local names."""

    def __init__(self, prefix: str, scope: dict[str, str], context: str) -> None:
        self.prefix = prefix
        self.scope = scope
        self.context = context
        self.used: dict[str, int] = {}

    def layer_name(self, entry: LayerEntry) -> str:
        if entry.name is not None:
            return f"{self.prefix}_{entry.name}"
        base = f"{self.prefix}_{_snake(entry.class_name)}"
        self.used[base] = self.used.get(base, 0) + 1
        return base if self.used[base] == 1 else f"{base}_{self.used[base]}"


class _Expander:
    def __init__(self, cfg: "Config") -> None:
        self.cfg = cfg
        self.blocks: dict[str, "BlockConfig"] = dict(cfg.model.blocks or {})
        self.entries: list[LayerEntry] = []
        self.aliases: dict[str, str] = {}
        self.alias_keys: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def block_of(self, raw: Any) -> Optional[str]:
        if not isinstance(raw, dict):
            return raw if isinstance(raw, str) and raw in self.blocks else None
        keys = [k for k in raw if k not in USE_KEYS]
        return keys[0] if len(keys) == 1 and keys[0] in self.blocks else None

    def add(self, entry: LayerEntry) -> str:
        self.entries.append(entry)
        return entry.name if entry.name is not None else f"#{len(self.entries) - 1}"

    def top(self, raw: Any, key: str, prev: Optional[str]) -> str:
        """A `model.layers` entry: a layer, or a use of a block."""
        block = self.block_of(raw)
        if block is not None:
            return self.use(block, raw, key, prev, None, 0, "")
        entry = parse_entry(raw, key, cfg=self.cfg)
        if entry.inputs is None and entry.call_args is None and prev is not None:
            entry = entry._replace(inputs=[prev])
        return self.add(entry)

    # -- uses -------------------------------------------------------------

    def use(self, block: str, raw: Any, key: str, prev: Optional[str], outer: Optional[_Copy], depth: int, context: str) -> str:
        """Expand one use (all its copies); return its output."""
        with in_context(context):
            raw = {block: None} if isinstance(raw, str) else raw
            if depth >= MAX_NESTING:
                raise fail(self.cfg, key, f"block '{block}' uses itself (through {MAX_NESTING} nested uses)")
            spec = self.blocks[block]
            values = self._values(block, spec, raw.get(block), f"{key}.{block}")
            repeat = raw.get("repeat", 1)
            if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
                raise fail(self.cfg, f"{key}.repeat", f"repeat must be a whole number of copies (1 or more), got {kind(repeat)}")
            ins = self._use_inputs(block, spec, raw.get("inputs"), key, prev, outer)
            name = self._use_name(block, raw.get("name"), key)
        full = f"{outer.prefix}_{name}" if outer else name
        line = self.cfg.locate(key)[1]
        here = f"in block '{block}' used at {key}" + (f" (line {line})" if line else "")
        out = ins[0]
        for k in range(1, repeat + 1):
            prefix = full if repeat == 1 else f"{full}_{k}"
            where = here + (f", copy {k} of {repeat}" if repeat > 1 else "")
            copy_ctx = f"{where}; {context}" if context else where
            out = self._copy(block, spec, values, prefix, [out] + ins[1:] if k > 1 else ins, depth, copy_ctx)
            if repeat > 1:
                self._alias(prefix, out, key)
        self._alias(full, out, key)
        if outer is not None:
            outer.scope[name] = full
        return full

    def _alias(self, name: str, target: str, key: str) -> None:
        if name in self.aliases:
            raise fail(self.cfg, f"{key}.name", f"two block uses are named '{name}' (also {self.alias_keys[name]})",
                       "give each use its own name:")
        self.aliases[name] = target
        self.alias_keys[name] = key

    def _values(self, block: str, spec: "BlockConfig", args: Any, path: str) -> dict[str, Any]:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise fail(self.cfg, path, f"the parameters of block '{block}' must be a mapping like {block}: {{...}}, got {kind(args)}")
        params = dict(spec.params or {})
        for arg in args:
            if arg not in params:
                near = did_you_mean(arg, list(params))
                raise fail(self.cfg, f"{path}.{arg}", f"block '{block}' has no parameter '{arg}'",
                           near or (f"its parameters: {', '.join(params)}" if params else f"declare it under model.blocks.{block}.params"))
        missing = [p for p, default in params.items() if default is None and p not in args]
        if missing:
            raise fail(self.cfg, path, f"block '{block}' needs parameter '{missing[0]}' (it has no default)",
                       f"write it as {block}: {{{missing[0]}: ...}}")
        return {**params, **args}

    def _use_inputs(self, block: str, spec: "BlockConfig", given: Any, key: str, prev: Optional[str], outer: Optional[_Copy]) -> list[str]:
        wanted = list(spec.inputs)
        if given is None:
            if prev is None:
                prev = self._model_input(key)
            if len(wanted) > 1:
                raise fail(self.cfg, key, f"block '{block}' takes {len(wanted)} inputs ({', '.join(wanted)})",
                           f"add inputs: [{', '.join('...' for _ in wanted)}]")
            return [prev]
        names = [given] if isinstance(given, str) and given else given
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            raise fail(self.cfg, f"{key}.inputs", f"a block use takes inputs: a name or a list of names, got {kind(given)}",
                       f"one per block input ({', '.join(wanted)})")
        if len(names) != len(wanted):
            raise fail(self.cfg, f"{key}.inputs", f"block '{block}' takes {len(wanted)} input(s) ({', '.join(wanted)}), got {len(names)}")
        return [self._local(n, outer, f"{key}.inputs") for n in names]

    def _model_input(self, key: str) -> str:
        inputs = model_input_names(self.cfg)
        if len(inputs) != 1:
            raise fail(self.cfg, key, f"the model has {len(inputs)} inputs ({', '.join(inputs)}); say which this block takes",
                       f"add inputs: {inputs[0]}")
        return inputs[0]

    def _use_name(self, block: str, name: Any, key: str) -> str:
        self.counts[block] = self.counts.get(block, 0) + 1
        if name is None:
            return f"{block}{self.counts[block]}"
        if not (isinstance(name, str) and name):
            raise fail(self.cfg, f"{key}.name", f"a block use name must be a non-empty string, got {kind(name)}")
        return name

    # -- one copy ---------------------------------------------------------

    def _copy(self, block: str, spec: "BlockConfig", values: dict[str, Any], prefix: str, ins: list[str], depth: int, context: str) -> str:
        """Add the layers of one copy of `block`; return its output."""
        here = _Copy(prefix, dict(zip(spec.inputs, ins)), context)
        base = f"model.blocks.{block}.layers"
        raws = [_substitute(r, values, f"{base}.{j}", self.cfg, block, context) for j, r in enumerate(spec.layers)]
        for j, raw in enumerate(raws):
            # Names of the block's own layers are known before any is added,
            # so that a layer may take a later one's output.
            name = raw.get("name") if isinstance(raw, dict) and self.block_of(raw) is None else None
            if isinstance(name, str):
                here.scope[name] = f"{prefix}_{name}"
        prev = ins[0]
        for j, raw in enumerate(raws):
            key = f"{base}.{j}"
            inner = self.block_of(raw)
            if inner is not None:
                prev = self.use(inner, raw, key, prev, here, depth + 1, context)
                continue
            with in_context(context):
                entry = parse_entry(raw, key, cfg=self.cfg)
                prev = self.add(self._rename(entry, here, prev))
        out = spec.output
        if out is None:
            return prev
        with in_context(context):
            return self._local(out, here, f"model.blocks.{block}.output")

    def _rename(self, entry: LayerEntry, here: _Copy, prev: str) -> LayerEntry:
        name = here.layer_name(entry)
        kwargs = dict(entry.kwargs)
        if entry.class_name != "Backbone":
            kwargs.pop("name", None)
        inputs = [self._local(n, here, entry.inputs_path) for n in entry.inputs] if entry.inputs is not None else None
        call = None
        if entry.call_args is not None:
            call = {}
            for arg, value in entry.call_args.items():
                where = f"{entry.inputs_path}.{arg}"
                if isinstance(value, str):
                    call[arg] = self._local(value, here, where)
                elif isinstance(value, list):
                    call[arg] = [self._local(v, here, where) for v in value]
                else:
                    call[arg] = value
        if inputs is None and call is None:
            inputs = [prev]
        return entry._replace(name=name, kwargs=kwargs, inputs=inputs, call_args=call, context=here.context)

    def _local(self, text: str, here: Optional[_Copy], path: str) -> str:
        """A name written inside a block copy -> the name in the model."""
        if here is None:
            return text
        if text in here.scope:
            return here.scope[text]
        base, dot, index = text.rpartition(".")
        if dot and index.isdigit() and base in here.scope:
            return f"{here.scope[base]}.{index}"
        raise fail(self.cfg, path, f"inputs names '{text}', which is not an input or a layer of this block",
                   did_you_mean(text, list(here.scope)) or f"inside a block, inputs: names {', '.join(here.scope)}")


def _substitute(value: Any, values: dict[str, Any], path: str, cfg: "Config", block: str, context: str) -> Any:
    """Replace `$param` values in a block's layer entry (`$$x` is `$x`)."""
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return value[1:]
        param = value[1:]
        if param not in values:
            with in_context(context):
                raise fail(cfg, path, f"'{value}' is not a parameter of block '{block}'",
                           did_you_mean(param, list(values)) or f"declare it under model.blocks.{block}.params")
        return copy.deepcopy(values[param])
    if isinstance(value, dict):
        return {k: _substitute(v, values, f"{path}.{k}", cfg, block, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, f"{path}.{i}", cfg, block, context) for i, v in enumerate(value)]
    return value
