"""Shared pytest fixtures for dlcli's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# TensorFlow's C++ start-up chatter only clutters test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def runner():
    """A Typer CliRunner whose result has separate `.stdout` and `.stderr`."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def app():
    """dlcli's Typer app with every command registered."""
    from dlcli.cli import app as dlcli_app

    return dlcli_app


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch) -> Path:
    """Run the test inside an empty temporary directory (returned)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_file(tmp_path):
    """Write a text file under tmp_path: `write_file("a.yaml", text) -> Path`."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
