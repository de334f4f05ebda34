"""`--set key.path=value`: overrides applied to a merged config.

Keys of schema sections are checked against the schema as the path is
walked (an unknown one gets a did-you-mean); values are parsed as YAML
with the safe reader of `dlcli.config.yamlfile`.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Optional, Sequence, Union

from dlcli.config.suggest import closest
from dlcli.config.yamlfile import KeyPath, Positions, drop_under, dotted, parse_yaml
from dlcli.errors import ConfigError

# The "file" of values that come from `--set key=value` on the command line.
SET_SOURCE = "--set"

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
    drop_under(positions, walked)
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
