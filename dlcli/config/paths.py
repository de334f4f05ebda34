"""Portable paths: a relative path in a config resolves against the folder
of the file that wrote it (a base config's paths against the base's
folder); one given with `--set` or in a Python mapping, against the current
directory. The resolved config holds absolute paths, so the run folder's
config.yaml works from any directory (evaluate, predict, export, resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

# The `data:` keys that name files or folders.
PATH_KEYS = ("path", "validation_path", "test_path", "masks")


def base_folder(cfg: Any, key: str) -> Path:
    """The folder a relative value of `key` is relative to."""
    file, _ = cfg.locate(key)
    if file and Path(file).is_file():
        return Path(file).resolve().parent
    return Path.cwd()


def absolute(cfg: Any, key: str, value: Optional[str]) -> Optional[str]:
    """`value` made absolute for `key` (None stays None). A relative path
    that exists only from the current directory (a config written before
    paths followed the config file) is taken from there."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = base_folder(cfg, key) / path
    if not candidate.exists() and (Path.cwd() / path).exists():
        candidate = Path.cwd() / path
    return str(candidate.resolve())


def resolve_data_paths(cfg: Any) -> None:
    """Make every path-valued `data:` key of a validated config absolute."""
    for key in PATH_KEYS:
        if key in type(cfg.data).model_fields:
            value = getattr(cfg.data, key)
            if isinstance(value, str):
                setattr(cfg.data, key, absolute(cfg, f"data.{key}", value))


def resolve_path(cfg: Any, value: Any) -> Path:
    """A path from the config as a Path (already absolute after loading)."""
    return Path(str(value)).expanduser()
