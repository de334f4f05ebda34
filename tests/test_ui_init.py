"""`dlcli init DATA`: the starter config it writes trains as written, on
a real CSV (palmerpenguins), an npz and an image folder; bad input is one
line and exit 2 with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app

runner = CliRunner()


@pytest.fixture()
def penguins(tmp_path, monkeypatch):
    pp = pytest.importorskip("palmerpenguins")
    src = Path(pp.__file__).parent / "data" / "penguins.csv"
    shutil.copy(src, tmp_path / "penguins.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "penguins.csv"


def test_csv_config_trains_as_written(penguins):
    from dlcli import api

    res = runner.invoke(app, ["init", "penguins.csv", "--target", "species"])
    assert res.exit_code == 0, res.output
    text = Path("penguins.yaml").read_text()
    assert "units: 3, activation: softmax" in text and "sparse_categorical_crossentropy" in text
    assert "# features (every other column): island: category, bill_length_mm: number" in text
    result = api.train("penguins.yaml", epochs=25, progress="none")
    assert result.metrics["test"]["accuracy"] >= 0.9


def test_npz_config_trains_as_written(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    from dlcli import api

    d = load_digits()
    np.savez(tmp_path / "digits.npz", x=d.images.astype("float32"), y=d.target)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "digits.npz", "-o", "d.yaml"]).exit_code == 0
    result = api.train("d.yaml", epochs=3, progress="none")
    assert result.metrics["task"] == "classification" and result.metrics["test"]["accuracy"] >= 0.8


@pytest.mark.slow
def test_image_folder_config_trains_as_written(tmp_path, monkeypatch):
    from dlcli import api

    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["demo-data", "pets", "--per-class", "8", "--size", "32"]).exit_code == 0
    res = runner.invoke(app, ["init", "pets", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["config"] == "pets.yaml"
    text = Path("pets.yaml").read_text()
    assert "source: image_dir" in text and "units: 1, activation: sigmoid" in text and "binary_crossentropy" in text
    result = api.train("pets.yaml", epochs=1, progress="none")
    assert (result.run_dir / "model.keras").is_file() and result.metrics["data"]["num_train"] > 0


@pytest.mark.parametrize("args, words", [
    (["init", "penguins.csv"], "--target"),
    (["init", "penguins.csv", "--target", "specie"], "did you mean 'species'"),
    (["init", "notes.txt"], "cannot tell what kind"),
    (["init", "missing.csv", "--target", "x"], "no such file"),
])
def test_bad_input_is_one_line_and_nothing_written(penguins, args, words):
    Path("notes.txt").write_text("hello")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not list(Path(".").glob("*.yaml"))


def test_an_existing_config_is_not_overwritten(penguins):
    Path("penguins.yaml").write_text("mine")
    res = runner.invoke(app, ["init", "penguins.csv", "--target", "species"])
    assert res.exit_code == 2 and "--force" in res.stderr
    assert Path("penguins.yaml").read_text() == "mine"
    assert runner.invoke(app, ["init", "penguins.csv", "--target", "species", "--force"]).exit_code == 0
    assert Path("penguins.yaml").read_text().startswith("# Starter config")
