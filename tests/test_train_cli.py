"""`dlcli train` end to end: the run folder contract of DESIGN.md, --json,
exit code 0, a new numbered folder per run, --output / --name / --epochs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "configs" / "mlp_iris.yaml"


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """`dlcli train configs/mlp_iris.yaml --epochs 3 --json` in an empty
    folder: (the CLI result, the run folder)."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, ["train", str(IRIS), "--epochs", "3", "--json", "--set", "data.batch_size=8"])
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    return result, cwd / "runs" / "mlp_iris" / "1"


def test_json_is_one_object_on_stdout(iris_run):
    result, run_dir = iris_run
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["run_dir"] == "runs/mlp_iris/1" and out["epochs_completed"] == 3
    assert set(out["test"]) == {"loss", "accuracy"}
    # Progress and the summary went to stderr.
    assert "epoch 3/3" in result.stderr


def test_run_folder_holds_what_design_promises(iris_run):
    _, run_dir = iris_run
    assert run_dir.is_dir()
    names = {p.name for p in run_dir.iterdir()}
    expected = {"config.yaml", "model.keras", "checkpoints", "history.csv", "metrics.json", "plots", "data_spec.json"}
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        expected.add("tensorboard")  # events into the run folder by default when installed
    assert names == expected
    assert (run_dir / "plots" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "state.json" in ck and "epoch-0003.weights.h5" in ck

    rows = _history(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s"} <= set(rows[0])
    assert all(np.isfinite(float(r["loss"])) for r in rows)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == ["setosa", "versicolor", "virginica"]
    assert metrics["epochs_completed"] == 3 and metrics["stopped_early"] is False
    assert metrics["final"]["loss"] == pytest.approx(float(rows[-1]["loss"]))
    assert set(metrics["versions"]) >= {"dlcli", "tensorflow", "keras", "numpy", "python"}
    assert metrics["timings"]["total_s"] > metrics["timings"]["train_s"] > 0
    assert metrics["timings"]["checkpoint_s_per_epoch"] >= 0
    assert metrics["best"]["monitor"] == "val_loss"


def test_config_yaml_is_the_resolved_config(iris_run):
    from dlcli.config import load_config

    _, run_dir = iris_run
    saved = load_config(run_dir / "config.yaml").to_dict()
    given = load_config(IRIS, ["train.epochs=3", "data.batch_size=8"]).to_dict()
    assert saved == given
    text = (run_dir / "config.yaml").read_text()
    # Defaults the file never wrote are spelled out.
    assert "shuffle_buffer" in text and "checkpoint_every" in text


def _same_weights(model, weights_file: Path) -> None:
    import keras

    twin = keras.models.clone_model(model)
    twin.compile(optimizer="adam", loss="categorical_crossentropy")
    twin.optimizer.build(twin.trainable_variables)
    twin.load_weights(weights_file)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_is_the_last_epoch_and_reproduces_the_test_metrics(iris_run):
    import keras

    from dlcli.config import load_config
    from dlcli.data import load_data

    _, run_dir = iris_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    bundle = load_data(load_config(run_dir / "config.yaml"))
    got = model.evaluate(bundle.test, verbose=0, return_dict=True)
    assert got["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert got["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    # No train.monitor: the final model; val_loss's best is still reported.
    assert metrics["model_epoch"] == 3
    _same_weights(model, run_dir / "checkpoints" / "epoch-0003.weights.h5")
    rows = _history(run_dir)
    assert metrics["best"]["epoch"] == min(range(3), key=lambda i: float(rows[i]["val_loss"])) + 1


def test_a_named_monitor_makes_the_model_its_best_epoch(runner, app, tmp_path):
    import keras

    result = runner.invoke(
        app, ["train", str(IRIS), "--epochs", "8", "--json", "-o", str(tmp_path), "--set", "train.monitor=val_loss",
              # a learning rate high enough for val_loss to go up and down
              "--set", "compile.optimizer={class_name: adam, config: {learning_rate: 0.2}}"],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    rows = _history(run_dir)
    losses = [float(r["val_loss"]) for r in rows]
    best = losses.index(min(losses)) + 1
    assert best < 8  # otherwise "best" and "last" cannot be told apart
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert state["best_epoch"] == metrics["best"]["epoch"] == metrics["model_epoch"] == best
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    _same_weights(model, run_dir / "checkpoints" / state["best_file"])


@pytest.mark.slow
def test_each_run_gets_a_new_numbered_folder(runner, app, tmp_path):
    args = ["train", str(IRIS), "--epochs", "1", "--quiet", "--output", str(tmp_path / "out")]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert sorted(p.name for p in (tmp_path / "out" / "mlp_iris").iterdir()) == ["1", "2"]
    # --quiet: no progress, just the summary; nothing on stdout without --json.
    assert "epoch 1/1" not in first.stderr and "run folder" in first.stderr
    assert first.stdout == ""


def test_name_output_and_epochs_options(runner, app, tmp_path):
    import yaml

    result = runner.invoke(
        app, ["train", str(IRIS), "--name", "flowers", "--output", str(tmp_path / "elsewhere"), "--epochs", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "elsewhere" / "flowers" / "1"
    assert json.loads(result.stdout)["run_dir"] == str(run_dir)
    assert [r["epoch"] for r in _history(run_dir)] == ["1", "2"]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["name"] == "flowers"
    assert not (tmp_path / "runs").exists()


def test_early_stopping_is_recorded(runner, app, tmp_path):
    result = runner.invoke(
        app,
        ["train", str(IRIS), "--epochs", "30", "--output", str(tmp_path), "--json", "--set",
         "train.callbacks=[EarlyStopping: {monitor: loss, patience: 0, min_delta: 10}]"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # No epoch improves the loss by 10: it stops after the second.
    assert out["epochs_completed"] == 2 and out["stopped_early"] is True
    state = json.loads((Path(out["run_dir"]) / "checkpoints" / "state.json").read_text())
    assert state["finished"] and state["epoch"] == 2
