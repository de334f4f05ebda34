"""Commands: validate, schema, summary.

`validate` and `schema` never import TensorFlow: configs are checked
against the Keras catalogue (`dlcli.config.catalog`). `summary` builds the
model, so it does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlcli.cli.common import JsonOpt, SetOpt, err_console, handle_errors, out_console, print_json

ConfigArg = Annotated[Path, typer.Argument(help="The config file (YAML).", metavar="CONFIG", show_default=False)]


def _ref_name(ref: Any) -> str:
    if isinstance(ref, dict):
        return str(ref.get("class_name", "?"))
    return str(ref)


@handle_errors
def validate(
    config: ConfigArg,
    set_: SetOpt = None,
    print_: Annotated[bool, typer.Option("--print", metavar="", help="Print the fully resolved config (defaults, extends and --set applied) as YAML on stdout.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Check a config without importing TensorFlow: keys, types, Keras names and arguments, the layer graph."""
    from dlcli import api

    cfg = api.validate(config, list(set_ or ()))
    for notice in cfg.notices:
        err_console.print(f"notice: {notice}", markup=False)
    if json_:
        print_json({"ok": True, "config": cfg.to_dict()})
    elif print_:
        sys.stdout.write(cfg.to_yaml())
        sys.stdout.flush()
    n = len(cfg.model.layers)
    err_console.print(
        f"ok: {config} ({n} layer{'s' if n != 1 else ''}, {_ref_name(cfg.compile.loss)}, {_ref_name(cfg.compile.optimizer)})",
        markup=False,
    )


@handle_errors
def schema(
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="FILE", help="Write the schema to this file instead of stdout."),
    ] = None,
) -> None:
    """Print the JSON Schema of config files, for editor completion.

    Point a YAML language server at it: `# yaml-language-server: $schema=dlcli.schema.json`.
    """
    from dlcli import api

    text = json.dumps(api.schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from dlcli.errors import ConfigError
    from dlcli.runs import atomic_write_text

    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file name such as dlcli.schema.json")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    atomic_write_text(output, text)
    err_console.print(f"wrote {output}", markup=False)


@handle_errors
def summary(config: ConfigArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Build the config's model and print its layers, output shapes and parameter counts."""
    from dlcli import api

    info = api.summary(config, list(set_ or ()))
    if json_:
        print_json(info)
        return
    _print_summary(info)


def _shape(shape: Any) -> str:
    # Keras's own summary writes shapes as tuples: (None, 28, 28, 1).
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        return ", ".join(_shape(s) for s in shape)
    if isinstance(shape, (list, tuple)):
        return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    return str(shape)


def _print_summary(info: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"model {info.get('name', '')}"), title_justify="left")
    table.add_column("layer")
    table.add_column("class")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    for layer in info.get("layers", []):
        table.add_row(
            escape(str(layer.get("name", ""))),
            escape(str(layer.get("class_name", ""))),
            escape(_shape(layer.get("output_shape", ""))),
            f"{int(layer.get('params', 0)):,}",
        )
    out_console.print(table)
    out_console.print(
        f"total params: {int(info.get('total_params', 0)):,} "
        f"(trainable {int(info.get('trainable_params', 0)):,}, "
        f"non-trainable {int(info.get('non_trainable_params', 0)):,})",
        markup=False,
    )
