"""The README's tour names only what exists: registered commands, their
options, the configs it trains. (The whole tour was run line by line in a
fresh copy of the repository on 2026-12-02; this keeps it from drifting
without running every training again.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

from dlcli.cli import app

ROOT = Path(__file__).resolve().parent.parent


def _tour_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## A short tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [re.split(r"\s+#", line, maxsplit=1)[0].strip() for line in block.splitlines() if line.strip()]


def _dlcli_calls(line: str) -> list[list[str]]:
    calls = []
    for part in re.split(r"&&|\|", line):
        words = shlex.split(part.split(">", 1)[0])
        if words and words[0] == "dlcli":
            calls.append(words[1:])
    return calls


def test_every_tour_command_option_and_config_exists():
    group = typer.main.get_command(app)
    calls = [call for line in _tour_lines() for call in _dlcli_calls(line)]
    assert len(calls) >= 15
    for call in calls:
        if call[0].startswith("-"):  # dlcli --version, --install-completion
            assert call[0] in {o for p in group.params for o in p.opts}, call
            continue
        cmd = group.commands[call[0]]
        options = {o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}
        for word in call[1:]:
            if word.startswith("-"):
                assert word.split("=", 1)[0] in options, (call, word)
            elif word.startswith("configs/"):
                assert (ROOT / word).is_file(), word
