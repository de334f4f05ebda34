"""csv / parquet end to end: the shipped structured and forecasting
configs, text columns, encodings, Parquet, several targets, explicit and
ordered splits, paths relative to the config file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import config_from_dict, load_config
from dlcli.data import load_data
from dlcli.data.demo_tables import write_penguins_csv, write_weather_csv

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
runner = CliRunner()


def _cli(*args: str):
    res = runner.invoke(app, list(args))
    return res


def _shipped(tmp_path: Path, name: str) -> Path:
    """A shipped config copied beside its generated data, in data/."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(CONFIGS / name, folder / name)
    write_penguins_csv(folder / "data" / "penguins.csv")
    write_weather_csv(folder / "data" / "weather.csv")
    return folder / name


def _run_dir(out: Path) -> Path:
    return next(p for p in out.rglob("model.keras")).parent


@pytest.mark.slow
def test_structured_penguins_config_trains_evaluates_and_predicts_raw_rows(tmp_path, monkeypatch):
    config = _shipped(tmp_path, "structured_penguins.yaml")
    monkeypatch.chdir(tmp_path)  # not the config's folder: its paths still resolve
    res = _cli("train", str(config), "--output", str(tmp_path / "runs"), "--epochs", "12")
    assert res.exit_code == 0, res.output
    run = _run_dir(tmp_path / "runs")
    saved = load_config(run / "config.yaml")
    assert saved.data.path == str((config.parent / "data" / "penguins.csv").resolve())
    spec = json.loads((run / "data_spec.json").read_text())
    assert {c["name"]: c["type"] for c in spec["columns"]}["body_mass_g"] == "float_discretized"
    assert {c["name"]: c["input"] for c in spec["columns"]}["sex"] == "context"
    monkeypatch.chdir(run)  # evaluate and predict from anywhere
    res = _cli("evaluate", str(run), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["accuracy"] > 0.9
    rows = tmp_path / "rows.csv"
    rows.write_text("island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
                    "Biscoe,47.5,14.9,217,5100,female,2008\n"
                    "Torgersen,39.1,18.7,181,3750,NA,2007\n"
                    "Dream,49.5,19.0,200,big,male,2009\n")
    res = _cli("predict", str(run), str(rows), "--json")
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o.get("class") for o in out[:2]] == ["Gentoo", "Adelie"]
    assert out[2]["input"].endswith("rows.csv:4") and "'body_mass_g'" in out[2]["error"]


@pytest.mark.slow
def test_forecast_weather_config_beats_the_naive_forecast(tmp_path):
    config = _shipped(tmp_path, "forecast_weather.yaml")
    res = _cli("train", str(config), "--output", str(tmp_path / "runs"), "--epochs", "5")
    assert res.exit_code == 0, res.output
    run = _run_dir(tmp_path / "runs")
    res = _cli("evaluate", str(run), "--json")
    assert res.exit_code == 0, res.output
    temp = np.loadtxt(config.parent / "data" / "weather.csv", delimiter=",", skiprows=1)[:, 2]
    test = temp[int(len(temp) * 0.85):]
    naive = np.abs(test[12:] - test[:-12]).mean()  # tomorrow is like today
    assert json.loads(res.stdout)["metrics"]["mae"] < naive / 2
    recent = tmp_path / "recent.csv"
    lines = (config.parent / "data" / "weather.csv").read_text().splitlines()
    recent.write_text("\n".join(lines[:61]) + "\n")  # 60 rows: windows of 47 rows end at rows 47..60
    res = _cli("predict", str(run), str(recent), "--json")
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 60 - 46 and out[0]["input"].endswith("recent.csv:48")
    assert all(abs(o["value"] - 8) < 12 for o in out)


def _reviews(path: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "boring", "bad", "dull"]
    lines = ["review,stars,label"]
    for i in range(n):
        words = rng.choice(good if i % 2 else bad, 3).tolist() + rng.choice(["film", "plot", "cast", "story"], 2).tolist()
        lines.append(f"{' '.join(rng.permutation(words))} number {i},{rng.integers(1, 6)},{'pos' if i % 2 else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_free_text_column_needs_a_type_and_trains_as_raw_strings(tmp_path):
    data = _reviews(tmp_path / "reviews.csv")
    cfg = tmp_path / "text.yaml"
    cfg.write_text(f"""\
data: {{source: csv, path: {data.name}, target: label, features: [review], validation_split: 0.2, test_split: 0.0}}
model:
  layers:
    - TextVectorization: {{max_tokens: 50, output_sequence_length: 6}}
    - Embedding: {{input_dim: 50, output_dim: 8}}
    - GlobalAveragePooling1D
    - Dense: {{units: 2, activation: softmax}}
compile: {{optimizer: {{class_name: adam, config: {{learning_rate: 0.05}}}}}}
train: {{epochs: 8}}
""")
    res = _cli("train", str(cfg), "--output", str(tmp_path / "runs"))
    assert res.exit_code == 2 and not (tmp_path / "runs").exists()
    assert "looks like free text" in res.stderr and "column_types.review: text" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _cli("train", str(cfg), "--output", str(tmp_path / "runs"), "--set", "data.column_types={review: text}", "--json")
    assert res.exit_code == 0, res.output
    run = _run_dir(tmp_path / "runs")
    rows = tmp_path / "new.csv"
    rows.write_text("review\ngreat superb film\nawful dull plot\n")
    res = _cli("predict", str(run), str(rows), "--json")
    assert [json.loads(line)["class"] for line in res.stdout.splitlines()] == ["pos", "neg"]


def test_non_utf8_csv_names_the_line_or_reads_with_data_encoding(tmp_path):
    lines = ["city,temp,label"] + [f"{c},{i},{i % 2}" for i, c in enumerate(["Oslo", "Bergen"] * 10)]
    lines[7] = "Malm\xf6,7,1"
    path = tmp_path / "t.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: {source: csv, path: t.csv, target: label}\nmodel: {layers: [{Dense: {units: 2, activation: softmax}}]}\n")
    res = _cli("train", str(cfg), "--output", str(tmp_path / "runs"))
    assert res.exit_code == 2 and not (tmp_path / "runs").exists()
    assert f"{path}:8: not valid utf-8 text (byte 0xf6)" in res.stderr and "data.encoding" in res.stderr
    b = load_data(load_config(cfg, ["data.encoding=latin-1"]))
    cities = {v for x, _ in b.train for v in x["city"].numpy()[:, 0].tolist()}
    assert "Malmö".encode() in cities


def test_parquet_source_and_parquet_predict_inputs(tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    csv_path = write_penguins_csv(tmp_path / "p.csv")
    table = pcsv.read_csv(csv_path, convert_options=pcsv.ConvertOptions(null_values=["NA"], strings_can_be_null=True))
    pq.write_table(table, tmp_path / "p.parquet")
    cfg = config_from_dict({"data": {"source": "parquet", "path": str(tmp_path / "p.parquet"), "target": "species"},
                            "model": {"layers": [{"Dense": {"units": 3, "activation": "softmax"}}]}})
    b = load_data(cfg)
    assert b.num_train + b.num_val + b.num_test == 344 and b.class_names == ["Adelie", "Chinstrap", "Gentoo"]
    from dlcli.data import load_inputs

    names, x, errors = next(iter(load_inputs(b.spec, [str(tmp_path / "p.parquet")], 400)))
    assert len(names) == 344 and not errors and x["sex"].dtype == object
    assert (x["sex"] == "(missing)").sum() == 11  # the NA cells, filled as in training


def test_several_targets_and_sample_weight(tmp_path):
    path = write_penguins_csv(tmp_path / "p.csv")
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0] + ",w"] + [f"{r},{1 + i % 2}" for i, r in enumerate(text[1:])]) + "\n")
    cfg = config_from_dict({
        "data": {"source": "csv", "path": str(path), "target": ["species", "year"], "sample_weight": "w",
                 "features": ["island", "bill_length_mm", "flipper_length_mm"]},
        "model": {"layers": [{"Dense": {"units": 3, "activation": "softmax"}, "name": "species"},
                             {"Dense": {"units": 1}, "name": "year", "inputs": "input"}],
                  "outputs": ["species", "year"]},
        "compile": {"loss": {"species": "sparse_categorical_crossentropy", "year": "mse"}, "metrics": []},
    })
    b = load_data(cfg)
    x, y, w = next(iter(b.train))
    assert set(y) == {"species", "year"} and set(np.unique(w.numpy())) <= {1.0, 2.0}
    assert [o.name for o in b.spec.outputs] == ["species", "year"]
    assert b.spec.outputs[0].class_names == ["Adelie", "Chinstrap", "Gentoo"] and b.spec.outputs[1].task == "regression"


def test_validation_and_test_paths_and_ordered_split(tmp_path):
    rows = lambda a, b: "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(a, b))  # noqa: E731
    (tmp_path / "train.csv").write_text(rows(0, 50))
    (tmp_path / "val.csv").write_text(rows(100, 110))
    (tmp_path / "test.csv").write_text(rows(200, 207))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {source: csv, path: train.csv, target: label, validation_path: val.csv, test_path: test.csv}\n"
                   "model: {layers: [{Dense: {units: 2, activation: softmax}}]}\n")
    b = load_data(load_config(cfg))
    assert (b.num_train, b.num_val, b.num_test) == (50, 10, 7)
    assert sorted(v for x, _ in b.val for v in x["a"].numpy()[:, 0].tolist()) == list(range(100, 110))
    ordered = load_data(config_from_dict({"data": {"source": "csv", "path": str(tmp_path / "train.csv"), "target": "label",
                                                   "split": "ordered", "validation_split": 0.2, "test_split": 0.1},
                                          "model": {"layers": [{"Dense": {"units": 2}}]}}))
    tail = [v for x, _ in ordered.test for v in x["a"].numpy()[:, 0].tolist()]
    val = [v for x, _ in ordered.val for v in x["a"].numpy()[:, 0].tolist()]
    assert tail == list(range(45, 50)) and val == list(range(36, 45))


def test_relative_paths_follow_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    (tmp_path / "sub" / "x.yaml").write_text("data: {source: csv, path: t.csv, target: label}\n"
                                             "model: {layers: [{Dense: {units: 2}}]}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("sub/x.yaml")
    assert cfg.data.path == str(tmp_path / "sub" / "t.csv")
    assert load_data(cfg).num_train > 0
    # --set values are relative to the current directory.
    assert load_config("sub/x.yaml", ["data.path=sub/t.csv"]).data.path == str(tmp_path / "sub" / "t.csv")
