"""Help in one style at any width: an upper-case word for a value
(CONFIG, N, DIR), nothing for a flag, defaults as `(default: ...)`, and at
60 columns every option name and word whole (plain layout, help text
wrapped under a narrow terminal instead of cut off by Rich's table)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The layout is chosen from the terminal width when dlcli.cli is imported,
# so each width gets its own process, which prints every command's help.
SCRIPT = """
import json, sys
from typer.testing import CliRunner
from dlcli.cli import COMMANDS, app
width = int(sys.argv[1])
out = {}
for name in ["", *(n for n, _ in COMMANDS)]:
    res = CliRunner().invoke(app, [name, "--help"] if name else ["--help"], terminal_width=width)
    out[name] = {"code": res.exit_code, "text": res.output}
print(json.dumps(out))
"""


def _helps(width: int) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(width)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(width)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _long_options(name: str) -> list[str]:
    import typer

    from dlcli.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[name] if name else group
    return [o for p in cmd.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")]


@pytest.mark.parametrize("width", [60, 100])
def test_help_has_one_placeholder_and_one_default_style(width):
    for name, res in _helps(width).items():
        text = res["text"]
        assert res["code"] == 0, (name, text)
        assert not re.search(r"<[a-z]+>", text), (name, text)  # Typer's own <path> / <bool> labels
        assert "[default:" not in text, (name, text)  # defaults are written "(default: ...)"
        assert all(len(line) <= width for line in text.splitlines()), (name, text)
        if width == 60:
            assert "…" not in text, (name, text)
            options = _long_options(name)
            assert options or name == "", name
            for option in options:
                assert option in text, (name, option)
