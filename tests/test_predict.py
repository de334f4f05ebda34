"""`dlcli predict`: predictions equal model.predict on the same
preprocessed inputs, per-file errors, output files, streaming, safe
loading."""

from __future__ import annotations

import csv
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app

runner = CliRunner()


def _train(root, config: dict):
    return api.train(config, output=root, progress="none").run_dir


def _dense_run(root, name, source, loss, units, activation, metrics=("accuracy",)):
    return _train(root, {
        "name": name,
        "data": {"source": source, "batch_size": 32},
        "model": {"layers": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": units, "activation": activation}}]},
        "compile": {"loss": loss, "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.02}}, "metrics": list(metrics)},
        "train": {"epochs": 1},
    })


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "iris": _dense_run(root, "iris", "iris", "sparse_categorical_crossentropy", 3, "softmax"),
        "binary": _dense_run(root, "cancer", "breast_cancer", "binary_crossentropy", 1, "sigmoid"),
        "regression": _dense_run(root, "diabetes", "diabetes", "mean_squared_error", 1, None, metrics=("mae",)),
    }


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from dlcli.data import make_demo_image_folder

    root = tmp_path_factory.mktemp("images")
    make_demo_image_folder(root / "train", n_per_class=12, size=20, corrupt=False)
    run = _train(root / "runs", {
        "name": "pets",
        "data": {"source": "image_dir", "path": str(root / "train"), "image_size": [16, 16], "color_mode": "rgb", "batch_size": 8},
        "model": {"layers": [
            {"Rescaling": {"scale": 1 / 255}},
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "GlobalAveragePooling2D",
            {"Dense": {"units": 2, "activation": "softmax"}},
        ]},
        "compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "train": {"epochs": 1},
    })
    return run, root / "train"


def _tf_preprocess(paths, size=(16, 16)):
    """Load-resize as a plain TensorFlow script would."""
    import tensorflow as tf

    return np.stack([
        tf.image.resize(tf.io.decode_image(tf.io.read_file(str(p)), channels=3, expand_animations=False), size).numpy()
        for p in paths
    ])


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _spec(run):
    return json.loads((run / "data_spec.json").read_text())


def test_image_predictions_equal_model_predict(image_run):
    import keras

    run, folder = image_run
    res = runner.invoke(app, ["predict", str(run), str(folder), "--json", "--top-k", "2"])
    assert res.exit_code == 0, res.output
    records = _json_lines(res.stdout)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert sorted(r["input"] for r in records) == files
    model = keras.saving.load_model(run / "model.keras")
    probs = model.predict(_tf_preprocess(files), verbose=0)
    names = _spec(run)["class_names"]
    by_name = {r["input"]: r for r in records}
    for f, p in zip(files, probs):
        r = by_name[f]
        assert r["class"] == names[int(p.argmax())]
        assert r["probability"] == pytest.approx(float(p.max()), abs=1e-5)
        assert [t["class"] for t in r["top_k"]] == [names[i] for i in np.argsort(-p)]
        assert r["top_k"][0]["probability"] == r["probability"]


def _mixed_folder(tmp_path, folder):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    good = sorted(p for p in folder.rglob("*") if p.is_file())[:3]
    for p in good:
        shutil.copy(p, mixed / p.name)
    (mixed / "readme.txt").write_text("not an image")
    (mixed / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    jpg = next(p for p in folder.rglob("*.jpg"))
    (mixed / "truncated.jpg").write_bytes(jpg.read_bytes()[:120])
    return mixed, [mixed / p.name for p in good]


def test_mixed_folder_predicts_good_files_and_reports_bad_ones(tmp_path, image_run):
    run, folder = image_run
    mixed, good = _mixed_folder(tmp_path, folder)
    res = runner.invoke(app, ["predict", str(run), str(mixed), "--json"])
    assert res.exit_code == 0, res.output
    records = _json_lines(res.stdout)  # every line parses
    ok = {r["input"] for r in records if "class" in r}
    bad = {r["input"]: r["error"] for r in records if "error" in r}
    assert ok == {str(p) for p in good}
    assert set(bad) == {str(mixed / n) for n in ("readme.txt", "corrupt.png", "truncated.jpg")}
    assert all(msg for msg in bad.values())
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3 and all(any(n in line for line in skipped) for n in ("readme.txt", "corrupt.png", "truncated.jpg"))

    strict = runner.invoke(app, ["predict", str(run), str(mixed), "--strict", "--json"])
    assert strict.exit_code == 1
    assert {r["input"] for r in _json_lines(strict.stdout) if "class" in r} == ok


def test_output_files_csv_and_jsonl(tmp_path, image_run):
    run, folder = image_run
    mixed, good = _mixed_folder(tmp_path, folder)
    out_csv = tmp_path / "out" / "pred.csv"
    res = runner.invoke(app, ["predict", str(run), str(mixed), "-o", str(out_csv), "-k", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["input", "class", "probability", "class_2", "probability_2", "error"]
    assert len(rows) == 6
    assert sum(1 for r in rows if r["error"]) == 3
    for r in rows:
        if not r["error"]:
            assert float(r["probability"]) + float(r["probability_2"]) == pytest.approx(1.0, abs=1e-5)
    out_jsonl = tmp_path / "pred.jsonl"
    res = runner.invoke(app, ["predict", str(run), *map(str, good), "-o", str(out_jsonl)])
    assert res.exit_code == 0
    assert [r["input"] for r in _json_lines(out_jsonl.read_text())] == [str(p) for p in good]
    assert not list(tmp_path.glob(".pred*")), "no temporary file left behind"


def test_bad_usage_exits_2_and_writes_nothing(tmp_path, image_run, runs):
    run, folder = image_run
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    res = runner.invoke(app, ["predict", str(run), str(txt)])
    assert res.exit_code == 2 and "notes.txt" in res.stderr and "Traceback" not in res.output

    res = runner.invoke(app, ["predict", str(tmp_path / "no_such_run"), str(folder)])
    assert res.exit_code == 2 and "run not found" in res.stderr

    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["predict", str(run), str(folder), str(tmp_path / "missing.png"), "-o", str(out)])
    assert res.exit_code == 2 and "missing.png" in res.stderr
    assert not out.exists()

    res = runner.invoke(app, ["predict", str(run), str(folder), "-o", str(tmp_path / "p.xlsx")])
    assert res.exit_code == 2 and ".xlsx" in res.stderr

    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    res = runner.invoke(app, ["predict", str(run), str(table)])
    assert res.exit_code == 2 and "t.csv" in res.stderr


def test_csv_missing_feature_columns_exits_2(tmp_path, runs):
    features = _spec(runs["iris"])["features"]
    path = tmp_path / "few.csv"
    path.write_text(",".join(features[:2]) + "\n1,2\n")
    res = runner.invoke(app, ["predict", str(runs["iris"]), str(path)])
    assert res.exit_code == 2
    assert repr(features[2]) in res.stderr


def test_csv_rows_use_training_standardisation(tmp_path, runs):
    import keras
    from sklearn.datasets import load_iris

    run = runs["iris"]
    spec = _spec(run)
    iris = load_iris()
    raw = iris.data[::15].astype(np.float64)
    # Columns in another order, the target column present: both must not matter.
    order = [3, 1, 0, 2]
    path = tmp_path / "flowers.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([iris.feature_names[i] for i in order] + ["species"])
        for row, t in zip(raw, iris.target[::15]):
            w.writerow([row[i] for i in order] + [iris.target_names[t]])
    records = list(api.predict(run, [path], top_k=3))
    x = ((raw - np.asarray(spec["standardize"]["mean"])) / np.asarray(spec["standardize"]["std"])).astype(np.float32)
    probs = keras.saving.load_model(run / "model.keras").predict(x, verbose=0)
    assert [r["input"] for r in records] == [f"{path}:{i + 2}" for i in range(len(raw))]
    for r, p in zip(records, probs):
        assert r["class"] == spec["class_names"][int(p.argmax())]
        assert r["probability"] == pytest.approx(float(p.max()), abs=1e-6)
        assert len(r["top_k"]) == 3
        assert sum(t["probability"] for t in r["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_binary_sigmoid_picks_between_the_two_class_names(tmp_path, runs):
    import keras
    from sklearn.datasets import load_breast_cancer

    run = runs["binary"]
    spec = _spec(run)
    raw = load_breast_cancer().data[:40]
    np.savez(tmp_path / "cells.npz", x=raw)
    records = list(api.predict(run, [tmp_path / "cells.npz"]))
    x = ((raw - np.asarray(spec["standardize"]["mean"])) / np.asarray(spec["standardize"]["std"])).astype(np.float32)
    p = keras.saving.load_model(run / "model.keras").predict(x, verbose=0)[:, 0]
    names = spec["class_names"]
    assert len(names) == 2
    for r, pi in zip(records, p):
        assert r["class"] == (names[1] if pi >= 0.5 else names[0])
        assert r["probability"] == pytest.approx(float(pi if pi >= 0.5 else 1 - pi), abs=1e-6)


def test_regression_values_equal_model_predict(tmp_path, runs):
    import keras
    from sklearn.datasets import load_diabetes

    run = runs["regression"]
    spec = _spec(run)
    raw = load_diabetes().data[:25]
    np.savez(tmp_path / "patients.npz", x=raw)
    res = runner.invoke(app, ["predict", str(run), str(tmp_path / "patients.npz"), "--json"])
    assert res.exit_code == 0, res.output
    records = _json_lines(res.stdout)
    x = ((raw - np.asarray(spec["standardize"]["mean"])) / np.asarray(spec["standardize"]["std"])).astype(np.float32)
    p = keras.saving.load_model(run / "model.keras").predict(x, verbose=0)[:, 0]
    assert [set(r) for r in records] == [{"input", "value"}] * 25
    np.testing.assert_allclose([r["value"] for r in records], p, rtol=1e-5, atol=1e-5)


def _lambda_model(path):
    import keras

    inputs = keras.Input((4,))
    doubled = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(doubled))
    model.compile(loss="sparse_categorical_crossentropy")
    model.save(path)
    return model


def test_lambda_model_refused_without_unsafe(tmp_path):
    model = _lambda_model(tmp_path / "lambda.keras")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    res = runner.invoke(app, ["predict", str(tmp_path / "lambda.keras"), str(tmp_path / "x.npz")])
    assert res.exit_code == 2
    assert "arbitrary code (Lambda layer)" in res.stderr and "--unsafe" in res.stderr
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "lambda.keras"), str(tmp_path / "x.npz"), "--unsafe", "--json"])
    assert res.exit_code == 0, res.output
    p = model.predict(x, verbose=0)
    records = _json_lines(res.stdout)
    assert [r["class"] for r in records] == [str(i) for i in p.argmax(1)]
    np.testing.assert_allclose([r["probability"] for r in records], p.max(1), atol=1e-6)


def test_run_saved_by_train_loads_in_safe_mode(runs):
    from dlcli.model.io import load_model

    model = load_model(runs["iris"] / "model.keras")
    assert model.output_shape == (None, 3)


def test_corrupt_model_file_is_a_clear_error(tmp_path, runs):
    src = (runs["iris"] / "model.keras").read_bytes()
    (tmp_path / "half.keras").write_bytes(src[: len(src) // 2])
    res = runner.invoke(app, ["predict", str(tmp_path / "half.keras"), str(tmp_path)])
    assert res.exit_code == 2
    assert "half.keras" in res.stderr and "corrupt" in res.stderr


def test_bare_keras_file_resizes_images_to_the_model_input(tmp_path, image_run):
    run, folder = image_run
    bare = tmp_path / "pets.keras"
    shutil.copy(run / "model.keras", bare)
    files = sorted(folder.rglob("*.png"))[:4]
    from_run = list(api.predict(run, files))
    from_bare = list(api.predict(bare, files))
    assert [r["probability"] for r in from_bare] == pytest.approx([r["probability"] for r in from_run], abs=1e-6)
    # No data_spec.json: class indices stand in for class names.
    names = _spec(run)["class_names"]
    assert [names[int(r["class"])] for r in from_bare] == [r["class"] for r in from_run]


def test_predictions_stream_without_reading_everything(monkeypatch, runs):
    """Only a few batches are read ahead of the consumer."""
    import dlcli.data
    from dlcli import prediction

    read = []

    def endless(spec, paths, batch_size, **_):
        def batches():
            for i in range(10_000):
                read.append(i)
                yield [f"row{i}.{j}" for j in range(batch_size)], np.zeros((batch_size, 4), np.float32), []

        return batches()

    monkeypatch.setattr(dlcli.data, "load_inputs", endless)
    stream = prediction.predict_inputs(runs["iris"], ["ignored.csv"], batch_size=8)
    first = [next(stream) for _ in range(10)]
    assert [r["input"] for r in first] == [f"row0.{j}" for j in range(8)] + ["row1.0", "row1.1"]
    assert len(read) <= 2 + prediction._PREFETCH + 1
    stream.close()
