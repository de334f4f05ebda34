"""Preprocessing layers adapt on the training split before fit: on exactly
the values that reach them, deterministically, saved with the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

OFFSETS = np.array([1.0e5, -3.0, 2.0e6, 0.0])
SCALES = np.array([1.0e3, 1.0e-2, 5.0e4, 1.0])


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in four standardised features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[1.5, 0, -1, 0], [-1, 1.5, 0, 1], [0, -1.5, 1.5, -1]])
    z = centres[y] + rng.normal(0, 0.8, (n, 4))
    return z, y


def _write(tmp: Path, name: str, data: dict, layers: list, *, epochs: int = 12) -> Path:
    cfg = {
        "name": name, "seed": 3,
        "data": {"source": "npz", "path": str(data["path"]), "validation_split": 0.0, "batch_size": 32},
        "model": {"layers": layers},
        "compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                    "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}}},
        "train": {"epochs": epochs},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(runner, app, cfg: Path, out: Path) -> tuple[Path, dict]:
    result = runner.invoke(app, ["train", str(cfg), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.splitlines()[-1])
    run = out / info["run_dir"].split("/", 1)[-1] if not Path(info["run_dir"]).is_absolute() else Path(info["run_dir"])
    return (run if run.exists() else Path(info["run_dir"])), info


def _npz(path: Path, x, y, xt, yt) -> dict:
    np.savez(path, x=x.astype(np.float32), y=y, x_test=xt.astype(np.float32), y_test=yt)
    return {"path": path}


HEAD = [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]


@pytest.fixture(scope="module")
def raw_and_standard(tmp_path_factory):
    """Runs on raw (offset, scaled) features with an adapted Normalization,
    and on the standardised features without one."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    tmp = tmp_path_factory.mktemp("adapt")
    z, y = _blobs(600, 0)
    zt, yt = _blobs(300, 1)
    raw = z * SCALES + OFFSETS
    mean, std = raw.mean(0), raw.std(0)
    raw_data = _npz(tmp / "raw.npz", raw, y, zt * SCALES + OFFSETS, yt)
    std_data = _npz(tmp / "std.npz", (raw - mean) / std, y, (zt * SCALES + OFFSETS - mean) / std, yt)
    runner = CliRunner()
    out = tmp / "runs"
    raw_run = _train(runner, app, _write(tmp, "raw", raw_data, ["Normalization", *HEAD]), out)
    std_run = _train(runner, app, _write(tmp, "std", std_data, HEAD), out)
    return raw, raw_run, std_run


@pytest.mark.slow
def test_normalization_on_raw_features_trains_as_well_as_standardised_data(raw_and_standard):
    _, (_, raw_info), (_, std_info) = raw_and_standard
    raw_acc, std_acc = raw_info["test"]["accuracy"], std_info["test"]["accuracy"]
    assert std_acc > 0.85
    assert raw_acc >= std_acc - 0.03, (raw_acc, std_acc)


def test_the_adapted_mean_is_the_training_mean_and_is_saved(raw_and_standard):
    import keras

    raw, (run, _), _ = raw_and_standard
    model = keras.saving.load_model(run / "model.keras")
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    np.testing.assert_allclose(np.ravel(norm.mean), raw.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(norm.variance), raw.var(0), rtol=1e-3)
    notes = json.loads((run / "metrics.json").read_text())["data"]["notes"]
    assert any("adapted normalization" in n for n in notes), notes


def test_a_deep_layer_adapts_on_the_values_that_reach_it(runner, app, tmp_path):
    """Normalization after a Dense layer and a Discretization after another
    preprocessing layer: each adapts on its own input, not the model's."""
    import keras

    z, y = _blobs(300, 2)
    data = _npz(tmp_path / "d.npz", z * SCALES + OFFSETS, y, *_blobs(60, 3))
    layers = [
        {"Normalization": {"name": "first"}},
        {"Dense": {"units": 5, "name": "proj", "trainable": False}},
        {"Normalization": {"name": "deep"}},
        {"Discretization": {"num_bins": 4, "name": "bins", "output_mode": "int"}},
        {"Dense": {"units": 3, "activation": "softmax"}},
    ]
    run, _ = _train(runner, app, _write(tmp_path, "deep", data, layers, epochs=1), tmp_path / "runs")
    model = keras.saving.load_model(run / "model.keras")
    x = (z * SCALES + OFFSETS).astype(np.float32)
    # The training split is all of x (validation_split 0, x_test given) and
    # `proj` does not train, so what reached `deep` is proj(first(x)).
    first = model.get_layer("first")
    np.testing.assert_allclose(np.ravel(first.mean), x.mean(0), rtol=1e-5)
    reached = keras.Model(model.inputs, model.get_layer("proj").output).predict(x, verbose=0)
    deep = model.get_layer("deep")
    np.testing.assert_allclose(np.ravel(deep.mean), reached.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.ravel(deep.variance), reached.var(0), rtol=1e-3, atol=1e-4)
    # `bins` adapted on deep's (standardised) output: quartiles near N(0, 1)'s.
    out = keras.Model(model.inputs, model.get_layer("deep").output).predict(x, verbose=0)
    np.testing.assert_allclose(model.get_layer("bins").bin_boundaries, np.quantile(out, [0.25, 0.5, 0.75]), atol=0.1)


def test_adapting_is_deterministic_and_given_state_is_kept(runner, app, tmp_path):
    import keras

    z, y = _blobs(200, 4)
    data = _npz(tmp_path / "d.npz", z * SCALES + OFFSETS, y, *_blobs(30, 5))
    layers = [{"Normalization": {"mean": 0.0, "variance": 1.0, "name": "given"}}, {"Dense": {"units": 4}},
              {"Normalization": {"name": "deep"}}, {"Dense": {"units": 3, "activation": "softmax"}}]
    cfg = _write(tmp_path, "det", data, layers, epochs=1)
    runs = [_train(runner, app, cfg, tmp_path / "runs")[0] for _ in range(2)]
    models = [keras.saving.load_model(r / "model.keras") for r in runs]
    given = models[0].get_layer("given")
    np.testing.assert_array_equal(np.ravel(given.mean), 0.0)
    a, b = (np.ravel(m.get_layer("deep").mean) for m in models)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() > 1.0  # the raw offsets reached it through the identity-state layer
