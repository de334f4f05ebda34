"""`dlcli cache`: the parsed-CSV cache's tables, or clear it."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from dlcli.cli.common import JsonOpt, err_console, handle_errors, out_console, print_json

ClearOpt = Annotated[bool, typer.Option("--clear", help="Remove every cached table (always safe: a CSV is parsed again).")]


@handle_errors
def cache(clear: ClearOpt = False, json_: JsonOpt = False) -> None:
    """List the CSV tables parsed once and kept for the next read, or --clear them.

    The folder: $DLCLI_TABLE_CACHE, else ~/.cache/dlcli/tables; DLCLI_TABLE_CACHE=off turns it off, DLCLI_TABLE_CACHE_MB bounds it (default 4096).

    Example: dlcli cache --clear
    """
    from dlcli.data import table_cache

    folder = table_cache.cache_dir()
    if clear:
        tables, size = table_cache.clear()
        if json_:
            print_json({"folder": None if folder is None else str(folder), "removed": tables, "bytes": size})
        else:
            err_console.print(f"removed {tables} cached table(s), {_mib(size)}, from {folder}" if folder
                              else "the parsed-CSV cache is off (DLCLI_TABLE_CACHE=off): nothing to clear")
        return
    rows = table_cache.entries()
    budget = table_cache.budget_bytes()
    if json_:
        print_json({"folder": None if folder is None else str(folder), "budget_bytes": budget,
                    "bytes": sum(r["bytes"] for r in rows), "tables": rows})
        return
    if folder is None:
        err_console.print("the parsed-CSV cache is off (DLCLI_TABLE_CACHE=off)")
        return
    if not rows:
        err_console.print(f"no cached tables in {folder} (a CSV of 1 MiB or more is kept when it is first read)")
        return
    from rich.table import Table

    table = Table(title=f"Parsed CSVs in {folder}: {len(rows)} table(s), {_mib(sum(r['bytes'] for r in rows))} "
                  f"of {_mib(budget)}", title_justify="left")
    for name, justify in (("source", "left"), ("rows", "right"), ("columns", "right"), ("size", "right"),
                          ("last used", "left")):
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(r["source"] or "?", "?" if r["rows"] is None else f"{r['rows']:,}", str(r["columns"]), _mib(r["bytes"]),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])))
    out_console.print(table)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"
