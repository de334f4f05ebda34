"""Shared pytest fixtures for dlcli's tests."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# TensorFlow's C++ start-up chatter only clutters test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The parsed-CSV cache of the tests' files: a folder of this session's, not ~/.cache.
if "DLCLI_TABLE_CACHE" not in os.environ:
    os.environ["DLCLI_TABLE_CACHE"] = tempfile.mkdtemp(prefix="dlcli-tests-table-cache-")
    atexit.register(shutil.rmtree, os.environ["DLCLI_TABLE_CACHE"], True)

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


def install_fake_mnist(tmp_path, monkeypatch):
    """A small random mnist.npz in a temporary KERAS_HOME, and Keras's MNIST
    loader pointed at it (a stand-in file cannot match Keras's checksum).

    Returns:
        The path of the stand-in mnist.npz.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        y_train=np.arange(300) % 10,
        x_test=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        y_test=np.arange(60) % 10,
    )

    def load_data(path_in_cache="mnist.npz"):
        with np.load(path) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])

    monkeypatch.setenv("KERAS_HOME", str(path.parent.parent))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", load_data)
    return path
