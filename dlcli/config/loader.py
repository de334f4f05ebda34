"""Reading config files: safe YAML with line numbers, `extends`, `--set`.

A config is read with PyYAML's safe composer and turned into plain Python
values by a small builder here, which also records where every mapping key
and list item stands (`("model", "layers", 1) -> ("cnn.yaml", 14)`), so
that every later error can name the file and the line. Only the plain
YAML types are built (mapping, list, string, number, bool, null); any other
tag, `!!python/...` above all, is refused and never constructed.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from dlcli.config.suggest import closest
from dlcli.errors import ConfigError

KeyPath = tuple[Union[str, int], ...]
Position = tuple[Optional[str], Optional[int]]
Positions = dict[KeyPath, Position]

# The "file" of values that come from `--set key=value` on the command line.
SET_SOURCE = "--set"

# A real config has a few hundred values; these limits only stop hostile or
# broken input quickly (an alias bomb expands to billions of values).
MAX_ALIAS_VALUES = 10_000
MAX_VALUES = 200_000
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP_TAG = _TAG + "timestamp"
_MAP_TAG = _TAG + "map"
_SEQ_TAG = _TAG + "seq"
_MERGE_TAG = _TAG + "merge"


def dotted(path: KeyPath) -> str:
    """Render a key path as the dotted string users write (`model.layers.1`)."""
    return ".".join(str(p) for p in path)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Builder:
    """Builds plain values from a composed YAML node graph, recording lines.

    Aliases are expanded by building the anchored node again (a fresh copy,
    so later merges never share state); the values built that way are
    counted and capped, which answers an alias bomb in milliseconds.
    """

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.positions: Positions = {}
        self._count = 0
        self._alias_count = 0
        self._seen: set[int] = set()
        self._active: set[int] = set()

    def fail(self, node: yaml.Node, message: str, hint: Optional[str] = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=_line(node), hint=hint)

    def build(self, node: yaml.Node, path: KeyPath, depth: int = 0, aliased: bool = False) -> Any:
        key = id(node)
        if key in self._active:
            raise self.fail(node, "recursive YAML alias: an anchor that contains itself")
        if key in self._seen:
            aliased = True
        self._seen.add(key)
        self._count += 1
        if aliased:
            self._alias_count += 1
            if self._alias_count > MAX_ALIAS_VALUES:
                raise self.fail(
                    node,
                    f"YAML aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?)",
                )
        if self._count > MAX_VALUES:
            raise self.fail(node, f"config too large (more than {MAX_VALUES} values)")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"config nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        self._active.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP_TAG:
                    raise self._bad_tag(node)
                return self.mapping(node, path, depth, aliased)
            if node.tag != _SEQ_TAG:
                raise self._bad_tag(node)
            items = []
            for i, item in enumerate(node.value):
                self.positions[path + (i,)] = (self.file, _line(item))
                items.append(self.build(item, path + (i,), depth + 1, aliased))
            return items
        finally:
            self._active.discard(key)

    def _bad_tag(self, node: yaml.Node) -> ConfigError:
        return self.fail(
            node,
            f"YAML tag '{_tag_name(node.tag)}' is not allowed",
            hint="configs are read with a safe loader: plain mappings, lists, strings, numbers, booleans and null only",
        )

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            # Dates stay text: no config field is a date, and text survives
            # the round trip to JSON and back.
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self._bad_tag(node)
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except (ValueError, TypeError, yaml.YAMLError):
            raise self.fail(node, f"cannot read {node.value!r} as {_tag_name(node.tag)}") from None

    def key(self, node: yaml.Node) -> Union[str, int]:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "a mapping key must be a plain name, not a list or a mapping")
        value = self.scalar(node)
        # Integer keys are kept (class_weight: {0: 1.0}); everything else is
        # the key as written, so `on:` or `null:` stay the words they look like.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return node.value

    def mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int, aliased: bool) -> dict:
        merges = [v for k, v in node.value if k.tag == _MERGE_TAG]
        result: dict = {}
        for source in merges:
            # YAML merge keys (`<<: *base`): explicit keys below win.
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise self.fail(src, "'<<' (merge) needs a mapping or a list of mappings")
                built = self.build(src, path, depth + 1, aliased)
                for k, v in built.items():
                    result.setdefault(k, v)
        first_line: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            k = self.key(key_node)
            if k in first_line:
                raise self.fail(key_node, f"duplicate key '{k}' (first on line {first_line[k]})")
            first_line[k] = _line(key_node)
            if k in result:
                _drop_under(self.positions, path + (k,))
            self.positions[path + (k,)] = (self.file, _line(key_node))
            result[k] = self.build(value_node, path + (k,), depth + 1, aliased)
        return result


def _drop_under(positions: Positions, prefix: KeyPath) -> None:
    n = len(prefix)
    for p in [p for p in positions if p[:n] == prefix]:
        del positions[p]


def parse_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document safely, recording where each key stands.

    Args:
        text: the YAML text.
        file: the name to report in errors and positions.

    Returns:
        `(value, positions)`: the plain value (None for an empty document)
        and a map from key paths (tuples) to `(file, line)`.

    Raises:
        ConfigError: invalid YAML, a forbidden tag, a duplicate key, an
            alias bomb, or a document nested too deeply.
    """
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        if node is None:
            return None, {}
        builder = _Builder(file, loader)
        value = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise ConfigError(
            f"invalid character {chr(exc.character)!r} in YAML (control characters are not allowed)",
            file=file,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}", file=file) from None
    except RecursionError:
        raise ConfigError(f"config nested too deeply (more than {MAX_DEPTH} levels)", file=file) from None
    builder.positions[()] = (file, _line(node))
    return value, builder.positions


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
    if "\\t" in problem or "\t" in problem:
        return ConfigError(
            "tab character in indentation",
            file=file,
            line=line,
            hint="YAML indents with spaces only",
        )
    if "expected a single document" in problem or "but found another document" in problem:
        return ConfigError("several YAML documents ('---') in one file; a config is one document", file=file, line=line)
    context = " ".join(str(exc.context).split()) if exc.context else ""
    message = f"invalid YAML: {problem}"
    if context and context not in problem:
        message += f" ({context})"
    return ConfigError(message, file=file, line=line)


def read_mapping(file: Union[str, Path]) -> tuple[dict, Positions]:
    """Read one config file (no `extends` resolution) as a mapping.

    Args:
        file: the path, used as given in messages.

    Returns:
        `(data, positions)`.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, empty, not
            valid YAML or not a mapping at the top.
    """
    name = str(file)
    path = Path(file)
    if not path.exists():
        raise ConfigError("config file not found", file=name)
    if path.is_dir():
        raise ConfigError("is a folder, not a config file", file=name, hint="pass a .yaml file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}", file=name) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
            file=name,
            line=line,
            hint="save the config as UTF-8",
        ) from None
    data, positions = parse_yaml(text, name)
    if data is None:
        raise ConfigError("the config file is empty", file=name, hint="a config needs at least model.layers")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r})"
        raise ConfigError(
            f"a config must be a mapping of keys (data, model, compile, train), found {kind}",
            file=name,
            line=positions.get((), (None, None))[1],
        )
    return data, positions


def _walk(value: Any, path: KeyPath = ()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, path + (i,))


def deep_merge(base: Any, over: Any) -> Any:
    """Merge `over` onto `base`: mappings merge key by key, anything else
    (lists included) is replaced by `over`'s value.

    Args:
        base: the value extended.
        over: the value that wins.

    Returns:
        A new merged value (inputs are not modified).
    """
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = deep_merge(base[k], v) if k in base else v
        return merged
    return over


def _merge_with_positions(base: dict, bpos: Positions, over: dict, opos: Positions) -> tuple[dict, Positions]:
    merged = deep_merge(base, over)
    # A path that `over` defines came from `over` (it wins at every level it
    # names); any other path of the result came from `base`.
    positions = {}
    for p in _walk(merged):
        pos = opos.get(p) or bpos.get(p)
        if pos is not None:
            positions[p] = pos
    return merged, positions


def resolve_extends(
    data: dict,
    positions: Positions,
    file: Optional[str],
    chain: Sequence[tuple[str, str]] = (),
) -> tuple[dict, Positions]:
    """Merge the bases a config `extends` under it, recursively.

    Args:
        data: the config mapping (its `extends` key is consumed).
        positions: its key positions.
        file: the config's path as shown to the user (bases resolve against
            its folder), or None for a dict (bases resolve against the
            current directory).
        chain: `(shown, real)` paths of the configs that led here, to
            report cycles.

    Returns:
        `(merged, positions)`, without `extends`.

    Raises:
        ConfigError: a base is missing, unreadable, or the chain is a cycle.
    """
    data = dict(data)
    ext = data.pop("extends", None)
    if ext is None:
        return data, positions
    if isinstance(ext, str):
        names, keys = [ext], [("extends",)]
    elif isinstance(ext, list) and ext and all(isinstance(e, str) for e in ext):
        names, keys = list(ext), [("extends", i) for i in range(len(ext))]
    else:
        f, line = positions.get(("extends",), (file, None))
        raise ConfigError(
            f"expected a config file name or a list of them, got {ext!r}", file=f, line=line, key="extends"
        )
    folder = os.path.dirname(file) if file else ""
    if not chain and file:
        chain = ((file, os.path.realpath(file)),)
    merged: dict = {}
    mpos: Positions = {}
    for name, key in zip(names, keys):
        shown = os.path.normpath(os.path.join(folder, os.path.expanduser(name)))
        real = os.path.realpath(shown)
        f, line = positions.get(key) or positions.get(("extends",)) or (file, None)
        trail = " -> ".join([c[0] for c in chain] + [shown])
        if any(real == c[1] for c in chain):
            raise ConfigError(f"forms a cycle: {trail}", file=f, line=line, key=dotted(key))
        if not os.path.isfile(real):
            raise ConfigError(
                f"base config not found: {shown}", file=f, line=line, key=dotted(key), hint=f"extends chain: {trail}"
            )
        bdata, bpos = read_mapping(shown)
        bdata, bpos = resolve_extends(bdata, bpos, shown, tuple(chain) + ((shown, real),))
        merged, mpos = _merge_with_positions(merged, mpos, bdata, bpos)
    positions = {p: v for p, v in positions.items() if not (p and p[0] == "extends")}
    return _merge_with_positions(merged, mpos, data, positions)


_SET_RE = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\s*=(.*)$", re.DOTALL)


def section_model(annotation: Any) -> Any:
    """The pydantic section class behind a field annotation, or None."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = section_model(arg)
        if found is not None:
            return found
    return None


def _is_index(seg: str) -> bool:
    return seg.isdigit() or (seg.startswith("-") and seg[1:].isdigit())


def apply_overrides(data: dict, positions: Positions, overrides: Sequence[str]) -> None:
    """Apply `key.path=value` overrides in place (values parsed as YAML).

    A key of a schema section must be a field of it (an unknown one gets a
    did-you-mean); inside free-form parts (layer arguments, optimizer
    config) a new last key may be added. List items are addressed by index
    (`model.layers.0.Dense.units=8`). A bare entry such as `Flatten` or
    `adam` is expanded when the path goes inside it.

    Args:
        data: the merged config mapping, modified in place.
        positions: its positions; overridden paths point at `--set`.
        overrides: the `key.path=value` strings, applied in order.

    Raises:
        ConfigError: (key `--set`) a malformed override or a bad path.
    """
    from dlcli.config.schema import Config

    for text in overrides:
        match = _SET_RE.match(str(text))
        if not match:
            raise ConfigError(
                f"expected key.path=value, got {str(text)!r}",
                key=SET_SOURCE,
                hint="for example --set train.epochs=5",
            )
        path_text, value_text = match.group(1), match.group(2)
        segments = path_text.split(".")
        if segments[0] == "extends":
            raise ConfigError("extends cannot be overridden with --set", key=SET_SOURCE)
        try:
            value, vpos = parse_yaml(value_text, SET_SOURCE)
        except ConfigError as exc:
            raise ConfigError(
                f"{path_text}: the value {value_text!r} is not valid YAML ({exc.message.removeprefix('invalid YAML: ')})",
                key=SET_SOURCE,
                hint="quote strings that hold YAML punctuation, e.g. --set 'name=\"a: b\"'",
            ) from None
        _set_path(data, positions, segments, path_text, value, vpos, Config)


def _set_path(data: dict, positions: Positions, segments: list[str], path_text: str, value: Any, vpos: Positions, root_model: Any) -> None:
    def fail(message: str, hint: Optional[str] = None) -> ConfigError:
        return ConfigError(f"{path_text}: {message}", key=SET_SOURCE, hint=hint)

    node: Any = data
    model = root_model
    walked: KeyPath = ()
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if isinstance(node, dict):
            sub_model = None
            if model is not None:
                fields = model.model_fields
                if seg not in fields:
                    near = closest(seg, fields)
                    raise fail(
                        f"unknown key '{seg}'",
                        hint=f"did you mean '{dotted(walked + (near,))}'?" if near else f"keys there: {', '.join(fields)}",
                    )
                key: Union[str, int] = seg
                sub_model = section_model(fields[seg].annotation)
            elif seg.isdigit() and (int(seg) in node or seg not in node):
                # Free-form mappings keep integer keys as integers
                # (class_weight: {0: 2.0}), like the YAML loader does.
                key = int(seg)
            else:
                key = seg
            if last:
                node[key] = value
                walked += (key,)
                break
            child = node.get(key)
            if key not in node or child is None:
                if model is None and key not in node:
                    near = closest(seg, node) if node else None
                    raise fail(
                        f"'{dotted(walked)}' has no key '{seg}'",
                        hint=f"did you mean '{dotted(walked + (near,))}'?" if near else None,
                    )
                child = {}
                if model is not None and sub_model is None and key not in node:
                    # Start from the schema default (`optimizer: adam`), so
                    # `compile.optimizer.config.learning_rate=0.1` works on it.
                    default = model.model_fields[seg].get_default(call_default_factory=True)
                    if default is not None:
                        child = copy.deepcopy(default)
                node[key] = child
                positions.setdefault(walked + (key,), (SET_SOURCE, None))
            child = _expand_bare(node, key, child, segments[i + 1])
            node, model, walked = child, sub_model, walked + (key,)
        elif isinstance(node, list):
            if not _is_index(seg):
                raise fail(f"'{dotted(walked)}' is a list; address its items by index, not '{seg}'")
            idx = int(seg)
            if not -len(node) <= idx < len(node):
                raise fail(
                    f"index {idx} is out of range: '{dotted(walked)}' has {len(node)} item(s)",
                )
            idx %= len(node)
            if last:
                node[idx] = value
                walked += (idx,)
                break
            child = _expand_bare(node, idx, node[idx], segments[i + 1])
            node, model, walked = child, None, walked + (idx,)
        else:
            raise fail(f"'{dotted(walked)}' is {node!r}, which has no key '{seg}'")
    _drop_under(positions, walked)
    for p in vpos:
        positions[walked + p] = (SET_SOURCE, None)
    positions[walked] = (SET_SOURCE, None)


def _expand_bare(container: Any, key: Any, child: Any, next_seg: str) -> Any:
    """Turn a bare name into the mapping form when a path goes inside it."""
    if isinstance(child, str):
        if next_seg == child:
            child = {child: {}}
        elif next_seg in ("class_name", "config"):
            child = {"class_name": child, "config": {}}
        else:
            return child
        container[key] = child
    elif isinstance(child, dict) and next_seg in child and child[next_seg] is None:
        # `Flatten:` with no arguments: give it a mapping to set into.
        child[next_seg] = {}
    return child


def load_document(path: Union[str, Path], overrides: Sequence[str] = ()) -> tuple[dict, Positions]:
    """Read a config file, resolve `extends` and apply `--set` overrides.

    Args:
        path: the config file.
        overrides: `key.path=value` strings.

    Returns:
        `(data, positions)`: the merged plain mapping (no `extends`) and
        where each key path was written.

    Raises:
        ConfigError: anything wrong with the file, its bases or overrides.
    """
    file = str(path)
    data, positions = read_mapping(file)
    data, positions = resolve_extends(data, positions, file)
    apply_overrides(data, positions, overrides)
    return data, positions
