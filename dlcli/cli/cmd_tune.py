"""`dlcli tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlcli.cli.common import (
    JsonOpt,
    NameOpt,
    OutputRootOpt,
    SetOpt,
    err_console,
    handle_errors,
    out_console,
    print_json,
)

TuneConfigArg = Annotated[Path, typer.Argument(help="A YAML config with a tune: section.", metavar="CONFIG", show_default=False)]
WorkersOpt = Annotated[int, typer.Option("--workers", "-w", min=1, metavar="N", help="Worker processes to run on this machine. (default: 1)", show_default=False)]
StorageOpt = Annotated[
    Optional[str],
    typer.Option("--storage", metavar="URL", help="Optuna database URL shared by workers on many machines. (default: SQLite in the study folder)"),
]
TrialsOpt = Annotated[Optional[int], typer.Option("--trials", "-t", min=1, metavar="N", help="Trials the study should hold (shorthand for --set tune.trials=N).")]
HeartbeatOpt = Annotated[
    int,
    typer.Option("--heartbeat", min=1, metavar="SECONDS", help="Seconds between a running trial's heartbeats; a trial silent for 3 of them is retried. (default: 10)",
                 show_default=False),
]


@handle_errors
def tune(
    config: TuneConfigArg,
    set_: SetOpt = None,
    output: OutputRootOpt = None,
    name: NameOpt = None,
    workers: WorkersOpt = 1,
    storage: StorageOpt = None,
    trials: TrialsOpt = None,
    heartbeat: HeartbeatOpt = 10,
    json_: JsonOpt = False,
) -> None:
    """Search hyperparameters with Optuna; every trial is a run folder.

    The study folder is OUTPUT/NAME/tune/: study.db, best.yaml,
    trials.json, plots/ and trial-<NNN>/1/ run folders. Running the same
    command again resumes the study.

    Example: dlcli tune configs/tune_digits.yaml --workers 2
    """
    from dlcli import api

    def say(text: str) -> None:
        err_console.print(text, markup=False, highlight=False)

    result = api.tune(
        config,
        set_ or [],
        output=output or Path("runs"),
        name=name,
        storage=storage,
        workers=workers,
        trials=trials,
        heartbeat=heartbeat,
        say=say,
    )
    summary = result.summary
    if json_:
        print_json(summary)
        return
    out_console.print(trials_table(summary))
    best = summary["best"]
    if best:
        err_console.print(
            f"[green]best[/] trial {best['number']}: {summary['metric']} {best['value']:.4f}; "
            f"config: [bold]{best['config']}[/]"
        )
    err_console.print(f"study folder: [bold]{summary['study_dir']}[/]")


def trials_table(summary: dict[str, Any]) -> Any:
    """A Rich table: one row per trial, its parameters, value and state."""
    from rich import box
    from rich.table import Table

    rows = summary["trials"]
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    best = (summary["best"] or {}).get("number")
    table = Table(
        title=f"study {summary['study']}: {summary['trials_done']}/{summary['trials_planned']} trials, "
        f"{summary['direction']} {summary['metric']}",
        caption=f"* best; trial N's run folder: {summary['study_dir']}/trial-NNN/1",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column(summary["metric"], justify="right", no_wrap=True, min_width=len(summary["metric"]))
    for header in short_names(keys):
        table.add_column(header, justify="right", no_wrap=True, min_width=min(len(header), 14))
    table.add_column("time", justify="right", no_wrap=True)
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        state = r["state"] + (f" @{r['pruned_at']}" if r["pruned_at"] else "")
        cells = [str(r["number"]) + (" *" if r["number"] == best else ""), state, value]
        cells += [_cell(r["params"].get(k)) for k in keys]
        cells.append("" if r["duration_s"] is None else f"{r['duration_s']:.1f}s")
        table.add_row(*cells, style="bold" if r["number"] == best else None)
    return table


def short_names(keys: list[str]) -> list[str]:
    """The shortest tail of each dotted key that tells it from the others
    (`learning_rate`, `1.Dense.units`)."""
    names = []
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(k == tail or k.endswith("." + tail) for k in keys) == 1:
                break
        names.append(tail)
    return names


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
