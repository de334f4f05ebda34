"""TensorBoard events in each run's own folder, a clean exit 2 when the
package is missing, and MLflow logging to a local file store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IRIS = """\
name: iris
data: {source: iris}
model:
  layers:
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy}
train: {epochs: 2}
"""

# Run dlcli with the tensorboard package hidden, as on an install without
# the extra (TensorFlow 2.21 no longer brings it).
NO_TENSORBOARD = (
    "import sys, importlib.abc\n"
    "class Hide(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'tensorboard' or name.startswith('tensorboard.'):\n"
    "            raise ModuleNotFoundError(name)\n"
    "sys.meta_path.insert(0, Hide())\n"
    "sys.argv = ['dlcli'] + sys.argv[1:]\n"
    "from dlcli.cli import main\n"
    "main()\n"
)


def _events(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("events.out.tfevents.*")]


def test_each_run_writes_its_own_events_and_user_callbacks_follow(tmp_path):
    pytest.importorskip("tensorboard")
    from dlcli import api

    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    os.chdir(tmp_path)
    a = api.train("iris.yaml", output="runs", progress="none").run_dir
    b = api.train("iris.yaml", ["train.callbacks=[TensorBoard: {histogram_freq: 1}]"], output="runs", progress="none").run_dir
    off = api.train("iris.yaml", ["train.tensorboard=false"], output="runs", progress="none").run_dir
    assert _events(a / "tensorboard" / "train") and _events(a / "tensorboard" / "validation")
    assert _events(b / "tensorboard" / "train")  # the user's callback, in the run folder
    assert not (tmp_path / "logs").exists()  # never one shared ./logs
    assert not (off / "tensorboard").exists()


@pytest.mark.slow
@pytest.mark.parametrize("override", ["train.callbacks=[TensorBoard]", "train.tensorboard=true"])
def test_missing_tensorboard_is_exit_2_naming_the_extra(tmp_path, override):
    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", NO_TENSORBOARD, "train", "iris.yaml", "--set", override, "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dlcli[tensorboard]'" in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_without_tensorboard_a_run_still_trains(tmp_path):
    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", NO_TENSORBOARD, "train", "iris.yaml", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "iris" / "1" / "model.keras").is_file()
    assert not (tmp_path / "runs" / "iris" / "1" / "tensorboard").exists()


def test_mlflow_logs_params_metrics_and_model_to_a_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores behind this flag
    from dlcli import api

    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    store = (tmp_path / "mlruns").as_uri()
    result = api.train(tmp_path / "iris.yaml", [f"train.mlflow={{tracking_uri: '{store}', experiment: flowers}}",
                                                "train.tensorboard=false"],
                       output=tmp_path / "runs", progress="none")
    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("flowers")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "iris/1"
    assert run.data.params["compile.loss"] == "categorical_crossentropy"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert steps == [1, 2]
    assert run.data.metrics["val_loss"] == pytest.approx(result.history["val_loss"][-1])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.keras", "metrics.json", "history.csv", "plots"} <= artifacts


def test_mlflow_store_that_cannot_be_used_is_exit_2_nothing_written(tmp_path):
    pytest.importorskip("mlflow")
    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    (tmp_path / "blocker").write_text("a file, not a folder", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ALLOW_FILE_STORE": "true"}
    uri = (tmp_path / "blocker" / "mlruns").as_uri()
    proc = subprocess.run([sys.executable, "-m", "dlcli", "train", "iris.yaml", "-q", "--set",
                           f"train.mlflow={{tracking_uri: '{uri}'}}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.mlflow" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
