"""dlcli's command line: Typer commands only.

Each command parses options, calls one function of `dlcli.api` and prints
the result. Nothing here imports TensorFlow at module level, so
`dlcli --help`, `dlcli validate` and `dlcli schema` stay fast.
"""

from __future__ import annotations

from dlcli.cli.app import app
import sys

from dlcli.cli.common import print_error, quiet_tensorflow

# Each module registers its commands on `app` when imported.
from dlcli.cli import cmd_config  # noqa: F401,E402  validate, schema, summary
from dlcli.cli import cmd_train  # noqa: F401,E402  train
from dlcli.cli import cmd_evaluate  # noqa: F401,E402  evaluate, predict
from dlcli.cli import cmd_finetune  # noqa: F401,E402  finetune, backbones, demo-data
from dlcli.cli import cmd_export  # noqa: F401,E402  export


def main() -> None:
    """Console-script entry point."""
    from dlcli.cli.stderr_filter import filtered_native_stderr

    quiet_tensorflow()
    with filtered_native_stderr():
        code = _run_app()
    sys.exit(code)


def _run_app() -> int:
    """Run the app; a usage mistake is one `error:` line and exit 2."""
    if len(sys.argv) <= 1:
        app()  # prints the help (no_args_is_help) and exits
    try:
        rv = app(standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - only usage errors are handled here
        # Typer's usage errors (bad option value, unknown command, missing
        # argument) carry format_message() and exit_code; anything else is a
        # bug and keeps its traceback.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "dlcli"
        print_error(f"{exc.format_message()} (see '{cmd} --help')")
        return int(exc.exit_code)
    return rv if isinstance(rv, int) else 0


__all__ = ["app", "main"]
