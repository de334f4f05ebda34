"""Loading a config document: a file, the bases it `extends`, `--set`.

Reading one file safely with line numbers is `dlcli.config.yamlfile`;
the overrides are `dlcli.config.overrides`. What comes out is a plain
mapping plus where each key path was written, for `validate.build_config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from dlcli.config.overrides import apply_overrides
from dlcli.config.yamlfile import KeyPath, Positions, dotted, read_mapping
from dlcli.errors import ConfigError


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
