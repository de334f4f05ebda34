"""`dlcli export` end to end: real runs (a digits CNN and an iris MLP),
every format, each exported file run with its own runtime and compared
with the Keras model.

The runs are trained once per session with `dlcli train`. Each test that
writes exports works on its own copy of a run, so tests do not see each
other's export/ folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dlcli.cli import app  # noqa: E402
from dlcli.errors import ExportError  # noqa: E402
from dlcli.export import MissingExtraError, export_run  # noqa: E402

pytestmark = pytest.mark.slow

runner = CliRunner()

# 85k parameters: the int8 size ratio is measured on a model where weights,
# not the flatbuffer's fixed overhead, make up the file.
DIGITS_CNN = {
    "name": "digits_cnn",
    "seed": 7,
    "data": {"source": "digits", "batch_size": 64},
    "model": {
        "layers": [
            {"Rescaling": {"scale": 0.0625}},  # digits pixels are 0..16
            {"Conv2D": {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"Conv2D": {"filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"}},
            {"MaxPooling2D": {"pool_size": 2}},
            "Flatten",
            {"Dense": {"units": 64, "activation": "relu"}},
            {"Dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
    "train": {"epochs": 3, "checkpoint_every": 3},
}

IRIS_MLP = {
    "name": "iris_mlp",
    "seed": 7,
    "data": {"source": "iris", "batch_size": 16},
    "model": {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
    "compile": {
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.02}},
        "metrics": ["accuracy"],
    },
    # 150 samples: enough epochs for confident outputs, checkpoints rarely.
    "train": {"epochs": 40, "checkpoint_every": 40},
}

FORMATS = [("saved_model", "none"), ("tflite", "none"), ("tflite", "float16"), ("tflite", "int8"), ("onnx", "none")]
FILES = {
    ("saved_model", "none"): "saved_model",
    ("tflite", "none"): "model.tflite",
    ("tflite", "float16"): "model_float16.tflite",
    ("tflite", "int8"): "model_int8.tflite",
    ("onnx", "none"): "model.onnx",
}


def _train(root: Path, config: dict) -> Path:
    path = root / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "--output", str(root / "runs"), "--json"])
    assert result.exit_code == 0, result.stderr
    run = root / "runs" / config["name"] / "1"
    assert (run / "model.keras").is_file() and (run / "data_spec.json").is_file()
    return run


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_runs")
    return {"digits": _train(root, DIGITS_CNN), "iris": _train(root, IRIS_MLP)}


@pytest.fixture
def digits_run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained["digits"], tmp_path / "digits_cnn" / "1"))


@pytest.fixture
def iris_run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained["iris"], tmp_path / "iris_mlp" / "1"))


def _keras_model(run: Path):
    import keras

    return keras.saving.load_model(run / "model.keras", compile=False)


def _test_split(run: Path) -> np.ndarray:
    """The run's test inputs, through the run's own config and data code."""
    from dlcli.config import load_config
    from dlcli.data import load_data

    bundle = load_data(load_config(run / "config.yaml"))
    return np.concatenate([x.numpy() for x, _ in bundle.test])


def _run_export(path: Path, fmt: str, x: np.ndarray, input_name: str) -> np.ndarray:
    """Run an exported file with the runtime a server or phone would use,
    independently of dlcli's own runners; returns the single output."""
    x = x.astype(np.float32)
    if fmt == "saved_model":
        import tensorflow as tf

        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        (out,) = fn(**{input_name: tf.constant(x)}).values()
        return out.numpy()
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (out,) = interpreter.get_signature_runner("serving_default")(**{input_name: x}).values()
        return out
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: x})[0]


@pytest.mark.parametrize("fmt, quantize", FORMATS)
def test_digits_cnn_exports_compute_what_the_keras_model_computes(digits_run, fmt, quantize):
    result = export_run(digits_run, fmt, quantize=quantize)

    path = digits_run / "export" / FILES[fmt, quantize]
    assert Path(result["path"]) == path and path.exists()
    assert result["format"] == fmt and result["quantize"] == quantize
    (inp,) = result["inputs"]
    assert inp["shape"] == [None, 8, 8, 1] and inp["dtype"] == "float32"
    assert result["class_names"] == [str(i) for i in range(10)]
    p = result["parity"]
    assert p["split"] == "test" and p["samples"] == 360 and p["passed"]
    assert p["min_agreement"] == (0.97 if quantize == "int8" else 0.99)
    assert p["top1_agreement"] >= p["min_agreement"]

    # Run the file ourselves on the whole test split.
    x = _test_split(digits_run)
    keras_out = _keras_model(digits_run).predict(x, verbose=0)
    out = _run_export(path, fmt, x, inp["name"])
    assert out.shape == keras_out.shape
    tolerance = {"none": 1e-4, "float16": 5e-3, "int8": 0.1}[quantize]
    assert np.abs(out - keras_out).max() < tolerance
    agreement = float((out.argmax(1) == keras_out.argmax(1)).mean())
    assert agreement >= (0.97 if quantize == "int8" else 0.99)
    assert agreement == pytest.approx(p["top1_agreement"])

    record = json.loads((digits_run / "export" / "export.json").read_text())["exports"]
    entry = record["tflite_int8" if quantize == "int8" else fmt if quantize == "none" else f"{fmt}_{quantize}"]
    assert entry["file"] == FILES[fmt, quantize]
    assert entry["size_bytes"] == result["size_bytes"] > 0
    assert entry["versions"]["tensorflow"] and entry["versions"]["keras"]


def test_digits_int8_is_3x_smaller_than_float32_and_agrees(digits_run):
    assert _keras_model(digits_run).count_params() >= 50_000
    float32 = export_run(digits_run, "tflite")
    int8 = export_run(digits_run, "tflite", quantize="int8")
    f32_size = (digits_run / "export" / "model.tflite").stat().st_size
    int8_size = (digits_run / "export" / "model_int8.tflite").stat().st_size
    assert int8["float32_size_bytes"] == float32["size_bytes"] == f32_size
    assert int8["size_bytes"] == int8_size
    assert f32_size / int8_size >= 3.0
    assert int8["size_ratio"] == pytest.approx(f32_size / int8_size, abs=1e-3)
    assert int8["parity"]["top1_agreement"] >= 0.97
    # Both entries kept side by side in export.json.
    exports = json.loads((digits_run / "export" / "export.json").read_text())["exports"]
    assert set(exports) == {"tflite", "tflite_int8"}


@pytest.mark.parametrize("fmt, quantize", FORMATS)
def test_iris_mlp_exports_take_raw_features(iris_run, fmt, quantize):
    # int8 on 30 test samples: one near-tie flip is 0.967, so allow two.
    min_agreement = 0.93 if quantize == "int8" else None
    result = export_run(iris_run, fmt, quantize=quantize, min_agreement=min_agreement)
    p = result["parity"]
    assert p["split"] == "test" and p["samples"] == 30
    assert p["top1_agreement"] >= (0.93 if quantize == "int8" else 0.99)
    assert result["class_names"] == ["setosa", "versicolor", "virginica"]

    # The Keras model was trained on features the data pipeline standardised
    # with the recorded mean and std. A client of a float export sends iris
    # measurements as they are (cm) and the graph standardises them; int8
    # takes standardised features (one int8 scale cannot serve raw features
    # of different ranges), and export.json tells the client so.
    from sklearn.datasets import load_iris

    raw = load_iris().data.astype(np.float32)
    spec = json.loads((iris_run / "data_spec.json").read_text())
    mean, std = (np.asarray(spec["standardize"][k]) for k in ("mean", "std"))
    standardized = ((raw - mean) / std).astype(np.float32)
    keras_out = _keras_model(iris_run).predict(standardized, verbose=0)
    if quantize == "int8":
        assert result["preprocessing"] == []
        assert any("(x - mean) / std" in note for note in result["client_preprocessing"])
        feed = standardized
    else:
        assert any("standardize" in step for step in result["preprocessing"])
        feed = raw
    out = _run_export(Path(result["path"]), fmt, feed, result["inputs"][0]["name"])
    # int8 probabilities move in steps of 1/256 and the error compounds
    # through two layers: within 0.15 on every one of the 150 flowers.
    tolerance = {"none": 1e-4, "float16": 5e-3, "int8": 0.15}[quantize]
    assert np.abs(out - keras_out).max() < tolerance
    assert (out.argmax(1) == keras_out.argmax(1)).mean() >= (0.93 if quantize == "int8" else 0.99)


def test_cli_json_prints_one_object_and_records_every_export(digits_run):
    for fmt in ("saved_model", "onnx"):
        result = runner.invoke(app, ["export", str(digits_run), "--format", fmt, "--json", "--samples", "100"])
        assert result.exit_code == 0, result.stderr
        (line,) = result.stdout.splitlines()
        obj = json.loads(line)
        assert obj["format"] == fmt and obj["parity"]["samples"] == 100
        assert obj["parity"]["top1_agreement"] == 1.0
    # The run's name folder resolves to its latest run.
    result = runner.invoke(app, ["export", str(digits_run.parent), "--format", "tflite", "--quantize", "float16"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "model_float16.tflite" in result.stderr and "top-1 agreement" in result.stderr
    exports = json.loads((digits_run / "export" / "export.json").read_text())["exports"]
    assert set(exports) == {"saved_model", "onnx", "tflite_float16"}
    # Every export was moved into place: no temporary names left behind.
    assert sorted(p.name for p in (digits_run / "export").iterdir()) == [
        "export.json", "model.onnx", "model_float16.tflite", "saved_model",
    ]


def test_saved_model_reexport_replaces_the_folder(digits_run):
    first = export_run(digits_run, "saved_model", samples=50)
    second = export_run(digits_run, "saved_model", samples=50)
    assert first["path"] == second["path"]
    assert [p.name for p in (digits_run / "export").iterdir() if p.name.startswith(".")] == []
    entry = json.loads((digits_run / "export" / "export.json").read_text())["exports"]["saved_model"]
    assert entry["created"] == second["created"]


def test_disagreeing_export_is_refused_and_not_kept(digits_run):
    # A degenerate classifier: every class within 1e-5 of 0.1. int8 cannot
    # tell its outputs apart, so the parity check must refuse the export.
    model = _keras_model(digits_run)
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 1e-4, bias * 0.0])
    model.save(digits_run / "model.keras")
    export_run(digits_run, "saved_model", samples=50)
    before = (digits_run / "export" / "export.json").read_text()

    with pytest.raises(ExportError, match="disagrees with the Keras model"):
        export_run(digits_run, "tflite", quantize="int8")
    result = runner.invoke(app, ["export", str(digits_run), "--format", "tflite", "--quantize", "int8"])
    assert result.exit_code == 1
    assert "top-1 agreement" in result.stderr and "below 0.97" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (digits_run / "export").iterdir()) == ["export.json", "saved_model"]
    assert (digits_run / "export" / "export.json").read_text() == before


def test_failed_first_export_leaves_no_export_folder(digits_run):
    model = _keras_model(digits_run)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 1e-4, bias * 0.0])
    model.save(digits_run / "model.keras")
    result = runner.invoke(app, ["export", str(digits_run), "--format", "tflite", "--quantize", "int8", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert not (digits_run / "export").exists()


def test_lambda_model_is_refused_unless_unsafe(digits_run):
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Lambda(lambda t: t / 16.0),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(digits_run / "model.keras")
    result = runner.invoke(app, ["export", str(digits_run), "--format", "saved_model"])
    assert result.exit_code == 2
    assert "--unsafe" in result.stderr and "Lambda" in result.stderr
    assert not (digits_run / "export").exists()

    result = runner.invoke(app, ["export", str(digits_run), "--format", "saved_model", "--unsafe", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["parity"]["top1_agreement"] == 1.0


def test_missing_onnx_extra_names_the_pip_command(digits_run, monkeypatch):
    # As if onnxruntime were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = runner.invoke(app, ["export", str(digits_run), "--format", "onnx"])
    assert result.exit_code == 2
    assert "onnxruntime" in result.stderr and "pip install 'dlcli" in result.stderr
    assert not (digits_run / "export").exists()
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'dlcli[onnx]'")):
        export_run(digits_run, "onnx")


def test_a_bare_model_file_is_refused(digits_run, tmp_path):
    lone = tmp_path / "lone.keras"
    shutil.copy(digits_run / "model.keras", lone)
    result = runner.invoke(app, ["export", str(lone), "--format", "tflite"])
    assert result.exit_code == 2
    assert "config.yaml" in result.stderr
    assert list(tmp_path.glob("export")) == []
