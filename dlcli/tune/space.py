"""A trial's parameters: drawn from `tune.space`, applied as `--set` would."""

from __future__ import annotations

from typing import Any

from dlcli.config.tune_space import override

_PRIMITIVE = (type(None), bool, int, float, str)


def optuna_choices(param: Any) -> list[Any]:
    """The values Optuna chooses among for a categorical parameter.

    Optuna stores only None, bool, int, float and str; choices that are
    lists or mappings (a whole layer list) are given to it as their YAML
    text, which the study's table shows and `decode` turns back.
    """
    if all(isinstance(c, _PRIMITIVE) for c in param.choices):
        return list(param.choices)
    return [override("", c)[1:] for c in param.choices]


def decode(param: Any, value: Any) -> Any:
    """The config value behind an Optuna parameter value."""
    if param.type != "categorical":
        return value
    choices = optuna_choices(param)
    return param.choices[choices.index(value)] if value in choices else value


def grid_values(param: Any) -> list[Any]:
    """Every value of a parameter, for the grid sampler."""
    if param.type == "categorical":
        return optuna_choices(param)
    step = param.step or 1
    n = int(round((param.high - param.low) / step)) + 1
    return [param.low + i * step for i in range(n) if param.low + i * step <= param.high + 1e-12]


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw the trial's value of every key of the space.

    Returns:
        `{dotted key: config value}`.
    """
    values: dict[str, Any] = {}
    for key, p in space.items():
        if p.type == "float":
            v = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
            if p.step is not None:
                v = round(v, 12)  # 0.3, not 0.30000000000000004, in config.yaml
        elif p.type == "int":
            v = trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        else:
            v = decode(p, trial.suggest_categorical(key, optuna_choices(p)))
        values[key] = v
    return values


def overrides(values: dict[str, Any]) -> list[str]:
    """The `--set` strings that apply a trial's values."""
    return [override(k, v) for k, v in values.items()]
