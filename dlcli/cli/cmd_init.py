"""`dlcli init DATA`: write a starter config for a table, image folder or npz."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcli.cli.common import JsonOpt, NameOpt, err_console, handle_errors, print_json

DataArg = Annotated[Path, typer.Argument(help="A .csv/.tsv/.parquet table, a folder of class folders of images, or a .npz file.",
                                         metavar="DATA", show_default=False)]
TargetOpt = Annotated[Optional[str], typer.Option("--target", metavar="COLUMN",
                                                  help="Tables: the column to predict (asked for on a terminal).")]
ConfigOutOpt = Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE",
                                                      help="The config file to write. (default: NAME.yaml)")]
ForceOpt = Annotated[bool, typer.Option("--force", metavar="", help="Overwrite the config file if it exists.")]


@handle_errors
def init(data: DataArg, target: TargetOpt = None, output: ConfigOutOpt = None, name: NameOpt = None,
         force: ForceOpt = False, json_: JsonOpt = False) -> None:
    """Write a starter config for DATA that trains as written.

    Task, classes, loss and last layer are inferred from the data.

    Example: dlcli init penguins.csv --target species && dlcli train penguins.yaml
    """
    from dlcli import api
    from dlcli.scaffold import TABLE_SUFFIXES, table_columns

    if target is None and data.suffix.lower() in TABLE_SUFFIXES and data.is_file() and sys.stdin.isatty() and not json_:
        columns = table_columns(data)
        err_console.print(f"columns: {', '.join(columns)}", markup=False)
        target = typer.prompt("which column should the model predict?", err=True)
    result = api.init(data, target=target, output=output, name=name, force=force)
    if json_:
        print_json(result)
        return
    err_console.print(f"wrote {result['config']}", markup=False)
    err_console.print(f"next: dlcli train {result['config']}", markup=False)
