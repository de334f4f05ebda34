"""A loss that becomes NaN or infinite stops training with exit 1, names
the epoch and batch, suggests a lower learning rate, and keeps the last
good checkpoint and model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
DIABETES = str(ROOT / "configs" / "regression_diabetes.yaml")
# 160 training samples in batches of 32: 5 steps an epoch, one step per
# call so that the batch is known exactly. The learning rate is sane for
# epoch 1 and jumps a million-fold when epoch 2 starts.
FIVE_STEPS = ["--set", "data.limit=160", "--set", "compile.steps_per_execution=1"]
EXPLODES_IN_EPOCH_2 = [
    "--set",
    "compile.optimizer={class_name: SGD, config: {learning_rate: {class_name: ExponentialDecay, "
    "config: {initial_learning_rate: 0.001, decay_steps: 5, decay_rate: 1000000000, staircase: true}}}}",
]


def _error_line(result) -> str:
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def test_divergence_in_epoch_2_keeps_epoch_1(runner, app, tmp_path):
    import keras

    result = runner.invoke(
        app, ["train", DIABETES, "--epochs", "4", *FIVE_STEPS, *EXPLODES_IN_EPOCH_2, "--output", str(tmp_path)]
    )

    assert result.exit_code == 1, result.output
    line = _error_line(result)
    # Batch 1's loss is taken before its huge step: batch 2 is the first
    # non-finite one.
    assert "diverged" in line and "epoch 2, batch 2;" in line
    assert "learning rate" in line and "learning_rate" in line
    run_dir = tmp_path / "regression_diabetes" / "1"
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and not state["finished"]
    with open(run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1"] and np.isfinite(float(rows[0]["loss"]))
    assert not (run_dir / "metrics.json").exists()
    # model.keras is the epoch-1 model: loads safely, finite, the
    # checkpoint's weights.
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    twin = keras.models.clone_model(model)
    twin.compile(optimizer=keras.optimizers.SGD(), loss="mse")
    twin.optimizer.build(twin.trainable_variables)
    twin.load_weights(run_dir / "checkpoints" / state["weights_file"])
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_divergence_in_the_first_epoch_keeps_no_model(runner, app, tmp_path):
    result = runner.invoke(
        app,
        ["train", DIABETES, "--epochs", "2", *FIVE_STEPS, "--output", str(tmp_path), "--set",
         "compile.optimizer={class_name: SGD, config: {learning_rate: 1000000.0}}"],
    )
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "epoch 1, batch" in line and "no epoch had completed" in line
    run_dir = tmp_path / "regression_diabetes" / "1"
    assert not (run_dir / "model.keras").exists()
    assert not (run_dir / "history.csv").exists()


def test_inf_in_the_data_is_named_with_its_epoch(runner, app, tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 3)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    x[::6, 1] = np.inf  # in every split, whatever the shuffle
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    (tmp_path / "bad.yaml").write_text(
        f"""name: bad
data: {{source: npz, path: {tmp_path / 'bad.npz'}, batch_size: 8}}
model:
  layers:
    - Dense: {{units: 2, activation: softmax}}
compile: {{steps_per_execution: 1}}
""",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["train", str(tmp_path / "bad.yaml"), "--epochs", "2", "--output", str(tmp_path / "runs")])
    # Either the data source refuses the inf up front (exit 2), or the
    # trainer stops at the first batch that holds it (exit 1).
    assert result.exit_code in (1, 2), result.output
    line = _error_line(result)
    if result.exit_code == 1:
        assert "epoch 1, batch" in line and "NaN/inf" in line
    else:
        assert "bad.npz" in line
