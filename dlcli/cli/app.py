"""The Typer application object; dlcli.cli registers every command on it."""

from __future__ import annotations

import shutil
from typing import Annotated, Optional

import typer

def _placeholders_in_one_style() -> None:
    """Help names a value by one upper-case word (CONFIG, N, DIR: the
    metavar every dlcli parameter sets) and shows nothing for a flag;
    Typer's own lower-case type labels (`<path>`, `<bool>`) would be a
    second style beside it, so they are dropped."""
    from typer.core import TyperArgument, TyperOption

    argument_type, option_type = TyperArgument.display_type_rich, TyperOption.display_type_rich

    def argument(self: TyperArgument, ctx: typer.Context) -> Optional[str]:
        return None if self.metavar else argument_type(self, ctx)

    def option(self: TyperOption, ctx: typer.Context) -> Optional[str]:
        return None if self.is_flag else option_type(self, ctx)

    TyperArgument.display_type_rich = argument  # type: ignore[method-assign]
    TyperOption.display_type_rich = option  # type: ignore[method-assign]


_placeholders_in_one_style()

app = typer.Typer(
    name="dlcli",
    help="Config-driven deep learning: train, evaluate, predict, fine-tune and export Keras models from YAML configs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich" if shutil.get_terminal_size().columns >= 80 else None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def versions() -> dict[str, str]:
    """dlcli's, Keras's and TensorFlow's versions, read from the installed
    packages' metadata (TensorFlow is not imported)."""
    import importlib.metadata as md

    from dlcli import __version__

    out = {"dlcli": __version__}
    for dist in ("keras", "tensorflow"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _show_version(value: bool) -> None:
    if value:
        typer.echo(" ".join(f"{k} {v}" for k, v in versions().items()))
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_show_version, is_eager=True, metavar="",
                     help="Print the versions of dlcli, Keras and TensorFlow and exit."),
    ] = False,
) -> None:
    """Config-driven deep learning: train, evaluate, predict, fine-tune and export Keras models from YAML configs."""
