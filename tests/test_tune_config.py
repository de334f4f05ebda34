"""`tune:` section checks, through the real CLI (no TensorFlow, no training)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlcli.config.tune_space import override

REPO = Path(__file__).resolve().parent.parent
CNN = REPO / "configs" / "cnn_digits.yaml"

GOOD_SPACE = """\
tune:
  trials: 2
  space:
    compile.optimizer.config.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.layers.6.Dense.units: {type: int, low: 16, high: 64, step: 16}
"""


def _config(write_file, space_line: str, extra: str = "") -> Path:
    text = f"extends: {CNN}\n{extra}tune:\n  space:\n    {space_line}\n"
    return write_file("study.yaml", text)


@pytest.mark.parametrize(
    "space_line, line, expected",
    [
        # a key path that does not exist, with a did-you-mean
        ("compile.optimiser.class_name: {type: categorical, choices: [adam, sgd]}", 4, "did you mean 'compile.optimizer'?"),
        ("model.layers.6.Dense.unitz: {type: int, low: 8, high: 32}", 4, "did you mean 'units'?"),
        ("model.layers.12.Dense.units: {type: int, low: 8, high: 32}", 4, "index 12 is out of range"),
        # values the schema or Keras refuses
        ("train.epochs: {type: int, low: 0, high: 3}", 4, "train.epochs: expected a number >= 1"),
        ("compile.optimizer.class_name: {type: categorical, choices: [adam, sgdd]}", 4, "did you mean 'sgd'?"),
        # distributions
        ("train.epochs: {type: int, low: 5, high: 3}", 4, "low (5) must be below high (3)"),
        ("compile.optimizer.config.learning_rate: {type: float, low: 0.0, high: 1.0, log: true}", 4, "a log scale needs low > 0"),
        ("train.epochs: {type: integer, low: 1, high: 3}", 4, "expected type one of 'float', 'int', 'categorical' (not 'integer')"),
    ],
)
def test_bad_space_is_one_located_line(runner, app, write_file, tmp_path, space_line, line, expected):
    cfg = _config(write_file, space_line)
    for command in (["validate", str(cfg)], ["tune", str(cfg), "-o", str(tmp_path / "runs")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"error: {cfg}:{line}: tune.space."), err
        assert expected in err
    assert not (tmp_path / "runs").exists()


def test_unknown_tune_key_and_missing_section(runner, app, write_file, tmp_path):
    cfg = write_file("a.yaml", f"extends: {CNN}\n" + GOOD_SPACE + "  metrc: val_loss\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:7: tune.metrc: unknown key 'metrc' (did you mean 'metric'?)" in result.stderr

    result = runner.invoke(app, ["tune", str(CNN), "-o", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "no tune: section" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_grid_needs_finite_floats(runner, app, write_file):
    cfg = write_file("g.yaml", f"extends: {CNN}\n" + GOOD_SPACE + "  sampler: grid\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert "grid sampler needs a finite set of values" in result.stderr


def test_shipped_example_validates_without_tensorflow_or_optuna():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlcli", "validate", str(REPO / "configs" / "tune_digits.yaml")],
        capture_output=True, text=True, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "tensorflow" not in imported and "optuna" not in imported


def test_missing_optuna_is_exit_2_naming_the_extra(tmp_path):
    # A stand-in `optuna` that cannot be imported, first on the path.
    (tmp_path / "optuna.py").write_text("raise ImportError('No module named optuna')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-m", "dlcli", "tune", str(REPO / "configs" / "tune_digits.yaml"), "-o", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: dlcli tune needs Optuna, which is not installed (pip install 'dlcli[tune]')"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", [1e-05, 0.5, 3, "adam", None, True, [{"Dense": {"units": 8}}, "Flatten"]])
def test_override_reads_back_as_the_same_value(value):
    key, _, text = override("a.b", value).partition("=")
    assert key == "a.b"
    assert yaml.safe_load(text) == value


def test_table_headers_are_short_and_distinct():
    from dlcli.cli.cmd_tune import short_names

    keys = ["compile.optimizer.config.learning_rate", "model.layers.1.Dense.units", "model.layers.3.Dense.units"]
    assert short_names(keys) == ["learning_rate", "1.Dense.units", "3.Dense.units"]


@pytest.mark.parametrize("url", ["nosuch://x", "postgresql://u@localhost:1/db"])
def test_bad_storage_is_exit_2_and_writes_nothing(runner, app, tmp_path, url):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["tune", str(REPO / "configs" / "tune_digits.yaml"), "-o", str(out), "--storage", url])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --storage: cannot open the study storage {url}")
    assert not out.exists()


def test_study_name_never_leaves_output(runner, app, tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["tune", str(REPO / "configs" / "tune_digits.yaml"), "-o", str(out), "--name", "../evil"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --name: run name '../evil' is a path")
    assert not out.exists() and not (tmp_path / "evil").exists()


def test_a_whole_layer_list_can_be_a_choice(runner, app, write_file):
    small = "[Flatten, {Dense: {units: 10, activation: softmax}}]"
    wide = "[Flatten, {Dense: {units: 64, activation: relu}}, {Dense: {units: 10, activation: softmax}}]"
    cfg = _config(write_file, f"model.layers: {{type: categorical, choices: [{small}, {wide}]}}")
    assert runner.invoke(app, ["validate", str(cfg)]).exit_code == 0

    from dlcli.config import load_config
    from dlcli.tune.space import decode, optuna_choices

    param = load_config(cfg).tune.space["model.layers"]
    labels = optuna_choices(param)
    assert all(isinstance(label, str) for label in labels)  # Optuna stores text
    assert decode(param, labels[1])[1] == {"Dense": {"units": 64, "activation": "relu"}}

    bad = _config(write_file, f"model.layers: {{type: categorical, choices: [{small}, [Flaten]]}}")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "tune.space.model.layers: choice 1 ([Flaten])" in result.stderr and "Flatten" in result.stderr
