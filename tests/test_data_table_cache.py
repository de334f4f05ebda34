"""The parsed-CSV cache: a CSV of 1 MiB or more is parsed once; the next
read of the same, unchanged file maps the typed table instead. A changed
file, other read options, a broken or unwritable cache: parsed again,
never an error. Training twice on the same file gives the same run."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.data import table as table_mod
from dlcli.data import table_cache
from dlcli.data.table import read_table

runner = CliRunner()
FLOATS = [f"f{i}" for i in range(6)]


def _csv(path: Path, rows: int = 24_000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FLOATS)))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    with open(path, "w", encoding="ascii") as f:
        f.write(",".join(FLOATS + ["target"]) + "\n")
        np.savetxt(f, np.column_stack([x, y]), delimiter=",", fmt=["%.6f"] * len(FLOATS) + ["%d"])
    assert path.stat().st_size >= table_cache.MIN_BYTES
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DLCLI_TABLE_CACHE", str(folder))
    monkeypatch.delenv("DLCLI_TABLE_CACHE_MB", raising=False)
    return folder


def _read(path: Path, **kw):
    table = read_table(path, float32=FLOATS, **kw)
    table_cache.flush()
    return table


def _no_parse(monkeypatch):
    def parse(*a, **k):
        raise AssertionError("the CSV was parsed again")

    monkeypatch.setattr(table_mod, "_read_csv", parse)


def test_second_read_maps_the_cached_table_without_parsing(tmp_path, cache, monkeypatch):
    path = _csv(tmp_path / "a.csv")
    first = _read(path)
    files = list(cache.glob("*.arrow"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    assert first.schema.field("f0").type == "float" and first.schema.field("target").type == "int64"
    _no_parse(monkeypatch)
    again = _read(path)
    assert again.equals(first)
    assert again.schema.metadata is None  # the cache's key is not part of the table


def test_a_changed_file_or_other_read_options_parse_again(tmp_path, cache):
    path = _csv(tmp_path / "a.csv")
    first = _read(path)
    narrow = _read(path, columns=["f0", "target"])
    assert narrow.column_names == ["f0", "target"]
    assert len(list(cache.glob("*.arrow"))) == 2
    _csv(path, seed=1)  # same size and shape, other values
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    changed = _read(path)
    assert not changed.equals(first)
    assert np.allclose(changed.column("f0").to_numpy(), np.loadtxt(path, delimiter=",", skiprows=1)[:, 0])


def test_small_files_and_the_off_switch_write_nothing(tmp_path, cache, monkeypatch):
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4\n", encoding="ascii")
    assert _read(small).num_rows == 2
    assert not cache.exists()
    monkeypatch.setenv("DLCLI_TABLE_CACHE", "off")
    assert _read(_csv(tmp_path / "a.csv")).num_rows == 24_000
    assert not cache.exists()


def test_a_broken_cache_file_is_parsed_again_and_replaced(tmp_path, cache):
    path = _csv(tmp_path / "a.csv")
    first = _read(path)
    (file,) = cache.glob("*.arrow")
    file.write_bytes(b"not an arrow file" * 100)
    assert _read(path).equals(first)
    assert table_cache.load(file.stem).equals(first)  # rewritten


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would be", encoding="utf-8")
    monkeypatch.setenv("DLCLI_TABLE_CACHE", str(blocker / "tables"))
    assert _read(_csv(tmp_path / "a.csv")).num_rows == 24_000


def test_least_recently_used_tables_go_first_within_the_budget(tmp_path, cache, monkeypatch):
    a, b, c = (_csv(tmp_path / f"{n}.csv", seed=i) for i, n in enumerate("abc"))
    _read(a)
    size = next(cache.glob("*.arrow")).stat().st_size
    monkeypatch.setenv("DLCLI_TABLE_CACHE_MB", str(2.5 * size / (1 << 20)))
    _read(b)
    key = {p: table_cache.cache_key(p, None, None, FLOATS) for p in (a, b, c)}
    os.utime(cache / f"{key[b]}.arrow", (1, 1))  # b: not used for a long time
    _read(c)
    kept = {p.stem for p in cache.glob("*.arrow")}
    assert kept == {key[a], key[c]}
    monkeypatch.setenv("DLCLI_TABLE_CACHE_MB", str(0.5 * size / (1 << 20)))
    _read(_csv(tmp_path / "d.csv", seed=3))  # larger than the whole budget: not kept
    assert {p.stem for p in cache.glob("*.arrow")} == kept


@pytest.mark.slow
def test_training_twice_on_a_cached_csv_gives_the_same_run(tmp_path, cache):
    path = _csv(tmp_path / "data.csv", rows=30_000)
    config = tmp_path / "c.yaml"
    config.write_text(
        "seed: 3\n"
        "data: {source: csv, path: data.csv, target: target, batch_size: 512}\n"
        "model: {layers: [{Dense: {units: 8, activation: relu}}, {Dense: {units: 2, activation: softmax}}]}\n"
        "compile: {optimizer: {class_name: adam, config: {learning_rate: 0.01}}}\n"
        "train: {epochs: 2}\n", encoding="utf-8")
    results = []
    for i in range(2):
        res = runner.invoke(app, ["train", str(config), "--output", str(tmp_path / f"runs{i}"), "--quiet"])
        assert res.exit_code == 0, res.output
        table_cache.flush()
        assert len(list(cache.glob("*.arrow"))) == 1
        run = next((tmp_path / f"runs{i}").rglob("model.keras")).parent
        with open(run / "history.csv", encoding="utf-8") as f:
            results.append(list(csv.DictReader(f)))
    assert [{k: v for k, v in r.items() if "time" not in k} for r in results[0]] == \
        [{k: v for k, v in r.items() if "time" not in k} for r in results[1]]
    assert float(results[1][-1]["val_accuracy"]) > 0.9
    assert path.exists()


def test_dlcli_cache_lists_and_clears_the_cached_tables(tmp_path, cache):
    path = _csv(tmp_path / "a.csv")
    _read(path)
    res = runner.invoke(app, ["cache", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert listed["folder"] == str(cache) and listed["budget_bytes"] == table_cache.DEFAULT_BUDGET_MB << 20
    (entry,) = listed["tables"]
    assert entry["source"] == str(path.resolve()) and entry["rows"] == 24_000 and entry["columns"] == 7
    assert entry["bytes"] == listed["bytes"] == next(cache.glob("*.arrow")).stat().st_size
    res = runner.invoke(app, ["cache"])
    assert res.exit_code == 0 and "a.csv" in res.stdout and "24,000" in res.stdout
    res = runner.invoke(app, ["cache", "--clear", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["removed"] == 1
    assert not list(cache.glob("*.arrow"))
    assert json.loads(runner.invoke(app, ["cache", "--json"]).stdout)["tables"] == []


def test_dlcli_cache_when_the_cache_is_off(monkeypatch):
    monkeypatch.setenv("DLCLI_TABLE_CACHE", "off")
    for args in (["cache"], ["cache", "--clear"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "off" in res.stderr and res.stdout == ""


def test_dlcli_cache_says_when_nothing_is_cached(cache):
    res = runner.invoke(app, ["cache"])
    assert res.exit_code == 0 and res.stdout == "" and "no cached tables" in res.stderr and str(cache) in res.stderr
