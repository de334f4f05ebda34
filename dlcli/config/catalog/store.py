"""Finding the Keras catalogue for the installed Keras (no Keras import).

The shipped `dlcli/config/keras_catalog.json` is used when it was
generated from the installed Keras version; otherwise a
TensorFlow-importing command (`summary`, `train`) calls
`ensure_catalog()`, which generates one into the user cache
(`$XDG_CACHE_HOME/dlcli` or `~/.cache/dlcli`). Without either, only the
config's structure is checked (`check_config` says so in a notice).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

# Bump when the JSON layout changes, so an old cached file is not misread
# (2: constructors' required arguments and value kinds).
FORMAT = 2
SHIPPED_CATALOG = Path(__file__).resolve().parents[1] / "keras_catalog.json"


@functools.lru_cache(maxsize=1)
def installed_keras_version() -> Optional[str]:
    """The installed Keras version, read from the package metadata
    (importing Keras would load TensorFlow); None when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return None


def cache_path(keras_version: str) -> Path:
    """Where a catalogue generated at run time is cached for `keras_version`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "dlcli" / f"keras_catalog-{keras_version}.json"


class Catalog:
    """Read access to a generated catalogue."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.keras_version: str = data.get("keras_version", "")
        self._sets: dict[str, set[str]] = {}

    def names(self, category: str) -> list[str]:
        """Every string identifier of a category (`losses`: "mse", "MSE", ...)."""
        return list(self.data.get(category, {}).get("names", []))

    def accepts(self, category: str, name: str) -> bool:
        """True when Keras accepts `name` as a string identifier."""
        if category not in self._sets:
            self._sets[category] = set(self.names(category))
        return name in self._sets[category]

    def dict_target(self, category: str, name: str) -> Optional[str]:
        """The class (or function) a `class_name` resolves to, or None."""
        section = self.data.get(category, {})
        table = section.get("dict_names", {})
        if name in table:
            return table[name]
        if section.get("dict_case_insensitive"):
            lowered = {k.lower(): v for k, v in table.items()}
            return lowered.get(name.lower())
        return None

    def dict_names(self, category: str) -> list[str]:
        """Every name a `{class_name: ...}` of the category may take."""
        return list(self.data.get(category, {}).get("dict_names", {}))

    def arguments(self, category: str, target: str) -> Optional[dict[str, Any]]:
        """`{"args": [...] or None (a function), "open": bool, "required":
        [...], "values": {arg: rule}}` for a target."""
        return self.data.get(category, {}).get("targets", {}).get(target)


_memo: dict[str, Optional[Catalog]] = {}


def _read_catalog(path: Path, keras_version: str) -> Optional[Catalog]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == FORMAT and data.get("keras_version") == keras_version:
        return Catalog(data)
    return None


def _find(version: str) -> Optional[Catalog]:
    return _read_catalog(SHIPPED_CATALOG, version) or _read_catalog(cache_path(version), version)


def get_catalog() -> Optional[Catalog]:
    """The catalogue for the installed Keras, without importing it.

    Returns:
        The shipped catalogue when its Keras version matches, else the user
        cache's; when Keras is already imported (a training process), one
        generated now; else None (structural checks only).
    """
    version = installed_keras_version()
    if version is None:
        return None
    if _memo.get(version) is not None:
        return _memo[version]
    found = _find(version)
    if found is None and "keras" in sys.modules:
        # A process that imports Keras (train, tune): ask it now, but build
        # no probe layers, which would make TensorFlow variables before a
        # distribution strategy may be made. Not cached: `summary`
        # (ensure_catalog) caches the full one.
        from dlcli.config.catalog.generate import generate

        found = Catalog(generate(probe=False))
    _memo[version] = found
    return found


def ensure_catalog() -> Catalog:
    """Return a catalogue for the installed Keras, generating and caching
    one when none matches (imports Keras: call it where TensorFlow is
    loaded anyway, e.g. before building a model).

    Returns:
        The catalogue.
    """
    version = installed_keras_version() or ""
    known = _memo.get(version)
    if known is not None and known.data.get("probed"):
        return known
    found = _find(version)
    if found is None:
        from dlcli.config.catalog.generate import generate
        from dlcli.runs import atomic_write_text

        data = generate()
        found = Catalog(data)
        try:
            target = cache_path(data["keras_version"])
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only home only costs a regeneration next time
    _memo[version] = found
    return found
