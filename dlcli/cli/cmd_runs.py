"""`dlcli runs`: list run folders, or compare runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlcli.cli.common import JsonOpt, err_console, handle_errors, out_console, print_json

WhereArg = Annotated[
    Optional[list[Path]],
    typer.Argument(help="A runs root, a NAME folder, or two or more run folders to compare. (default: runs/)",
                   metavar="[ROOT|NAME|RUN]...", show_default=False),
]
PlotOpt = Annotated[
    Optional[Path],
    typer.Option("--plot", "-p", metavar="FILE", help="Comparing: also draw the runs' curves into one PNG."),
]


@handle_errors
def runs(where: WhereArg = None, plot: PlotOpt = None, json_: JsonOpt = False) -> None:
    """List runs with status and results, or compare runs side by side.

    Example: dlcli runs runs/cnn_digits/1 runs/cnn_digits/2 --plot compare.png
    """
    from dlcli import api

    paths = list(where or [Path("runs")])
    from dlcli.runlist import is_run_folder

    if len(paths) >= 2 and all(is_run_folder(p) for p in paths):
        result = api.compare_runs(paths, plot=plot)
        if json_:
            print_json(result)
            return
        _print_comparison(result)
        if result.get("plot"):
            err_console.print(f"curves: {result['plot']}", markup=False)
        return
    if plot is not None:
        from dlcli.errors import ConfigError

        raise ConfigError("--plot draws a comparison: give two or more run folders", key="--plot")
    rows = api.runs(paths)
    if json_:
        print_json({"runs": rows})
        return
    _print_list(rows)


def _num(v: Any) -> str:
    return "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _best(b: Optional[dict[str, Any]]) -> str:
    if not b or b.get("value") is None:
        return ""
    return f"{b.get('monitor') or ''} {b['value']:.4g}@{b.get('epoch')}".strip()


def _duration(s: Optional[float]) -> str:
    if s is None:
        return ""
    s = float(s)
    return f"{s:.1f}s" if s < 120 else f"{int(s // 60)}m{int(s % 60):02d}s"


def _print_list(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    colour = {"finished": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    table = Table(box=None, pad_edge=False)
    for col, just in (("run", "left"), ("status", "left"), ("epochs", "right"), ("best", "left"),
                      ("model", "right"), ("test", "left"), ("time", "right")):
        # The path folds; the short columns keep their words whole.
        table.add_column(col, justify=just, overflow="fold", no_wrap=col in ("status", "epochs", "model", "time"))
    for r in rows:
        test = " ".join(f"{k} {v:.4g}" for k, v in list(r["test"].items())[:2])
        epochs = f"{r['epochs']}/{r['planned_epochs']}" if r["planned_epochs"] else str(r["epochs"])
        table.add_row(r["run"], f"[{colour.get(r['status'], 'white')}]{r['status']}[/]", epochs, _best(r["best"]),
                      _num(r["model_epoch"]), test, _duration(r["duration_s"]))
    out_console.print(table)


def _print_comparison(result: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    runs = result["runs"]
    table = Table(title="compare", title_justify="left")
    table.add_column("", overflow="fold")
    for r in runs:
        table.add_column(escape(r["run"]), justify="right", overflow="fold")
    table.add_row("status", *(r["status"] for r in runs))
    table.add_row("epochs", *(str(r["epochs"]) for r in runs))
    table.add_row("best", *(_best(r["best"]) for r in runs))
    table.add_row("model epoch", *(_num(r["model_epoch"]) for r in runs))
    for key in sorted({k for r in runs for k in r["final"] if k.startswith("val_")}):
        table.add_row(f"final {key}", *(_num(r["final"].get(key)) for r in runs))
    for key in sorted({k for r in runs for k in r["test"]}):
        table.add_row(f"test {key}", *(_num(r["test"].get(key)) for r in runs))
    table.add_row("time", *(_duration(r["duration_s"]) for r in runs))
    diffs = result["config_differences"]
    if diffs:
        table.add_section()
        for key, values in diffs.items():
            table.add_row(escape(key), *(escape(_num(v)) for v in values))
    out_console.print(table)
    out_console.file.flush()  # before the note on stderr
