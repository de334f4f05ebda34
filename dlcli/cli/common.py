"""Options shared by several commands, output helpers and error handling.

stdout carries what a command exists to print (a result table, `--json`);
progress, notes and errors go to stderr. Colour and progress bars appear
only on a terminal.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console

from dlcli.errors import DlcliError

# stdout for results, stderr for everything around them.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
# Into a pipe or a file, result tables keep whole cells (for grep and awk)
# instead of Rich's 80-column default.
out_console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)

# Every option shared by several commands, defined once. Conventions: a
# value's placeholder is an upper-case word (PATH, N, KEY=VALUE); a default
# decided later is written "(default: ...)" in the help; the same short
# flag means the same thing in every command (-s set, -o output, -n name,
# -e epochs, -c config, -q quiet, -b batch size, -d data, -f format).
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        "-s",
        help="Override a config value: key.path=value (value parsed as YAML). Repeatable.",
        metavar="KEY=VALUE",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", metavar="", help="Print one JSON object on stdout; everything human goes to stderr."),
]
OutputRootOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", metavar="DIR", help="Root folder for run folders. (default: runs/)"),
]
NameOpt = Annotated[Optional[str], typer.Option("--name", "-n", metavar="NAME", help="Run name. (default: the config's name)")]
EpochsOpt = Annotated[
    Optional[int],
    typer.Option("--epochs", "-e", min=1, metavar="N", help="Number of epochs (shorthand for --set train.epochs=N)."),
]
ResumeOpt = Annotated[
    Optional[Path],
    typer.Option("--resume", metavar="RUN", help="Continue an interrupted run folder from its last checkpoint."),
]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", metavar="CONFIG", help="The YAML config (the same as giving it as the argument)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress output (errors still go to stderr).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, metavar="N", help="Batch size.")]
UnsafeOpt = Annotated[
    bool,
    typer.Option(
        "--unsafe",
        metavar="",
        help="Trust the run folder / model file completely: import the modules it names and run code it holds "
        "(Lambda layers). Only for files you trust.",
    ),
]
TrustModuleOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--trust-module",
        metavar="MODULE",
        help="Let a run folder / model file use classes from this installed module (and its submodules). "
        "Repeatable; also the environment variable DLCLI_TRUSTED_MODULES, comma-separated.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn dlcli's own errors into one line on stderr and their exit code.

    A user's mistake never shows a traceback; a bug (any other exception)
    still does. Ctrl-C outside training exits 130 quietly.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DlcliError as exc:
            print_error(exc)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def print_error(exc: BaseException) -> None:
    """Print `error: <message>` as one line on stderr."""
    from rich.markup import escape

    msg = " ".join(str(exc).split("\n"))
    err_console.print(f"[bold red]error:[/] {escape(msg)}", markup=True, highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (one line)."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def is_terminal() -> bool:
    """True when stderr is an interactive terminal (bars and colour allowed)."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def run_options(output: Optional[Path], quiet: bool, unsafe: bool, trust_module: Optional[list[str]]) -> dict[str, Any]:
    """The keyword arguments `train` and `finetune` hand their api function:
    the runs root, how to show progress, and what a run folder may use."""
    return {
        "output": output or Path("runs"),
        "progress": "none" if quiet else ("progress" if is_terminal() else "lines"),
        "console": err_console,
        "unsafe": unsafe,
        "trust_modules": trust_module or (),
    }


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
