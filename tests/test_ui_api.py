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


@pytest.mark.slow
def test_tune_runs_a_study_that_the_cli_resumes(tmp_path, runner, app, capfd):
    pytest.importorskip("optuna")
    study = IRIS.replace("train: {epochs: 5}", "train: {epochs: 1}") + (
        "tune:\n  metric: val_accuracy\n  trials: 1\n  sampler: random\n  space:\n"
        "    compile.optimizer.config.learning_rate: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
    )
    (tmp_path / "study.yaml").write_text(study, encoding="utf-8")
    notes: list[str] = []
    result = api.tune(tmp_path / "study.yaml", output=tmp_path / "runs", say=notes.append)
    summary = result.summary
    assert result.study_dir == tmp_path / "runs" / "iris" / "tune"
    assert summary["trials_done"] == 1 and len(notes) == 1 and "trial 0" in notes[0]
    assert [t["state"] for t in summary["trials"]] == ["complete"]
    best = summary["best"]
    assert Path(best["config"]).is_file() and (Path(best["run_dir"]) / "model.keras").is_file()
    assert "trial 0" not in capfd.readouterr().err  # the notes went to `say`, not to stderr
    # `dlcli tune` goes through api.tune: it joins the same study.
    out = runner.invoke(app, ["tune", str(tmp_path / "study.yaml"), "--output", str(tmp_path / "runs"),
                              "--trials", "2", "--json"])
    assert out.exit_code == 0, out.stderr
    import json

    again = json.loads(out.stdout)
    assert again["trials_done"] == 2 and again["study_dir"] == str(result.study_dir)
    assert [t["number"] for t in again["trials"]][:1] == [t["number"] for t in summary["trials"]]
