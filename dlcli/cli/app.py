"""The Typer application object every command module registers on."""

import typer

app = typer.Typer(
    name="dlcli",
    help="Config-driven deep learning: train, evaluate, predict, fine-tune and export tf.keras models from YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
