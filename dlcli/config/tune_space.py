"""Checking a config's `tune:` section without TensorFlow or Optuna.

Every key of `tune.space` is a `--set` path. It is checked by applying the
distribution's extreme values (low and high, or every choice) to the
resolved config exactly as `--set` would and validating the result like any
config, so a path that does not exist, a layer argument Keras does not
know, or a value the schema refuses is reported at the space key's line,
with the did-you-mean the override check gives.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from dlcli.errors import ConfigError


def override(key: str, value: Any) -> str:
    """The `--set` text that puts `value` at `key` (YAML flow style).

    PyYAML writes floats so that they read back as floats (`1.0e-05`, not
    `1e-05`, which YAML 1.1 reads as a string).
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text == "...":
        text = ""
    return f"{key}={text}"


def check_tune(cfg: Any) -> None:
    """Check `cfg.tune` (when present) against the rest of the config.

    Raises:
        ConfigError: at `tune.space.<key>`'s line: a bad range, or a key or
            value that `--set` or the schema refuses.
    """
    if cfg.tune is None:
        return
    base = cfg.to_dict()
    base.pop("tune", None)
    for key, param in cfg.tune.space.items():
        where = f"tune.space.{key}"
        _check_range(cfg, where, param)
        for label, value in _extremes(param):
            _check_value(cfg, base, where, key, label, value)
    if cfg.tune.sampler == "grid":
        for key, param in cfg.tune.space.items():
            if param.type == "float" and param.step is None:
                raise cfg.error(
                    f"tune.space.{key}",
                    "the grid sampler needs a finite set of values",
                    hint="give this float a step, or make it categorical",
                )


def _check_range(cfg: Any, where: str, param: Any) -> None:
    if param.type == "categorical":
        return
    if not param.low < param.high:
        raise cfg.error(where, f"low ({param.low}) must be below high ({param.high})")
    if param.log and param.low <= 0:
        raise cfg.error(where, f"a log scale needs low > 0, got {param.low}")
    if param.log and param.step not in (None, 1):
        raise cfg.error(where, "log and step cannot be combined", hint="drop one of them")


def _extremes(param: Any) -> list[tuple[str, Any]]:
    if param.type == "categorical":
        return [(f"choice {i}", c) for i, c in enumerate(param.choices)]
    return [("low", param.low), ("high", param.high)]


def _check_value(cfg: Any, base: dict, where: str, key: str, label: str, value: Any) -> None:
    from dlcli.config import config_from_dict

    try:
        config_from_dict(base, overrides=[override(key, value)])
    except ConfigError as err:
        message = err.message.removeprefix(f"{key}: ")
        if err.key and err.key != "--set" and not message.startswith(err.key):
            message = f"{err.key}: {message}"
        raise cfg.error(where, f"{label} ({_short(value)}): {message}", hint=err.hint) from None


def _short(value: Any, limit: int = 40) -> str:
    text = override("", value)[1:]
    return text if len(text) <= limit else text[: limit - 3] + "..."
