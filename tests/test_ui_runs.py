"""`dlcli runs`: listing with status, --json, side-by-side comparison and
the comparison PNG; history.png marks the model's epoch."""

from __future__ import annotations

import fcntl
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from dlcli.cli import app

IRIS = """\
name: iris
data: {source: iris}
model:
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy, optimizer: {class_name: adam, config: {learning_rate: 0.01}}}
train: {epochs: 3}
"""
runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from dlcli import api

    root = tmp_path_factory.mktemp("runs")
    (root / "iris.yaml").write_text(IRIS, encoding="utf-8")
    a = api.train(root / "iris.yaml", output=root / "runs", progress="none").run_dir
    b = api.train(root / "iris.yaml", ["compile.optimizer.config.learning_rate=0.05", "train.monitor=val_accuracy"],
                  output=root / "runs", progress="none").run_dir
    return root, a, b


def test_list_shows_every_status(two_runs, tmp_path):
    root, a, b = two_runs
    runs = tmp_path / "runs" / "iris"
    shutil.copytree(a.parent, runs)
    (runs / "1" / "metrics.json").unlink()  # a model but no metrics: failed (diverged runs keep their model)
    shutil.copytree(runs / "2", runs / "3")
    (runs / "3" / "metrics.json").unlink()
    (runs / "3" / "model.keras").unlink()  # a checkpoint only: interrupted
    fd = os.open(runs / "2", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process trains it
    try:
        res = runner.invoke(app, ["runs", str(tmp_path / "runs"), "--json"])
    finally:
        os.close(fd)
    assert res.exit_code == 0, res.output
    status = {r["run"].rsplit("/", 1)[1]: r["status"] for r in json.loads(res.stdout)["runs"]}
    assert status == {"1": "failed", "2": "running", "3": "interrupted"}
    res = runner.invoke(app, ["runs", str(runs)])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "status", "epochs"]
    assert any("finished" in ln and "3/3" in ln for ln in lines) and "interrupted" in res.stdout


def test_compare_side_by_side_with_curves(two_runs, tmp_path):
    root, a, b = two_runs
    png = tmp_path / "cmp.png"
    res = runner.invoke(app, ["runs", str(a), str(b), "--json", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["config_differences"] == {
        "compile.optimizer.config.learning_rate": [0.01, 0.05],
        "train.monitor": [None, "val_accuracy"],
    }
    best_b = out["runs"][1]["best"]
    assert best_b["monitor"] == "val_accuracy" and out["runs"][1]["model_epoch"] == best_b["epoch"]
    from PIL import Image

    img = Image.open(png)
    assert img.size[0] > 600 and len(set(img.convert("L").getdata())) > 20  # curves were drawn
    res = runner.invoke(app, ["runs", str(a), str(b)])
    assert "learning_rate" in res.stdout and "test accuracy" in res.stdout


def test_history_png_is_written_with_the_model_epoch(two_runs):
    _, a, _ = two_runs
    assert (a / "plots" / "history.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, words", [
    (["runs", "nowhere"], "no such folder"),
    (["runs", "{root}", "--plot", "{root}/x.png"], "--plot"),
])
def test_bad_input_is_one_line_exit_2(two_runs, args, words):
    root = two_runs[0]
    res = runner.invoke(app, [a.format(root=root) for a in args])
    assert res.exit_code == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (root / "x.png").exists()
