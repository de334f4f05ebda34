"""Reading one config file: safe YAML with line numbers.

A config is read with PyYAML's safe composer and turned into plain Python
values by a small builder here, which also records where every mapping key
and list item stands (`("model", "layers", 1) -> ("cnn.yaml", 14)`), so
that every later error can name the file and the line. Only the plain
YAML types are built (mapping, list, string, number, bool, null); any other
tag, `!!python/...` above all, is refused and never constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import yaml

from dlcli.errors import ConfigError

KeyPath = tuple[Union[str, int], ...]
Position = tuple[Optional[str], Optional[int]]
Positions = dict[KeyPath, Position]

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
                drop_under(self.positions, path + (k,))
            self.positions[path + (k,)] = (self.file, _line(key_node))
            result[k] = self.build(value_node, path + (k,), depth + 1, aliased)
        return result


def drop_under(positions: Positions, prefix: KeyPath) -> None:
    """Forget the positions at and below `prefix` (a value replaced whole)."""
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
