"""Values derived from the data and the run: `steps_per_epoch * 5`.

A learning-rate schedule counts optimizer steps, but a config knows epochs:
`CosineDecay: {decay_steps: total_steps, warmup_steps: steps_per_epoch}`
instead of a number worked out by hand (and wrong once the data or the
batch size changes). A value of a schedule's config may be an arithmetic
expression of these names:

- `steps_per_epoch`: batches in one epoch of the training data;
- `epochs`: train.epochs;
- `total_steps`: steps_per_epoch * epochs.

Only numbers, these names, `+ - * / // ( )` are read (Python's `ast`, no
`eval`); the result is a whole number where it is one.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Mapping, Optional, Union

from dlcli.config.suggest import did_you_mean
from dlcli.errors import ConfigError

NAMES = ("steps_per_epoch", "epochs", "total_steps")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv}


_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load, ast.operator, ast.unaryop)


def is_reference(arg: str, value: Any) -> bool:
    """True for a schedule argument written as an expression of names
    (`total_steps`, `steps_per_epoch * 2`); `name:` is always a name."""
    if arg == "name" or not isinstance(value, str):
        return False
    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    return all(isinstance(n, _ALLOWED) for n in nodes) and any(isinstance(n, ast.Name) for n in nodes)


def check(text: str) -> Optional[str]:
    """Why `text` is not a valid expression, or None when it is."""
    try:
        _eval(ast.parse(text, mode="eval").body, {n: 1 for n in NAMES})
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return str(exc) if not isinstance(exc, SyntaxError) else f"'{text}' is not an arithmetic expression"
    return None


def evaluate(text: str, values: Mapping[str, Optional[int]], *, key: str, locate: Any = None) -> Union[int, float]:
    """The value of `text` given the run's `steps_per_epoch` and `epochs`.

    Raises:
        ConfigError: not an expression of NAMES, or a name with no value.
    """
    def fail(message: str, hint: Optional[str] = None) -> ConfigError:
        return locate(key, message, hint) if locate else ConfigError(message, key=key, hint=hint)

    known = dict(values)
    if known.get("steps_per_epoch") is not None and known.get("epochs") is not None:
        known["total_steps"] = int(known["steps_per_epoch"]) * int(known["epochs"])
    problem = check(text)
    if problem:
        raise fail(problem, f"write a number or an expression of {', '.join(NAMES)}")
    missing = [n for n in NAMES if n in text and known.get(n) is None]
    if missing:
        raise fail(f"'{text}' needs {missing[0]}, which is known only when training on data")
    result = _eval(ast.parse(text, mode="eval").body, known)
    return int(result) if float(result).is_integer() else float(result)


def _eval(node: ast.AST, values: Mapping[str, Any]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in NAMES:
            near = did_you_mean(node.id, NAMES)
            raise ValueError(f"unknown name '{node.id}'" + (f" ({near})" if near else f" (known: {', '.join(NAMES)})"))
        return values[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, values)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("only numbers, steps_per_epoch, epochs, total_steps and + - * / // ( ) may be used")
