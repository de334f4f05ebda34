"""The notebook API: train, evaluate, predict on paths, arrays and
DataFrames, load a run's model; the README's example runs as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dlcli import api

IRIS = "name: iris\ndata: {source: iris}\nmodel:\n  layers:\n    - Dense: {units: 3, activation: softmax}\ncompile: {loss: categorical_crossentropy, optimizer: {class_name: adam, config: {learning_rate: 0.05}}}\ntrain: {epochs: 5}\n"


def test_array_predictions_match_the_loaded_model(tmp_path):
    from sklearn.datasets import load_iris

    (tmp_path / "iris.yaml").write_text(IRIS, encoding="utf-8")
    run = api.train(tmp_path / "iris.yaml", output=tmp_path / "runs", progress="none").run_dir
    x = load_iris().data[:7].astype("float32")
    records = api.predict(run, x, top_k=2)
    assert [r["input"] for r in records] == list(range(7))
    model = api.load_model(run)
    # The same preprocessing as for an npz file of the same samples.
    np.savez(tmp_path / "x.npz", x=x)
    from_file = list(api.predict(run, tmp_path / "x.npz", top_k=2))
    assert [r["class"] for r in from_file] == [r["class"] for r in records]
    assert [r["probability"] for r in from_file] == pytest.approx([r["probability"] for r in records])
    assert all(len(r["top_k"]) == 2 for r in records)
    assert model.output_shape[-1] == 3
    assert api.evaluate(run)["metrics"]["accuracy"] > 0.5


def test_dataframe_predictions_equal_csv_file_predictions(tmp_path):
    pd = pytest.importorskip("pandas")
    pp = pytest.importorskip("palmerpenguins")
    csv = tmp_path / "penguins.csv"
    shutil.copy(Path(pp.__file__).parent / "data" / "penguins.csv", csv)
    cfg = {"name": "p", "data": {"source": "csv", "path": str(csv), "target": "species"},
           "model": {"layers": [{"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
           "train": {"epochs": 3}}
    run = api.train(cfg, output=tmp_path / "runs", progress="none").run_dir
    frame = pd.read_csv(csv).drop(columns=["species"]).head(12)
    from_frame = api.predict(run, frame)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    from_file = list(api.predict(run, [tmp_path / "rows.csv"]))
    assert [r["class"] for r in from_frame] == [r["class"] for r in from_file]
    assert [r["probability"] for r in from_frame] == pytest.approx([r["probability"] for r in from_file])
    assert len(from_frame) == 12 and from_frame[0]["input"] == 0
