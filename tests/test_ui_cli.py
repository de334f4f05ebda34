"""CLI conventions: --version, completion, one meaning per short flag,
help readable at 60 columns, result tables on stdout and the rest on
stderr, `train --config`, every command registered in one table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from dlcli.cli import COMMANDS, app

ROOT = Path(__file__).resolve().parent.parent
IRIS = "name: iris\ndata: {source: iris}\nmodel:\n  layers:\n    - Dense: {units: 3, activation: softmax}\ncompile: {loss: categorical_crossentropy}\ntrain: {epochs: 1}\n"


def _dlcli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, env=full_env, capture_output=True, text=True)


def test_version_names_dlcli_keras_and_tensorflow_without_importing_it():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlcli", "--version"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0
    import importlib.metadata as md

    from dlcli import __version__

    assert proc.stdout.strip() == f"dlcli {__version__} keras {md.version('keras')} tensorflow {md.version('tensorflow')}"
    assert "| tensorflow" not in proc.stderr  # importtime lines name every module imported


def test_shell_completion_completes_commands_and_options():
    env = {"PYTHONPATH": str(ROOT), "_DLCLI_COMPLETE": "complete_bash"}
    script = Path(sys.executable).with_name("dlcli")
    if not script.exists():
        pytest.skip("no dlcli console script in this environment")
    for words, cword, expected in (("dlcli tr", "1", "train"), ("dlcli export run --fo", "3", "--format")):
        proc = subprocess.run([str(script)], env={**os.environ, **env, "COMP_WORDS": words, "COMP_CWORD": cword},
                              capture_output=True, text=True)
        assert proc.stdout.split() == [expected]
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output


def _commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    return dict(group.commands)


def test_every_command_is_registered_from_the_one_table():
    assert sorted(_commands()) == sorted(name for name, _ in COMMANDS)


def test_a_short_flag_means_the_same_option_in_every_command():
    seen: dict[str, tuple[str, str]] = {}
    for name, cmd in _commands().items():
        for param in cmd.params:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if len(o) == 2 and o.startswith("-")):
                if short in seen:
                    assert seen[short][1] == longs[0], f"{short}: {seen[short]} vs {name} {longs[0]}"
                seen[short] = (name, longs[0])
    assert seen["-q"][1] == "--quiet" and seen["-b"][1] == "--batch-size" and seen["-c"][1] == "--config"


@pytest.mark.parametrize("command", [None, *(name for name, _ in COMMANDS)])
def test_help_fits_60_columns(command):
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "60"}, terminal_width=60)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert all(len(ln) <= 60 for ln in lines)
    # Option values use one placeholder style: upper-case words.
    assert "<int" not in result.output and "<str>" not in result.output


def test_train_takes_config_as_option_too(tmp_path):
    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    (tmp_path / "other.yaml").write_text(IRIS, encoding="utf-8")
    proc = _dlcli("train", "iris.yaml", "--config", "other.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "two configs" in proc.stderr
    assert not (tmp_path / "runs").exists()
    proc = _dlcli("train", "-c", "iris.yaml", "-q", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "iris" / "1" / "model.keras").is_file()
    assert proc.stdout == ""  # progress and the summary are on stderr


def test_result_tables_go_to_stdout(tmp_path):
    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    proc = _dlcli("summary", "iris.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dense" in proc.stdout and "total params: 15" in proc.stdout
    assert "dense" not in proc.stderr
