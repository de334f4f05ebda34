"""`--data` of `dlcli evaluate`: a path, `key=value,...`, a YAML mapping
or a source name, read into a `data:` mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dlcli.errors import ConfigError, DataError


def parse_data_option(data: str | Mapping[str, Any]) -> dict[str, Any]:
    """Read `--data` into a `data:` mapping.

    Accepts a path (a folder is image_dir, `.csv` csv, `.npz` npz),
    `key=value,key=value` (values parsed as YAML; brackets and quotes may
    hold commas), a YAML mapping (`{source: csv, path: x.csv}`), or a
    built-in source's name.

    Raises:
        ConfigError: text that is none of these.
        DataError: a path that does not exist, or a file of unknown kind.
    """
    import yaml

    if isinstance(data, Mapping):
        return _strip_prefix(dict(data))
    text = str(data).strip()
    if not text:
        raise ConfigError("--data is empty", hint="pass a path, or key=value pairs such as source=csv,path=x.csv,target=y")
    path = Path(text).expanduser()
    if path.exists():
        return {"source": _source_for_path(path), "path": text}
    if "=" in text and not text.startswith("{"):
        out: dict[str, Any] = {}
        for part in _split_top_level(text):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--data: {part!r} is not key=value", hint="e.g. source=csv,path=x.csv,target=y")
            try:
                parsed = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError as exc:
                raise ConfigError(f"--data: cannot parse the value of {key.strip()!r}: {exc}") from None
            _set_dotted(out, key.strip(), parsed)
        return _with_source_from_path(_strip_prefix(out))
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, dict):
        return _with_source_from_path(_strip_prefix(parsed))
    if "/" in text or "\\" in text or Path(text).suffix:
        raise DataError(f"--data {text}: no such file or folder")
    if text.isidentifier():
        return {"source": text}
    raise ConfigError(
        f"--data {text!r}: not a path, key=value pairs or a YAML mapping",
        hint="e.g. --data test_images/ or --data source=csv,path=x.csv,target=y",
    )


def _source_for_path(path: Path) -> str:
    from dlcli.data.registry import source_for_path

    source = source_for_path(path)
    if source is None:
        raise DataError(
            f"--data {path}: cannot tell what kind of data a {path.suffix or 'suffix-less'} file is",
            hint="pass a folder of images, a .csv or a .npz file, or say source=...,path=...",
        )
    return source.name


def _with_source_from_path(d: dict[str, Any]) -> dict[str, Any]:
    if "path" in d and "source" not in d and d["path"]:
        path = Path(str(d["path"])).expanduser()
        if not path.exists():
            raise DataError(f"--data path {path}: no such file or folder")
        d["source"] = _source_for_path(path)
    return d


def _strip_prefix(d: dict[str, Any]) -> dict[str, Any]:
    # `data.path=x` and `path=x` mean the same thing.
    if set(d) == {"data"} and isinstance(d["data"], dict):
        return dict(d["data"])
    return d


def _set_dotted(out: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] == "data" and len(parts) > 1:
        parts = parts[1:]
    node = out
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]
