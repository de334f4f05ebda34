"""npz arrays named after model inputs and outputs, explicit validation
splits and sample weights; a two-input, two-output model trains, evaluates
(metrics per output) and predicts (one JSON object per output) through the
real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

GRAPH = {
    "inputs": ["a", "b"],
    "layers": [
        {"Concatenate": {}, "name": "cat", "inputs": ["a", "b"]},
        {"Dense": {"units": 16, "activation": "relu"}, "name": "h"},
        {"Dense": {"units": 2, "activation": "softmax"}, "name": "kind", "inputs": "h"},
        {"Dense": {"units": 1}, "name": "value", "inputs": "h"},
    ],
    "outputs": ["kind", "value"],
}


def _arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    return {"a": a, "b": b, "kind": (a[:, 0] + b[:, 0] > 0).astype(np.int64), "value": (2 * a[:, 1] - b[:, 2]).astype(np.float32)}


def _config(tmp: Path, name: str, data: dict, model: dict, compile_: dict, epochs: int = 20) -> Path:
    cfg = {"name": name, "seed": 1, "data": {"source": "npz", "batch_size": 32, **data}, "model": model,
           "compile": {"optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}}, **compile_},
           "train": {"epochs": epochs}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _run(runner, app, args: list[str]) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    """A trained two-input, two-output run: (tmp folder, run folder, train JSON)."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    tmp = tmp_path_factory.mktemp("named")
    train, val, test = _arrays(600, 0), _arrays(100, 1), _arrays(200, 2)
    arrays = {**train, **{f"{k}_val": v for k, v in val.items()}, **{f"{k}_test": v for k, v in test.items()}}
    np.savez(tmp / "data.npz", **arrays)
    np.savez(tmp / "new.npz", a=test["a"][:5], b=test["b"][:5])
    cfg = _config(tmp, "two", {"path": str(tmp / "data.npz"), "target": ["kind", "value"]}, GRAPH, {
        "loss": {"kind": "sparse_categorical_crossentropy", "value": "mse"},
        "loss_weights": {"kind": 1.0, "value": 0.5},
        "metrics": {"kind": ["accuracy"], "value": ["mae"]},
    })
    info = _run(CliRunner(), app, ["train", str(cfg), "--output", str(tmp / "runs")])
    return tmp, tmp / "runs" / "two" / "1", info


@pytest.mark.slow
def test_two_inputs_two_outputs_train_with_explicit_splits(two_by_two):
    _, run, info = two_by_two
    assert info["data"]["num_train"] == 600 and info["data"]["num_val"] == 100 and info["data"]["num_test"] == 200
    assert info["test"]["kind_accuracy"] > 0.9
    assert info["test"]["value_mae"] < 0.6  # the target's own spread is ~2.2
    spec = json.loads((run / "data_spec.json").read_text())
    assert spec["inputs"] == {"a": [4], "b": [3]}
    assert [o["name"] for o in spec["outputs"]] == ["kind", "value"]


@pytest.mark.slow
def test_evaluate_reports_each_output_by_its_kind(two_by_two, runner, app):
    _, run, info = two_by_two
    out = _run(runner, app, ["evaluate", str(run)])
    assert out["metrics"]["kind_accuracy"] == pytest.approx(info["test"]["kind_accuracy"])
    kind, value = out["outputs"]["kind"], out["outputs"]["value"]
    assert kind["averages"]["accuracy"] == pytest.approx(out["metrics"]["kind_accuracy"], abs=1e-6)
    assert sum(map(sum, kind["confusion_matrix"])) == 200
    assert value["regression"]["mae"] == pytest.approx(out["metrics"]["value_mae"], rel=1e-4)
    assert (run / "plots" / "confusion_matrix_kind.png").is_file() and (run / "plots" / "regression_value.png").is_file()


@pytest.mark.slow
def test_predict_gives_one_object_per_output_and_csv_columns(two_by_two, runner, app):
    import keras

    tmp, run, _ = two_by_two
    result = runner.invoke(app, ["predict", str(run), str(tmp / "new.npz"), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [f"{tmp / 'new.npz'}:{i}" for i in range(5)]
    model = keras.saving.load_model(run / "model.keras")
    with np.load(tmp / "new.npz") as f:
        kind, value = model.predict({"a": f["a"], "b": f["b"]}, verbose=0)
    for i, r in enumerate(records):
        assert r["outputs"]["kind"]["class"] == str(int(kind[i].argmax()))
        assert r["outputs"]["value"]["value"] == pytest.approx(float(value[i, 0]), rel=1e-4, abs=1e-5)
    result = runner.invoke(app, ["predict", str(run), str(tmp / "new.npz"), "--output", str(tmp / "p.csv")])
    assert result.exit_code == 0, result.output
    with open(tmp / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["input", "kind.class", "kind.probability", "value.value", "error"] and len(rows) == 5


@pytest.mark.slow
def test_sample_weight_is_applied(runner, app, tmp_path):
    """60% of the training labels are flipped; weighting them 0 learns the
    clean rule, while equal weights drift to the flipped one."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)).astype(np.float32)
    clean = (x[:, 0] > 0).astype(np.int64)
    noisy = rng.random(500) < 0.6
    y = np.where(noisy, 1 - clean, clean)
    xt = rng.normal(size=(200, 2)).astype(np.float32)
    yt = (xt[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "w.npz", x=x, y=y, x_test=xt, y_test=yt, w=(~noisy).astype(np.float32))
    np.savez(tmp_path / "u.npz", x=x, y=y, x_test=xt, y_test=yt)
    model = {"layers": [{"Dense": {"units": 2, "activation": "softmax"}}]}
    compile_ = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    weighted = _run(runner, app, ["train", str(_config(tmp_path, "w", {"path": str(tmp_path / "w.npz"), "sample_weight": "w",
                                                                        "validation_split": 0.0}, model, compile_, 6)),
                                  "--output", str(tmp_path / "runs")])
    equal = _run(runner, app, ["train", str(_config(tmp_path, "u", {"path": str(tmp_path / "u.npz"), "validation_split": 0.0},
                                                     model, compile_, 6)), "--output", str(tmp_path / "runs")])
    assert weighted["test"]["accuracy"] > 0.9
    # Equal weights see mostly flipped labels: at best chance on clean data.
    assert equal["test"]["accuracy"] < 0.6 and weighted["test"]["accuracy"] - equal["test"]["accuracy"] > 0.3


def test_a_missing_validation_array_and_a_0d_array_are_one_line_errors(runner, app, tmp_path):
    arrays = _arrays(50, 0)
    np.savez(tmp_path / "half.npz", **arrays, a_val=arrays["a"][:5])
    np.savez(tmp_path / "scalar.npz", x=np.float32(3.0), y=np.zeros(3))
    cases = [
        (_config(tmp_path, "half", {"path": str(tmp_path / "half.npz"), "target": ["kind", "value"]}, GRAPH,
                 {"loss": {"kind": "sparse_categorical_crossentropy", "value": "mse"}}), "a_val but not b_val"),
        (_config(tmp_path, "scalar", {"path": str(tmp_path / "scalar.npz")}, {"layers": [{"Dense": {"units": 1}}]},
                 {"loss": "mse"}), "'x' is 0-d"),
    ]
    for cfg, needle in cases:
        result = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "runs")])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
