"""csv / parquet at scale: each preprocessing layer adapts once, typed
reads, and `data.cache: false` streaming from disk."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app

runner = CliRunner()


def _table(path: Path, n: int = 400) -> Path:
    """Two classes told apart by x1 + x2 (large offsets and scales), a
    category column that helps, and a gap."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(1000, 50, n), rng.normal(-5, 0.01, n)
    score = (x1 - 1000) / 50 + (x2 + 5) / 0.01
    label = np.where(score > 0, "yes", "no")
    colour = np.where(score > 0, rng.choice(["red", "blue"], n, p=[0.8, 0.2]), rng.choice(["red", "blue"], n, p=[0.2, 0.8]))
    lines = ["x1,x2,colour,label"] + [f"{a:.4f},{b:.6f},{c},{y}" for a, b, c, y in zip(x1, x2, colour, label)]
    lines[5] = "," + lines[5].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    return path


CONFIG = """\
seed: 0
data: {{source: csv, path: {path}, target: label, batch_size: 32{extra}}}
model:
  layers:
    - Normalization
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: 2, activation: softmax}}
compile: {{optimizer: {{class_name: adam, config: {{learning_rate: 0.01}}}}}}
train: {{epochs: {epochs}}}
"""


def _config(tmp_path: Path, data: Path, extra: str = "", epochs: int = 1) -> Path:
    cfg = tmp_path / "t.yaml"
    cfg.write_text(CONFIG.format(path=json.dumps(str(data)), extra=extra, epochs=epochs))
    return cfg


def test_every_preprocessing_layer_adapts_once(tmp_path, monkeypatch):
    calls: Counter = Counter()
    for cls in (keras.layers.Normalization, keras.layers.StringLookup):
        original = cls.adapt

        def counted(self, *a, _original=original, **k):
            calls[self.name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(cls, "adapt", counted)
    cfg = _config(tmp_path, _table(tmp_path / "t.csv"))
    res = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    # The FeatureSpace's layers (x1, x2: Normalization; colour: StringLookup)
    # and the config's own Normalization: once each.
    assert len(calls) == 4 and set(calls.values()) == {1}, calls


def test_typed_csv_read_falls_back_when_later_rows_do_not_fit_the_first(tmp_path):
    import pyarrow as pa

    from dlcli.data.table import read_table

    path = tmp_path / "t.csv"
    rows = [f"{i},{i % 7},{i * 0.5}" for i in range(150_000)]  # well past the first block the types come from
    rows[-1] = "7,3.5,word"
    path.write_text("a,b,c\n" + "\n".join(rows) + "\n")
    t = read_table(path, float32=["a", "b"])
    assert t.column("a").type == pa.int64() and t.column("b").type == pa.float32()
    assert t.column("b")[-1].as_py() == 3.5 and t.column("c")[-1].as_py() == "word"
    path.write_text("a,b\n" + "\n".join(f"{i},{i * 0.25}" for i in range(10)) + "\n")
    t = read_table(path, float32=["b"])
    assert t.column("b").type == pa.float32() and t.column("b").to_pylist()[-1] == 2.25


def test_cache_false_streams_the_csv_from_disk_and_learns(tmp_path, monkeypatch):
    import dlcli.data.stream as stream
    import dlcli.data.table as table
    import dlcli.data.tables as tables

    data = _table(tmp_path / "t.csv", n=1200)
    blocks = Counter()
    original = table.iter_batches

    def counted(path, *a, **k):
        blocks[Path(path).name] += 1
        return original(path, *a, **k)

    monkeypatch.setattr(table, "iter_batches", counted)
    monkeypatch.setattr(stream, "BLOCK_ROWS", 100)  # blocks far smaller than the file
    monkeypatch.setattr(tables, "read_table", None)  # nothing reads the whole file
    cfg = _config(tmp_path, data, ", cache: false, shuffle_buffer: 300", epochs=10)
    res = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    assert blocks["t.csv"] > 10
    run = next((tmp_path / "runs").rglob("model.keras")).parent
    spec = json.loads((run / "data_spec.json").read_text())
    counts = spec["counts"]
    assert counts["train"] + counts["val"] + counts["test"] == 1200 and 150 < counts["test"] < 330
    res = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["accuracy"] > 0.9


def test_streamed_parquet_ordered_split_holds_out_the_last_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dlcli.config import config_from_dict
    from dlcli.data import load_data

    n = 1000
    pq.write_table(pa.table({"t": np.arange(n, dtype=np.float64), "y": np.arange(n) % 3}), tmp_path / "s.parquet",
                   row_group_size=128)
    cfg = config_from_dict({"data": {"source": "parquet", "path": str(tmp_path / "s.parquet"), "target": "y",
                                     "cache": False, "split": "ordered", "batch_size": 64},
                            "model": {"layers": [{"Dense": {"units": 3, "activation": "softmax"}}]}})
    bundle = load_data(cfg)
    assert (bundle.num_train, bundle.num_val, bundle.num_test) == (720, 80, 200)
    test_rows = np.concatenate([x["t"].numpy().ravel() for x, _ in bundle.test])
    assert test_rows.tolist() == list(range(800, 1000))
    train = [(x["t"].numpy().ravel(), y.numpy()) for x, y in bundle.train]
    assert sum(len(t) for t, _ in train) == 720 and bundle.spec.class_counts == [240, 240, 240]
    assert all((t.astype(int) % 3 == y).all() for t, y in train)  # labels travel with their rows


def _one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_streamed_bad_cell_after_the_sample_ends_the_run_naming_its_line(tmp_path, monkeypatch):
    import dlcli.data.stream as stream
    import dlcli.data.table as table

    # Types from the first ~130 rows, 100-row samples, ~130-row blocks: the
    # bad cell (line 1002) is far past all of them, met only mid-epoch.
    monkeypatch.setattr(table, "SCHEMA_BYTES", 4096)
    monkeypatch.setattr(table, "CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(stream, "SAMPLE_ROWS", 100)
    data = _table(tmp_path / "t.csv", n=1200)
    cfg = _config(tmp_path, data, ", cache: false, shuffle_buffer: 100", epochs=1)
    res = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "runs"), "--quiet"])
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "runs").rglob("model.keras")).parent
    kept = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    lines = data.read_text().splitlines()
    lines[1001] = "oops," + lines[1001].split(",", 1)[1]  # the file changed since that run
    data.write_text("\n".join(lines) + "\n")

    res = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "fresh")])
    assert res.exit_code == 1, res.output
    line = _one_error_line(res)
    assert f"{data}:1002: column 'x1' has 'oops'" in line and "no epoch had completed" in line, line

    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 1
    line = _one_error_line(res)
    assert f"{data}:1002: column 'x1'" in line and "epoch 2" in line and "checkpoint of epoch 1 is kept" in line, line
    assert {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()} == kept


def test_cache_auto_streams_only_a_file_larger_than_a_quarter_of_free_memory(tmp_path, monkeypatch):
    import dlcli.data.stream as stream
    import dlcli.data.tables as tables
    from dlcli.config import config_from_dict
    from dlcli.data import load_data

    data = _table(tmp_path / "t.csv", n=300)
    size = data.stat().st_size
    cfg = config_from_dict({"data": {"source": "csv", "path": str(data), "target": "label"},  # cache: auto
                            "model": {"layers": [{"Dense": {"units": 2, "activation": "softmax"}}]}})
    read = Counter()
    original = tables.read_table
    monkeypatch.setattr(tables, "read_table", lambda *a, **k: read.update(["whole file"]) or original(*a, **k))
    for free, streamed in ((4 * size, False), (4 * size - 1, True)):
        monkeypatch.setattr(stream, "free_memory", lambda free=free: free)
        read.clear()
        bundle = load_data(cfg)
        notes = " ".join(bundle.notes)
        assert ("streamed from disk" in notes) is streamed and (read["whole file"] == 0) is streamed, (free, notes)
        assert bundle.num_train + bundle.num_val + bundle.num_test == 300
        assert sum(len(y) for _, y in bundle.train) == bundle.num_train


def test_feature_space_adapts_through_keras_own_adapt_where_its_flags_differ(monkeypatch):
    """A Keras whose FeatureSpace lacks the flags dlcli's fast adapt sets gets
    FeatureSpace.adapt: the same adapted state."""
    import keras

    from dlcli.data import columns

    rng = np.random.default_rng(0)
    cols = {"a": (rng.normal(size=(5000, 1)) * 40 + 1000).astype("float32"),
            "b": rng.choice(["x", "y", "z"], size=(5000, 1)).astype(object)}
    states = []
    for strip in (False, True):
        fs = keras.utils.FeatureSpace(features={"a": "float_normalized", "b": "string_categorical"}, output_mode="dict")
        monkeypatch.setattr(columns, "_knows_flags", lambda fs: not strip)
        columns.adapt_feature_space(fs, cols)
        norm = fs.preprocessors["a"]
        states.append((float(np.asarray(norm.mean).ravel()[0]), list(fs.preprocessors["b"].get_vocabulary())))
        out = fs({"a": cols["a"][:4], "b": cols["b"][:4]})
        assert set(out) == {"a", "b"}
    assert states[0][0] == pytest.approx(float(cols["a"].mean()), rel=1e-5)
    assert states[0][0] == pytest.approx(states[1][0], rel=1e-5) and sorted(states[0][1]) == sorted(states[1][1])
