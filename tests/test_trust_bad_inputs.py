"""The trust-and-hardening part of the bad-input corpus (issue 11).

Same rules as tests/test_bad_inputs.py (one `error:` line, the right exit
code, no traceback, nothing written, the run folder untouched): pre-run
checks that turn mid-run failures into config errors, and predict's
output guards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bad_inputs import IRIS, QUICK, Case, check_case, trained_run  # noqa: F401 - trained_run is a fixture


def _config(name: str, text: str):
    def setup(tmp: Path, run: Path) -> None:
        (tmp / name).write_text(text, encoding="utf-8")

    return setup


def _one_class_csv(tmp: Path, run: Path) -> None:
    rows = "\n".join(f"{i},{i % 3},yes" for i in range(12))
    (tmp / "one.csv").write_text(f"a,b,label\n{rows}\n", encoding="utf-8")
    (tmp / "one.yaml").write_text(
        "name: one\ndata: {source: csv, path: one.csv, target: label, batch_size: 4}\n"
        "model:\n  layers:\n    - Dense: {units: 2, activation: softmax}\n",
        encoding="utf-8",
    )


def _image_model(tmp: Path, run: Path) -> None:
    """A bare .keras image model, a folder with one corrupt image and an
    empty folder."""
    import keras

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp))
    keras.Model(inp, out).save(tmp / "img.keras")
    (tmp / "bad").mkdir()
    (tmp / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp / "none").mkdir()


def _edited_config(tmp: Path, run: Path) -> None:
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state["finished"] = False
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    text = (run / "config.yaml").read_text().replace("units: 32", "units: 48")
    (run / "config.yaml").write_text(text)


def _bare_models(tmp: Path, run: Path) -> None:
    """vec.keras takes 4 values a row; multi.keras two named inputs."""
    import keras

    i = keras.Input((4,))
    keras.Model(i, keras.layers.Dense(3, activation="softmax")(i)).save(tmp / "vec.keras")
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([a, b]))
    keras.Model([a, b], out).save(tmp / "multi.keras")
    (tmp / "three.csv").write_text("a,b,c\n1,2,3\n", encoding="utf-8")


_PATIENCE = f"""extends: {IRIS}
train:
  callbacks:
    - EarlyStopping: {{monitor: val_loss, patience: "3"}}
"""

CASES: list[Case] = [
    Case("csvlogger-missing-folder", ["train", IRIS, *QUICK, "--set", "train.callbacks=[{CSVLogger: {filename: nolog/h.csv}}]"],
         ["train.callbacks.0.CSVLogger.filename", "nolog", "does not exist"]),
    Case("earlystopping-unknown-monitor", ["train", IRIS, *QUICK, "--set", "train.callbacks=[{EarlyStopping: {monitor: val_acc}}]"],
         ["train.callbacks.0.EarlyStopping.monitor", "'val_acc'", "val_accuracy"]),
    Case("reducelr-unknown-monitor", ["train", IRIS, *QUICK, "--set", "train.callbacks=[{ReduceLROnPlateau: {monitor: val_mae}}]"],
         ["train.callbacks.0.ReduceLROnPlateau.monitor", "'val_mae'"]),
    Case("monitor-unknown-before-run", ["train", IRIS, *QUICK, "--set", "train.monitor=accuracyy"], ["train.monitor", "accuracyy"]),
    Case("patience-string", ["train", "{tmp}/p.yaml", *QUICK], ["p.yaml:4", "patience", "'3'", "number"],
         setup=_config("p.yaml", _PATIENCE)),
    Case("min-delta-nan", ["train", IRIS, *QUICK, "--set", "train.callbacks=[{EarlyStopping: {min_delta: .nan}}]"],
         ["min_delta", "finite"]),
    Case("seed-negative", ["train", IRIS, *QUICK, "--set", "seed=-1"], ["seed", ">= 0"]),
    Case("seed-too-large", ["train", IRIS, *QUICK, "--set", "seed=4294967296"], ["seed", "4294967295"]),
    Case("learning-rate-nan", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate=.nan"],
         ["compile.optimizer", "nan"]),
    Case("learning-rate-inf", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate=.inf"],
         ["compile.optimizer", "inf"]),
    Case("learning-rate-negative", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate=-0.01"],
         ["compile.optimizer", "above 0"]),
    Case("learning-rate-zero", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate=0.0"],
         ["compile.optimizer", "is 0.0", "above 0"]),
    Case("schedule-stays-zero", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate="
         "{class_name: ExponentialDecay, config: {initial_learning_rate: 0.0, decay_steps: 10, decay_rate: 0.9}}"],
         ["compile.optimizer", "stays 0", "warm up"]),
    Case("schedule-nan", ["train", IRIS, *QUICK, "--set", "compile.optimizer.config.learning_rate="
         "{class_name: CosineDecay, config: {initial_learning_rate: .nan, decay_steps: 10}}"],
         ["compile.optimizer", "nan", "in the schedule"]),
    Case("class-weight-nan", ["train", IRIS, *QUICK, "--set", "train.class_weight={0: .nan, 1: 1, 2: 1}"],
         ["train.class_weight.0", "nan"]),
    Case("class-weight-inf", ["train", IRIS, *QUICK, "--set", "train.class_weight={setosa: .inf}"],
         ["train.class_weight.setosa", "inf"]),
    # predict: nothing overwritten, nothing predicted is a failure
    Case("predict-output-is-input", ["predict", "{run}", "{tmp}/x.csv", "--output", "{tmp}/x.csv"],
         ["x.csv", "would be overwritten"]),
    Case("predict-output-in-run-folder", ["predict", "{run}", "{tmp}/x.csv", "--output", "{run}/preds.csv"],
         ["inside the run folder"]),
    Case("predict-output-over-run-file", ["predict", "{run}", "{tmp}/x.csv", "--output", "{run}/history.csv"],
         ["inside the run folder"]),
    Case("predict-all-inputs-skipped", ["predict", "{tmp}/img.keras", "{tmp}/bad", "--output", "{tmp}/p.csv"],
         ["nothing was predicted", "1 input(s) were skipped"], code=1, setup=_image_model),
    Case("predict-empty-folder-input", ["predict", "{tmp}/img.keras", "{tmp}/none"], ["nothing was predicted"], code=1,
         setup=_image_model),
    # resume: a run continues with the config it was started with
    Case("resume-config-edited", ["train", "--resume", "{run}", "--epochs", "2"], ["config.yaml was edited", "dlcli train"],
         setup=_edited_config),
    # bare .keras files and multi-input models
    Case("predict-bare-model-csv-width", ["predict", "{tmp}/vec.keras", "{tmp}/three.csv"],
         ["three.csv has 3 column(s)", "takes 4 value(s)"], setup=_bare_models),
    Case("predict-multi-input-csv", ["predict", "{tmp}/multi.keras", "{tmp}/x.csv"], ["x.csv", "NPZ"], setup=_bare_models),
    Case("evaluate-multi-input-bare", ["evaluate", "{tmp}/multi.keras"], ["multi.keras", "without a loss"], setup=_bare_models),
    Case("export-multi-input-bare", ["export", "{tmp}/multi.keras", "--format", "saved_model"], ["multi.keras", "not a run folder"],
         setup=_bare_models),
    Case("single-class-target", ["train", "{tmp}/one.yaml", *QUICK], ["one.yaml:2", "data.target", "single class"],
         setup=_one_class_csv),
]


def test_trust_corpus_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_trust_bad_input_fails_cleanly(case, runner, app, tmp_path, monkeypatch, trained_run):  # noqa: F811
    check_case(case, runner, app, tmp_path, monkeypatch, trained_run)


@pytest.mark.parametrize("schedule", [
    "{class_name: CosineDecay, config: {initial_learning_rate: 0.0, decay_steps: 20, warmup_target: 0.01, warmup_steps: 4}}",
    "{class_name: PolynomialDecay, config: {initial_learning_rate: 0.0, decay_steps: 8, end_learning_rate: 0.01}}",
], ids=["cosine-warmup-from-0", "polynomial-rising-from-0"])
def test_a_schedule_starting_at_0_that_rises_trains(schedule, runner, app, tmp_path, monkeypatch):
    """0 at the first step is a warmup, not a mistake: the run trains, the
    learning rate it logs is above 0 and the model learns."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", IRIS, "--epochs", "2", "--quiet", "--output", "runs",
                              "--set", f"compile.optimizer.config.learning_rate={schedule}"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "mlp_iris" / "1"
    assert (run / "model.keras").is_file()
    import csv

    with open(run / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["learning_rate"]) > 0 for r in rows)
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
