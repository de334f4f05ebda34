"""`dlcli evaluate`: metrics equal Keras's, per-class report, plots,
evaluation.json, --data, --json, errors."""

from __future__ import annotations

import csv
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.evaluation import edit_distance, evaluate_run, parse_data_option
from dlcli.errors import ConfigError, DataError

runner = CliRunner()


def _train(root, config: dict):
    return api.train(config, output=root, progress="none").run_dir


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return _train(root, {
        "name": "iris",
        "data": {"source": "iris", "batch_size": 16},
        "model": {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
        "compile": {"loss": "categorical_crossentropy", "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.02}}, "metrics": ["accuracy"]},
        "train": {"epochs": 3},
    })


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return _train(root, {
        "name": "diabetes",
        "data": {"source": "diabetes"},
        "model": {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 1}}]},
        "compile": {"loss": "mean_squared_error", "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.05}}, "metrics": ["mean_absolute_error"]},
        "train": {"epochs": 2},
    })


def _write_table(path, rows, header):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _table_rows(n, seed, colours=("red", "green", "blue"), labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = labels[int(rng.integers(len(labels)))]
        k = "abc".index(label)
        colour = colours[int(rng.integers(len(colours)))]
        rows.append({"size": round(float(rng.normal(k * 3.0, 1.0)), 3), "weight": round(float(rng.normal(50 + 10 * k, 5)), 3), "colour": colour, "label": label})
    return rows


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A run on a CSV with numeric and categorical columns."""
    root = tmp_path_factory.mktemp("csvrun")
    rows = _table_rows(240, seed=0)
    _write_table(root / "train.csv", [[r["size"], r["weight"], r["colour"], r["label"]] for r in rows], ["size", "weight", "colour", "label"])
    run = _train(root / "runs", {
        "name": "table",
        "data": {"source": "csv", "path": str(root / "train.csv"), "target": "label", "batch_size": 16},
        "model": {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.02}}, "metrics": ["accuracy"]},
        "train": {"epochs": 3},
    })
    return run, root


def _keras_test_metrics(run_dir):
    """What model.evaluate gives on the run's own test split."""
    import keras

    from dlcli.config import load_config
    from dlcli.data import load_data

    model = keras.saving.load_model(run_dir / "model.keras")
    bundle = load_data(load_config(run_dir / "config.yaml"))
    return model, bundle, model.evaluate(bundle.test, verbose=0, return_dict=True)


def test_metrics_equal_model_evaluate_and_training(iris_run):
    result = evaluate_run(iris_run)
    model, bundle, expected = _keras_test_metrics(iris_run)
    assert set(result["metrics"]) == set(expected)
    for k, v in expected.items():
        assert result["metrics"][k] == pytest.approx(float(v), rel=1e-6, abs=1e-7)
    # The same numbers training wrote for its test split.
    trained = json.loads((iris_run / "metrics.json").read_text())["test"]
    for k, v in trained.items():
        assert result["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-7)
    assert result["data"] == {"source": "iris", "path": None, "split": "test", "samples": bundle.num_test}


def test_per_class_report_and_confusion_matrix(iris_run):
    import keras

    result = evaluate_run(iris_run)
    model = keras.saving.load_model(iris_run / "model.keras")
    _, bundle, _ = _keras_test_metrics(iris_run)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in bundle.test])
    truth = np.concatenate(ys).argmax(1)
    predicted = model.predict(np.concatenate(xs), verbose=0).argmax(1)

    assert result["classes"] == ["setosa", "versicolor", "virginica"]
    cm = np.asarray(result["confusion_matrix"])
    expected_cm = np.zeros((3, 3), int)
    for t, p in zip(truth, predicted):
        expected_cm[t, p] += 1
    np.testing.assert_array_equal(cm, expected_cm)
    assert result["averages"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"], abs=1e-6)
    for i, row in enumerate(result["per_class"]):
        assert row["support"] == int((truth == i).sum())
        tp = expected_cm[i, i]
        assert row["recall"] == pytest.approx(tp / max(1, expected_cm[i].sum()))
        assert row["precision"] == pytest.approx(tp / max(1, expected_cm[:, i].sum()))

    png = iris_run / "plots" / "confusion_matrix.png"
    assert result["plots"]["confusion_matrix"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((iris_run / "evaluation.json").read_text())
    assert saved["metrics"] == result["metrics"]
    assert saved["confusion_matrix"] == result["confusion_matrix"]


def test_regression_report_and_plot(diabetes_run):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    result = evaluate_run(diabetes_run)
    model, bundle, expected = _keras_test_metrics(diabetes_run)
    assert result["metrics"]["loss"] == pytest.approx(float(expected["loss"]), rel=1e-6)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in bundle.test])
    y = np.concatenate(ys).reshape(-1)
    p = model.predict(np.concatenate(xs), verbose=0).reshape(-1)
    reg = result["regression"]
    assert reg["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-5)
    assert reg["mse"] == pytest.approx(mean_squared_error(y, p), rel=1e-5)
    assert reg["r2"] == pytest.approx(r2_score(y, p), rel=1e-5, abs=1e-6)
    # Keras's own MSE loss on the same split agrees with sklearn's.
    assert reg["mse"] == pytest.approx(result["metrics"]["loss"], rel=1e-4)
    assert "confusion_matrix" not in result
    assert (diabetes_run / "plots" / "regression.png").stat().st_size > 1000


def test_cli_json_prints_one_object_and_table_goes_to_stdout(iris_run):
    res = runner.invoke(app, ["evaluate", str(iris_run), "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["metrics"]["accuracy"] == pytest.approx(json.loads((iris_run / "metrics.json").read_text())["test"]["accuracy"])
    res = runner.invoke(app, ["evaluate", str(iris_run)])
    assert res.exit_code == 0
    # The tables go to stdout (DESIGN.md, part 2); where they were saved, to stderr.
    assert "versicolor" not in res.stderr
    assert "versicolor" in res.stdout and "accuracy" in res.stdout and "evaluation.json" in res.stderr


def test_data_option_csv_realigns_classes_categories_and_scaling(csv_run):
    """Other data with reordered columns, fewer classes and categories and
    different statistics is preprocessed exactly as predict does it."""
    import keras

    from dlcli.data import load_inputs

    run, root = csv_run
    rows = _table_rows(50, seed=7, colours=("red", "blue"), labels=("c", "b"))
    _write_table(root / "other.csv", [[r["colour"], r["label"], r["weight"], r["size"]] for r in rows], ["colour", "label", "weight", "size"])

    result = evaluate_run(run, data=str(root / "other.csv"))
    spec = json.loads((run / "data_spec.json").read_text())
    # A csv model takes raw columns (its FeatureSpace is inside it): one
    # array per column, by name.
    batches = [b[1] for b in load_inputs(spec, [str(root / "other.csv")], 64)]
    import tensorflow as tf

    x = {k: tf.constant(np.concatenate([b[k] for b in batches])) for k in batches[0]}
    y = np.asarray([spec["class_names"].index(r["label"]) for r in rows])
    model = keras.saving.load_model(run / "model.keras")
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["data"]["split"] == "all" and result["data"]["samples"] == 50
    for k, v in expected.items():
        assert result["metrics"][k] == pytest.approx(float(v), rel=1e-5, abs=1e-6)
    assert [r["class"] for r in result["per_class"]] == ["a", "b", "c"]
    assert result["per_class"][0]["support"] == 0


def test_data_option_unknown_class_is_an_error(csv_run):
    run, root = csv_run
    rows = _table_rows(10, seed=3)
    _write_table(root / "zeta.csv", [[r["size"], r["weight"], r["colour"], "z" if i == 0 else r["label"]] for i, r in enumerate(rows)], ["size", "weight", "colour", "label"])
    res = runner.invoke(app, ["evaluate", str(run), "--data", f"source=csv,path={root / 'zeta.csv'},target=label"])
    assert res.exit_code == 2
    assert "'z'" in res.stderr and "not trained on" in res.stderr


def test_data_option_built_in_source_and_missing_path(iris_run):
    result = evaluate_run(iris_run, data="source=iris")
    assert result["data"]["split"] == "all" and result["data"]["samples"] == 150
    res = runner.invoke(app, ["evaluate", str(iris_run), "--data", "nothing/here.csv"])
    assert res.exit_code == 2
    assert "nothing/here.csv" in res.stderr


def test_parse_data_option_forms(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    assert parse_data_option(str(tmp_path / "imgs")) == {"source": "image_dir", "path": str(tmp_path / "imgs")}
    assert parse_data_option(str(tmp_path / "t.csv"))["source"] == "csv"
    assert parse_data_option("source=csv,path=x.csv,target=y") == {"source": "csv", "path": "x.csv", "target": "y"}
    assert parse_data_option("image_size=[32, 32],color_mode=rgb") == {"image_size": [32, 32], "color_mode": "rgb"}
    assert parse_data_option("{source: iris, batch_size: 8}") == {"source": "iris", "batch_size": 8}
    assert parse_data_option("data.source=wine") == {"source": "wine"}
    assert parse_data_option("wine") == {"source": "wine"}
    assert parse_data_option(f"path={tmp_path / 't.csv'},target=b")["source"] == "csv"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt"):
        parse_data_option(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError):
        parse_data_option("source=csv,oops")


def test_missing_run_and_bare_model_without_data(tmp_path, iris_run):
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "run not found" in res.stderr and "Traceback" not in res.output
    bare = tmp_path / "bare.keras"
    bare.write_bytes((iris_run / "model.keras").read_bytes())
    res = runner.invoke(app, ["evaluate", str(bare)])
    assert res.exit_code == 2
    assert "--data" in res.stderr


def test_bare_model_with_data_writes_beside_it(tmp_path, iris_run):
    bare = tmp_path / "iris_model.keras"
    bare.write_bytes((iris_run / "model.keras").read_bytes())
    result = evaluate_run(bare, data="source=iris")
    assert result["data"]["samples"] == 150
    assert (tmp_path / "iris_model.evaluation.json").is_file()
    assert (tmp_path / "iris_model.confusion_matrix.png").is_file()
    # The bare file holds no class names: the data's are used.
    assert result["classes"] == ["setosa", "versicolor", "virginica"]


def test_edit_distance():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 3], [1, 2, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance([1, 2, 3, 4], [1, 3, 4]) == 1
    assert edit_distance([1, 2], [2, 1]) == 2


@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctc")
    return _train(root, {
        "name": "ctc",
        "data": {"source": "ctc_digits", "sequence": True, "ctc": {"length": 3, "samples": 300}},
        "model": {"layers": [
            {"Conv1D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"Bidirectional": {"layer": {"GRU": {"units": 16, "return_sequences": True}}}},
            {"Dense": {"units": 11}},
        ]},
        "compile": {"loss": "ctc", "metrics": ["ctc_sequence_accuracy"]},
        "train": {"epochs": 1},
    })


def _keras_greedy(outputs):
    """Keras's own greedy CTC decoding (blank 0), as lists of classes."""
    import keras

    decoded, _ = keras.ops.ctc_decode(outputs, np.full(len(outputs), outputs.shape[1]), strategy="greedy", mask_index=0)
    return [[int(v) for v in row if v > 0] for row in keras.ops.convert_to_numpy(decoded[0])]


@pytest.mark.slow
def test_ctc_sequence_accuracy_error_rate_and_predicted_text(ctc_run, tmp_path):
    result = evaluate_run(ctc_run)
    model, bundle, expected = _keras_test_metrics(ctc_run)
    assert result["metrics"]["loss"] == pytest.approx(float(expected["loss"]), rel=1e-5)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in bundle.test])
    x = np.concatenate(xs)
    labels = [[int(v) for v in row if v > 0] for row in np.concatenate(ys)]
    decoded = _keras_greedy(model.predict(x, verbose=0))
    ctc = result["ctc"]
    assert ctc["samples"] == len(labels)
    assert ctc["sequence_accuracy"] == pytest.approx(np.mean([d == t for d, t in zip(decoded, labels)]))
    assert ctc["sequence_accuracy"] == pytest.approx(result["metrics"]["ctc_sequence_accuracy"], abs=1e-6)
    assert ctc["character_error_rate"] == pytest.approx(
        sum(edit_distance(d, t) for d, t in zip(decoded, labels)) / sum(len(t) for t in labels)
    )
    assert "confusion_matrix" not in result

    np.savez(tmp_path / "strings.npz", x=x[:5])
    records = list(api.predict(ctc_run, [tmp_path / "strings.npz"]))
    # Class k is digit k - 1 (class 0 is the CTC blank).
    assert [r["text"] for r in records] == ["".join(str(k - 1) for k in d) for d in decoded[:5]]
