"""`dlcli export` option checks and the parity arithmetic: fast, no training.

The end-to-end exports of trained runs are in test_export.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.errors import ConfigError
from dlcli.export import check_options, export_key
from dlcli.export.parity import compare

runner = CliRunner()


def test_unknown_format_suggests_the_closest_and_exits_2_without_tensorflow(tmp_path):
    # Run in a fresh interpreter: a bad option must fail before TensorFlow
    # is imported, so the user gets the answer at once.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli import app\n"
        f"r = CliRunner().invoke(app, ['export', {str(tmp_path)!r}, '--format', 'tflight'])\n"
        "print(r.exit_code, 'tensorflow' in sys.modules)\n"
        "print(r.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    first, message = out.stdout.split("\n", 1)
    assert first == "2 False"
    assert "--format" in message and "did you mean 'tflite'" in message
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--format", "onnx", "--quantize", "int8"], ["--quantize", "tflite only"]),
        (["--format", "saved_model", "--quantize", "float16"], ["--quantize", "tflite only"]),
        (["--format", "tflite", "--quantize", "int4"], ["--quantize", "unknown value 'int4'"]),
        (["--format", "tflite", "--min-agreement", "1.5"], ["--min-agreement", "between 0 and 1"]),
        (["--format", "tflite", "--samples", "0"], ["--samples", "at least 1"]),
    ],
)
def test_bad_options_exit_2_with_one_line_naming_the_option(tmp_path, args, words):
    result = runner.invoke(app, ["export", str(tmp_path), *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "export").exists()


def test_missing_run_exits_2(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "nope"), "--format", "tflite", "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "run not found" in result.stderr


def test_option_defaults_and_thresholds():
    assert check_options("tflite", "int8") == ("tflite", "int8", 0.97)
    assert check_options("TFLite", "float16") == ("tflite", "float16", 0.99)
    assert check_options("saved-model") == ("saved_model", "none", 0.99)
    assert check_options("onnx", "none", 0.5) == ("onnx", "none", 0.5)
    with pytest.raises(ConfigError, match="did you mean 'onnx'"):
        check_options("onx")
    assert [export_key("tflite", q) for q in ("none", "float16", "int8")] == ["tflite", "tflite_float16", "tflite_int8"]


def test_compare_counts_top1_flips_and_reports_the_gap():
    ref = {"probs": np.array([[0.7, 0.2, 0.1], [0.45, 0.55, 0.0], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])}
    got = {"probs": np.array([[0.69, 0.21, 0.1], [0.55, 0.45, 0.0], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])}
    r = compare(ref, got, task="classification")
    assert r["samples"] == 4
    assert r["top1_agreement"] == r["agreement"] == 0.75
    assert r["max_abs_diff"] == pytest.approx(0.1)


def test_compare_thresholds_single_sigmoid_and_logit_units():
    probs = {"p": np.array([[0.9], [0.51], [0.2]])}
    assert compare(probs, {"p": np.array([[0.8], [0.49], [0.2]])}, task="binary")["agreement"] == pytest.approx(2 / 3)
    logits = {"z": np.array([[2.0], [0.1], [-3.0]])}
    assert compare(logits, {"z": np.array([[1.9], [-0.1], [-2.5]])}, task="binary")["agreement"] == pytest.approx(2 / 3)


def test_compare_regression_uses_a_tolerance_scaled_to_the_outputs():
    rng = np.random.default_rng(0)
    ref = rng.normal(100.0, 20.0, size=(50, 1))
    close = ref + 0.01  # 0.0005 std: within the float32 tolerance (1e-3 std)
    r = compare({"y": ref}, {"y": close}, task="regression")
    assert r["agreement"] == 1.0
    assert r["relative_error"] == pytest.approx(0.01 / np.sqrt(np.mean(ref**2)), rel=1e-6)
    off = ref.copy()
    off[:5] += 5.0  # a quarter of a std on 5 samples of 50
    r = compare({"y": ref}, {"y": off}, task="regression", quantize="int8")
    assert r["agreement"] == pytest.approx(0.9)
    assert r["max_abs_diff"] == pytest.approx(5.0)


def test_compare_takes_the_worst_output_of_several():
    ref = {"a": np.eye(3), "b": np.eye(3)}
    got = {"a": np.eye(3), "b": np.eye(3)[[1, 0, 2]]}
    r = compare(ref, got, task="classification")
    assert r["agreement"] == pytest.approx(1 / 3)
    assert set(r["outputs"]) == {"a", "b"}
    assert json.dumps(r)  # plain JSON for export.json
