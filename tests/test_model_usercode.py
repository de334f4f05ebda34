"""The user's own loss, metric, schedule and initializer by dotted path, a
registered class in Keras's serialized form, a CosineDecay warmup whose
lengths come from the data, and no accuracy for a regression loss."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

USERCODE = Path(__file__).resolve().parent / "usercode"

CONFIG = """
data: {source: diabetes, batch_size: 32, limit: 160}
model:
  layers:
    - Dense: {units: 8, activation: relu, kernel_initializer: dlcli_test_userbits.HalfInit}
    - Dense: {units: 1}
compile:
  loss: {class_name: dlcli_test_userbits.ScaledMSE, config: {factor: 2.0}}
  metrics: [dlcli_test_userbits.max_error, mse]
  optimizer:
    class_name: adam
    config:
      learning_rate:
        class_name: CosineDecay
        config: {initial_learning_rate: 0.0001, warmup_target: 0.01, warmup_steps: steps_per_epoch,
                 decay_steps: total_steps - steps_per_epoch}
train: {epochs: 2}
"""


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def user_cwd(tmp_cwd, monkeypatch):
    monkeypatch.syspath_prepend(str(USERCODE))
    return tmp_cwd


def test_user_objects_by_dotted_path_and_a_warmup_from_the_data(user_cwd, runner, app):
    (user_cwd / "c.yaml").write_text(CONFIG)
    assert runner.invoke(app, ["validate", "c.yaml"]).exit_code == 0
    result = runner.invoke(app, ["train", "c.yaml", "--output", "runs", "--json"])
    assert result.exit_code == 0, result.output
    run = user_cwd / "runs" / "c" / "1"
    rows = history(run)
    # The user's metric is logged; the loss is twice the mse (factor: 2.0).
    assert "max_error" in rows[0] and "val_max_error" in rows[0]
    assert float(rows[0]["loss"]) == pytest.approx(2 * float(rows[0]["mse"]), rel=2e-2)  # batch vs sample means
    # Warmup to 0.01 over the first epoch's steps, then decayed to 0 by the end.
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01, rel=1e-4)
    assert float(rows[1]["learning_rate"]) == pytest.approx(0.0, abs=1e-7)
    metrics = json.loads(result.stdout)
    assert "status" not in json.loads((run / "metrics.json").read_text()) and metrics["epochs_completed"] == 2


def test_registered_name_in_keras_serialized_form_and_a_users_schedule(user_cwd, runner, app):
    text = CONFIG.replace("{class_name: dlcli_test_userbits.ScaledMSE, config: {factor: 2.0}}",
                          "{module: dlcli_test_userbits, class_name: ScaledMSE, registered_name: 'dlcli_test>ScaledMSE', config: {factor: 3.0}}")
    start = text.index("        class_name: CosineDecay")
    text = text[:start] + "        {class_name: dlcli_test_userbits.Warmup, config: {peak: 0.01, warmup_steps: steps_per_epoch * 2}}\n" + \
        text[text.index("train:"):]
    (user_cwd / "c.yaml").write_text(text)
    result = runner.invoke(app, ["train", "c.yaml", "--output", "runs"])
    assert result.exit_code == 0, result.output
    rows = history(user_cwd / "runs" / "c" / "1")
    assert float(rows[0]["loss"]) == pytest.approx(3 * float(rows[0]["mse"]), rel=2e-2)
    # 160 samples in batches of 32: 5 steps an epoch, warmup over 10.
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01 * 6 / 10, rel=1e-4)
    assert float(rows[1]["learning_rate"]) == pytest.approx(0.01, rel=1e-4)


def test_a_function_given_arguments_is_a_located_error(user_cwd, runner, app):
    text = CONFIG.replace("metrics: [dlcli_test_userbits.max_error, mse]",
                          "metrics: [{class_name: dlcli_test_userbits.max_error, config: {axis: 1}}]")
    (user_cwd / "c.yaml").write_text(text)
    result = runner.invoke(app, ["train", "c.yaml", "--output", "runs"])
    assert result.exit_code == 2
    assert "compile.metrics.0: 'dlcli_test_userbits.max_error' is a function and takes no config" in result.stderr
    assert not (user_cwd / "runs").exists()


def test_no_accuracy_for_a_regression_loss_left_without_metrics(tmp_cwd, runner, app):
    (tmp_cwd / "r.yaml").write_text("data: {source: diabetes, limit: 64}\nmodel:\n  layers: [{Dense: {units: 1}}]\n"
                                    "compile: {loss: mse}\ntrain: {epochs: 1}\n")
    (tmp_cwd / "k.yaml").write_text("data: {source: iris}\nmodel:\n  layers: [{Dense: {units: 3, activation: softmax}}]\n"
                                    "train: {epochs: 1}\n")
    for name in ("r", "k"):
        assert runner.invoke(app, ["train", f"{name}.yaml", "--output", "runs"]).exit_code == 0
    assert "accuracy" not in history(tmp_cwd / "runs" / "r" / "1")[0]
    assert "accuracy" in history(tmp_cwd / "runs" / "k" / "1")[0]
