"""dlcli's command line: Typer commands only.

Each command parses options, calls one function of `dlcli.api` and prints
the result. Nothing here imports TensorFlow at module level, so
`dlcli --help`, `dlcli validate` and `dlcli schema` stay fast.
"""

from __future__ import annotations

from dlcli.cli.app import app
from dlcli.cli.common import quiet_tensorflow

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
        app()


__all__ = ["app", "main"]
