"""What values a layer's arguments take, learned from Keras (generation time).

Keras layers do not annotate their arguments, and the ones that matter
most (`units`, `filters`, `kernel_size`, `rate`) have no default to read a
type from. So for each required argument the generator builds the layer,
as the model builder would, on a small input: first with plain values to
find a working set, then with one argument changed at a time (0, -1, 2.5,
a list, null, ...), and records which of them Keras refuses. An argument
with a default takes the default's type (true/false, a whole number, a
number). `dlcli validate` checks values against these rules
(`check_layers.value_problem`) without importing Keras.

Every probe layer and input is named, so Keras's automatic layer names
(`dense`, `dense_1`) in the same process are not shifted.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Optional

# Plain values tried for the required arguments, and one-sample input
# shapes tried for the layer (vectors, sequences, images, volumes).
_BASES: tuple[Any, ...] = (2, 0.5, [2, 2])
_INPUTS = ((4,), (4, 3), (8, 8, 3), (4, 8, 8, 3))
_MAX_REQUIRED = 3
_PROBE = "dlcli_probe"


def _builds(cls: type, kwargs: dict[str, Any], shape: Optional[tuple]) -> bool:
    """True when Keras constructs the layer and calls it on an input of `shape`."""
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            layer = cls(**kwargs, name=_PROBE)
            if shape is not None:
                layer(keras.Input(shape, name=f"{_PROBE}_input"))
        except Exception:  # noqa: BLE001 - any refusal is what is being learned
            return False
    return True


def _working(cls: type, required: list[str]) -> Optional[tuple[dict[str, Any], tuple]]:
    """Plain values for the required arguments and an input shape it builds on."""
    for values in itertools.product(_BASES, repeat=len(required)):
        kwargs = dict(zip(required, values))
        for shape in _INPUTS:
            if _builds(cls, kwargs, shape):
                return kwargs, shape
    return None


def _learned(cls: type, arg: str, base: dict[str, Any], shape: tuple) -> dict[str, Any]:
    """The rule for one required argument, from what Keras builds."""
    value = base[arg]
    scalar = not isinstance(value, list)
    plain = value if scalar else value[0]

    def ok(v: Any) -> bool:
        return _builds(cls, {**base, arg: v if scalar else [v, v]}, shape)

    rule: dict[str, Any] = {"kind": "number", "scalar": scalar or _builds(cls, {**base, arg: plain}, shape),
                            "seq": not scalar, "none": _builds(cls, {**base, arg: None}, shape)}
    if scalar:
        # A size that may also be a list has one entry per spatial axis
        # (Conv1D's kernel_size: [3], Conv2D's: [3, 3]).
        lengths = [n for n in (1, 2, 3) if _builds(cls, {**base, arg: [plain] * n}, shape)]
        rule["seq"] = bool(lengths)
        if 0 < len(lengths) < 3:  # every length built: no rule on it
            rule["lengths"] = lengths
    if isinstance(plain, int) and not ok(2.5):
        rule["kind"] = "int"
        rule["whole_floats"] = ok(2.0)
        if not ok(0):
            rule["min"] = 1
        elif not ok(-1):
            rule["min"] = 0
        return rule
    if not ok(-0.5):
        rule["min"] = 0
        rule["min_open"] = not ok(0)
    if ok(1) and not ok(1.5):
        rule["max"] = 1
    return rule


def _from_default(default: Any) -> Optional[dict[str, Any]]:
    """A loose rule from a default's type: only plainly wrong kinds refused."""
    if isinstance(default, bool):
        return {"kind": "bool"}
    if isinstance(default, (int, float)):
        return {"kind": "int" if isinstance(default, int) else "number", "loose": True}
    return None


def default_rules(cls: type, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rules read from the defaults alone (nothing built)."""
    return {arg: rule for arg, default in info["defaults"].items() if (rule := _from_default(default)) is not None}


def value_rules(cls: type, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The value rules of a layer class's arguments, for the catalogue.

    Args:
        cls: the layer class.
        info: `constructor_args(cls)` (args, required, defaults).

    Returns:
        {argument: rule}; arguments with nothing known are left out.
    """
    rules = default_rules(cls, info)
    required = info["required"]
    if required and len(required) <= _MAX_REQUIRED:
        found = _working(cls, required)
        if found is not None:
            base, shape = found
            for arg in required:
                rules[arg] = _learned(cls, arg, base, shape)
    return rules
