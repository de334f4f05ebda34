"""dlcli's command line: Typer commands only.

Every command is registered here, in one table, in the order `dlcli
--help` lists them. Each command module declares its options and calls
one function of `dlcli.api`. Nothing here imports TensorFlow at module
level, so `dlcli --help`, `dlcli validate` and `dlcli schema` stay fast.
"""

from __future__ import annotations

import sys

from dlcli.cli import cmd_cache, cmd_config, cmd_evaluate, cmd_export, cmd_finetune, cmd_init, cmd_runs, cmd_train, cmd_tune
from dlcli.cli.app import app
from dlcli.cli.common import print_error, quiet_tensorflow

COMMANDS = (
    ("train", cmd_train.train),
    ("evaluate", cmd_evaluate.evaluate),
    ("predict", cmd_evaluate.predict),
    ("finetune", cmd_finetune.finetune),
    ("export", cmd_export.export),
    ("runs", cmd_runs.runs),
    ("tune", cmd_tune.tune),
    ("init", cmd_init.init),
    ("validate", cmd_config.validate),
    ("summary", cmd_config.summary),
    ("schema", cmd_config.schema),
    ("backbones", cmd_finetune.backbones),
    ("demo-data", cmd_finetune.demo_data),
    ("cache", cmd_cache.cache),
)
for _name, _fn in COMMANDS:
    app.command(_name)(_fn)


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


__all__ = ["COMMANDS", "app", "main"]
