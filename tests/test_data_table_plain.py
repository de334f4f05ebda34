"""A CSV of plain numbers is parsed without quoting or missing-value
markers (a quarter less work for pyarrow); the table is the same as the
full parse gives, whatever the rows after the first ones hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlcli.data.table as table
from dlcli.errors import DataError

PLAIN = table._read_plain


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    # Types and the plain check from the first ~100 rows; several blocks a file.
    monkeypatch.setattr(table, "SCHEMA_BYTES", 4096)
    monkeypatch.setattr(table, "READ_BLOCK_BYTES", 16384)
    monkeypatch.setenv("DLCLI_TABLE_CACHE", "off")


def _csv(path: Path, last: str = "", first: str = "", rows: int = 3000) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    lines = ["a,b,n"] + [f"{u:.6f},{v:.6f},{i}" for i, (u, v) in enumerate(x)]
    if first:
        lines[2] = first
    if last:
        lines[-1] = last
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_both(path: Path, monkeypatch, **kw):
    """(the table read_table gives, whether the plain parse gave it, the
    table of the full parse alone)."""
    used = []

    def spy(*a):
        out = PLAIN(*a)
        used.append(out is not None)
        return out

    monkeypatch.setattr(table, "_read_plain", spy)
    got = table.read_table(path, **kw)
    monkeypatch.setattr(table, "_read_plain", lambda *a: None)
    full = table.read_table(path, **kw)
    return got, any(used), full


def test_plain_numbers_take_the_plain_parse_and_give_the_full_parse_table(tmp_path, monkeypatch):
    import pyarrow as pa

    path = _csv(tmp_path / "t.csv", last="1.5,2.5,7")
    got, plain, full = _read_both(path, monkeypatch, float32=["a", "b"])
    assert plain and got.equals(full)
    assert got.num_rows == 3000 and got.schema.types == [pa.float32(), pa.float32(), pa.int64()]
    assert got.slice(2999).to_pylist() == [{"a": 1.5, "b": 2.5, "n": 7}]
    got, plain, full = _read_both(path, monkeypatch, columns=["b", "n"])
    assert plain and got.equals(full) and got.column_names == ["b", "n"]


@pytest.mark.parametrize("last, row", [
    ("nan,1,2", {"a": None, "b": 1.0, "n": 2}),      # NaN text is a gap, as in the full parse
    ("NA,1,2", {"a": None, "b": 1.0, "n": 2}),
    (",1,2", {"a": None, "b": 1.0, "n": 2}),
    ('"3.5",1,2', {"a": 3.5, "b": 1.0, "n": 2}),      # a quoted number
    ("1,2,?", {"a": 1.0, "b": 2.0, "n": None}),       # a marker in a whole-number column
    ("1,2,3.5", {"a": 1.0, "b": 2.0, "n": 3.5}),      # a fraction there: read as floats
    ('"1,5",1,2', {"a": "1,5", "b": 1.0, "n": 2}),    # a quoted delimiter: a text column
])
def test_a_later_row_that_is_not_plain_reads_as_the_full_parse(tmp_path, monkeypatch, last, row):
    got, plain, full = _read_both(_csv(tmp_path / "t.csv", last=last), monkeypatch)
    assert not plain and got.equals(full)
    assert got.slice(2999).to_pylist() == [row]


@pytest.mark.parametrize("first", ['"0.5",1,1', "0.5,,1", "0.5,1,x"])
def test_first_rows_with_quotes_gaps_or_text_skip_the_plain_parse(tmp_path, monkeypatch, first):
    got, plain, full = _read_both(_csv(tmp_path / "t.csv", first=first), monkeypatch)
    assert not plain and got.equals(full) and got.num_rows == 3000


def test_a_short_row_after_the_first_rows_is_named_by_its_line(tmp_path, monkeypatch):
    path = _csv(tmp_path / "t.csv", last="1,2")
    with pytest.raises(DataError) as err:
        table.read_table(path)
    assert f"{path}:3001: Expected 3 columns, got 2" in str(err.value)
