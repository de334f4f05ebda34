"""`dlcli train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcli.cli.common import ConfigOpt, EpochsOpt, JsonOpt, NameOpt, OutputRootOpt, QuietOpt, ResumeOpt, SetOpt
from dlcli.cli.common import TrustModuleOpt, UnsafeOpt, err_console, handle_errors, print_json, run_options

ConfigArg = Annotated[
    Optional[Path],
    typer.Argument(help="The YAML config (or --config; optional with --resume).", metavar="CONFIG", show_default=False),
]
DistributeOpt = Annotated[
    Optional[str],
    typer.Option("--distribute", metavar="STRATEGY", help="tf.distribute strategy: none | auto | mirrored | multi_worker."),
]


@handle_errors
def train(
    config: ConfigArg = None, config_opt: ConfigOpt = None, set_: SetOpt = None,
    # The options of every run (run_options), as in finetune.
    output: OutputRootOpt = None, name: NameOpt = None, epochs: EpochsOpt = None, resume: ResumeOpt = None,
    distribute: DistributeOpt = None,
    quiet: QuietOpt = False, unsafe: UnsafeOpt = False, trust_module: TrustModuleOpt = None, json_: JsonOpt = False,
) -> None:
    """Train a model from a YAML config and write a run folder.

    Example: dlcli train configs/cnn_digits.yaml --epochs 5
    """
    from dlcli import api
    from dlcli.errors import ConfigError

    if config is not None and config_opt is not None and config != config_opt:
        raise ConfigError(f"two configs given: {config} and --config {config_opt}", hint="give one")
    result = api.train(config or config_opt, set_ or [], name=name, epochs=epochs, resume=resume, distribute=distribute,
                       **run_options(output, quiet, unsafe, trust_module))
    m = result.metrics
    if json_:
        print_json(m)
        return
    test = m.get("test") or {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
    err_console.print(
        f"[green]done[/] {m['epochs_completed']} epoch(s) in {m['timings']['total_s']:.1f}s"
        + (f"; test {shown}" if shown else "")
    )
    from dlcli.training.record import describe_model

    err_console.print(describe_model(m), markup=False)
    err_console.print(f"run folder: [bold]{result.run_dir}[/]")
