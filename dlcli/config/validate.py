"""Turning a merged config mapping into a validated `Config`.

pydantic's ValidationError lists every problem with a location tuple that
mixes real keys with the names of union members (`('compile', 'loss',
'str')`). Users get one line instead: the first problem, at its file and
line, with the dotted key, what was expected, what was given and, for an
unknown key, the closest valid one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from dlcli.config.overrides import section_model
from dlcli.config.yamlfile import KeyPath, Positions, dotted
from dlcli.config.schema import Config
from dlcli.config.suggest import closest, did_you_mean
from dlcli.errors import ConfigError

# What each pydantic error type expected, in a user's words.
_EXPECTED = {
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "none_required": "null",
}


def build_config(data: Any, positions: Positions, source: Optional[str] = None) -> Config:
    """Validate a merged config mapping against the schema.

    Args:
        data: the merged mapping (no `extends`).
        positions: where each key path was written.
        source: the config file as the user named it, or None.

    Returns:
        The validated `Config`, with its positions and source recorded;
        `name` defaults to the source file's stem.

    Raises:
        ConfigError: the first schema problem, located and explained.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config must be a mapping of keys (data, model, compile, train), got {_show(data)}",
            file=source,
        )
    _check_keys(data, positions, source)
    data = dict(data)
    if data.get("name") is None and source:
        data["name"] = Path(source).stem
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, data, positions, source) from None
    # The document's own position (line 1) would only mislead about keys
    # that are not in the file at all.
    cfg._positions = {dotted(p): pos for p, pos in positions.items() if p}
    cfg._source_file = Path(source) if source else None
    return cfg


# The only mapping whose keys may be numbers: class index -> weight.
_NUMBER_KEYS = (("train", "class_weight"),)


def _check_keys(data: Any, positions: Positions, source: Optional[str], path: KeyPath = ()) -> None:
    """Refuse non-text keys (`- 5: {units: 3}`) with their own clear message."""
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str) and path not in _NUMBER_KEYS:
                file, line = positions.get(path + (k,)) or positions.get(path) or (source, None)
                raise ConfigError(
                    f"a key must be a name, got {k!r}", file=file, line=line, key=dotted(path) or None
                )
            _check_keys(v, positions, source, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_keys(v, positions, source, path + (i,))


def _clean_loc(loc: tuple, data: Any, missing: bool) -> KeyPath:
    """Keep the parts of a pydantic location that are real keys of `data`."""
    path: list = []
    node = data
    for i, seg in enumerate(loc):
        if isinstance(node, dict) and seg in node:
            path.append(seg)
            node = node[seg]
        elif isinstance(node, dict) and isinstance(seg, str) and seg.isdigit() and int(seg) in node:
            path.append(int(seg))
            node = node[int(seg)]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            path.append(seg)
            node = node[seg]
        elif missing and i == len(loc) - 1 and isinstance(seg, str):
            path.append(seg)
        # Anything else names a union member ('str', 'dict[str,any]'): skip.
    return tuple(path)


def _model_at(path: KeyPath) -> Optional[type[BaseModel]]:
    """The schema section class at `path`, or None for free-form parts."""
    model: Optional[type[BaseModel]] = Config
    for seg in path:
        if model is None or not isinstance(seg, str) or seg not in model.model_fields:
            return None
        model = section_model(model.model_fields[seg].annotation)
    return model


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict):
        text = "a mapping {" + ", ".join(str(k) for k in list(value)[:5]) + ("..." if len(value) > 5 else "") + "}"
    elif isinstance(value, list):
        text = f"a list of {len(value)}" if len(value) > 5 else repr(value)
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expected(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "union_tag_invalid":
        # A tagged union (tune.space's `type:`): say which tags exist.
        return f"{ctx.get('discriminator', '').strip(chr(39))} one of {ctx.get('expected_tags')} (not {ctx.get('tag')!r})"
    if kind == "literal_error":
        return "one of " + str(ctx.get("expected", ""))
    if kind == "greater_than_equal":
        return f"a number >= {ctx.get('ge')}"
    if kind == "greater_than":
        return f"a number > {ctx.get('gt')}"
    if kind == "less_than":
        return f"a number < {ctx.get('lt')}"
    if kind == "less_than_equal":
        return f"a number <= {ctx.get('le')}"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} item(s)"
    return " ".join(str(err.get("msg", kind)).split()).rstrip(".").lower()


def explain(exc: ValidationError, data: dict, positions: Positions, source: Optional[str]) -> ConfigError:
    """Translate pydantic's errors into one located ConfigError.

    Unknown keys come first (a misspelt key often explains a missing one);
    otherwise the first problem pydantic reports. Errors about the members
    of one union (a string or a mapping) are merged into one "expected".

    Args:
        exc: the ValidationError.
        data: the mapping that was validated.
        positions: where each key path was written.
        source: the config file, or None.

    Returns:
        The ConfigError to raise.
    """
    groups: dict[KeyPath, list[dict]] = {}
    for err in exc.errors(include_url=False):
        path = _clean_loc(tuple(err["loc"]), data, err["type"] == "missing")
        groups.setdefault(path, []).append(err)

    def locate(path: KeyPath) -> tuple[Optional[str], Optional[int]]:
        for n in range(len(path), 0, -1):
            if path[:n] in positions:
                return positions[path[:n]]
        return source, None

    def order(item: tuple[int, KeyPath]) -> tuple[int, float, int]:
        # Unknown keys first, then the problem written first in the file.
        index, path = item
        extra = any(e["type"] == "extra_forbidden" for e in groups[path])
        line = locate(path)[1]
        return (0 if extra else 1, line if line is not None else float("inf"), index)

    chosen = min(enumerate(groups), key=order)[1]
    errs = groups[chosen]

    file, line = locate(chosen)
    key = dotted(chosen) or None
    extra = next((e for e in errs if e["type"] == "extra_forbidden"), None)
    if extra is not None:
        name = chosen[-1]
        model = _model_at(chosen[:-1])
        fields = list(model.model_fields) if model is not None else []
        near = closest(name, fields)
        hint = f"did you mean '{near}'?" if near else (f"valid keys: {', '.join(fields)}" if fields else None)
        return ConfigError(f"unknown key '{name}'", file=file, line=line, key=key, hint=hint)
    if any(e["type"] == "missing" for e in errs):
        file, line = locate(chosen[:-1])
        hint = "a config needs model.layers" if chosen in (("model",), ("model", "layers")) else None
        return ConfigError("required key is missing", file=file, line=line, key=key, hint=hint)
    expected: list[str] = []
    for e in errs:
        text = _expected(e)
        if text not in expected:
            expected.append(text)
    given = errs[0].get("input")
    hint = None
    literal = next((e for e in errs if e["type"] == "literal_error"), None)
    if literal is not None and isinstance(given, str):
        choices = re.findall(r"'([^']*)'", str((literal.get("ctx") or {}).get("expected", "")))
        hint = did_you_mean(given, choices)
    return ConfigError(f"expected {' or '.join(expected)}, got {_show(given)}", file=file, line=line, key=key, hint=hint)
