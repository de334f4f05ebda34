"""The config language: YAML files, `extends`, `--set`, validation.

    >>> from dlcli.config import load_config
    >>> cfg = load_config("configs/cnn_digits.yaml", ["train.epochs=2"])
    >>> cfg.train.epochs
    2

Loading never imports TensorFlow: Keras names are checked against a
catalogue generated from Keras (`dlcli.config.catalog`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from dlcli.config.loader import load_document, resolve_extends
from dlcli.config.overrides import apply_overrides
from dlcli.config.schema import Config
from dlcli.config.suggest import tidy
from dlcli.config.validate import build_config
from dlcli.errors import ConfigError

__all__ = ["Config", "ConfigError", "config_from_dict", "load_config"]


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    """Load, merge, override and validate a config file.

    Args:
        path: the YAML file.
        overrides: `key.path=value` strings (`--set`), values parsed as YAML.

    Returns:
        The validated `Config`; `name` defaults to the file's stem.

    Raises:
        ConfigError: anything wrong, located at file:line and dotted key.
    """
    # One string is one override, not a sequence of characters.
    overrides = [overrides] if isinstance(overrides, str) else list(overrides or ())
    try:
        data, positions = load_document(path, overrides)
        cfg = build_config(data, positions, str(path))
        _check(cfg)
    except ConfigError as err:
        raise tidy(err)
    return cfg


def config_from_dict(
    d: Mapping[str, Any],
    source: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Validate a config given as a Python mapping.

    Args:
        d: the config (not modified).
        source: a file name to report in errors and to take the default
            name and `extends` folder from; None for none.
        overrides: `key.path=value` strings, as with `--set`.

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: anything wrong, located at the dotted key.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"a config must be a mapping, got {type(d).__name__}", file=source)
    # One string is one override, not a sequence of characters.
    overrides = [overrides] if isinstance(overrides, str) else list(overrides or ())
    file = os.fspath(source) if source is not None else None
    try:
        data = copy.deepcopy(dict(d))
        data, positions = resolve_extends(data, {}, file)
        apply_overrides(data, positions, overrides)
        cfg = build_config(data, positions, file)
        _check(cfg)
    except ConfigError as err:
        raise tidy(err)
    return cfg


def _check(cfg: Config) -> None:
    # Imported here so `python -m dlcli.config.catalog` does not find the
    # module half-imported by this package.
    from dlcli.config.catalog import check_config
    from dlcli.config.tune_space import check_tune
    from dlcli.config.paths import resolve_data_paths

    resolve_data_paths(cfg)
    check_config(cfg)
    check_tune(cfg)
