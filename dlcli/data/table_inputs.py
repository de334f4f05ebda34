"""Predict-time reader of CSV / Parquet rows (the registry's `table`
reader): blocks of rows read by pyarrow, parsed with vectorised compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlcli.data.inputs import _Block, _cut, _standardize
from dlcli.data.spec import DataSpec
from dlcli.errors import DataError

_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|nan)\s*$"
_BLOCK_ROWS = 8192


def _needed(spec: DataSpec) -> list[str]:
    return [c.name for c in spec.columns] if spec.columns else list(spec.features or [])


def _bare_model_columns(spec: DataSpec, names: list[str], path: Path) -> None:
    """A bare .keras file (no data_spec.json) takes every column of a CSV
    as its features, if there are as many as its input width."""
    width = (spec.input_shape or [None])[-1]
    if width is None or len(names) != width or len(spec.input_shape or []) != 1:
        raise DataError(
            f"{path} has {len(names)} column(s), but the model (a .keras file without a run folder's "
            f"data_spec.json) takes {width} value(s) per row",
            hint="pass a CSV with exactly its input columns, in training order, or predict with the run folder",
        )
    spec.features = list(names)


def check_table(spec: DataSpec, path: Path) -> None:
    """The table has every feature column the model was trained on."""
    from dlcli.data._util import did_you_mean
    from dlcli.data.table import header

    names = header(path, encoding=spec.encoding)
    if spec.inferred and not _needed(spec):
        _bare_model_columns(spec, names, path)
    missing = [c for c in _needed(spec) if c not in names]
    if missing:
        hints = [h for h in (did_you_mean(c, names) for c in missing) if h]
        raise DataError(
            f"{path} lacks the feature column(s) {', '.join(map(repr, missing))} the model was trained on"
            + (f" ({'; '.join(hints)})" if hints else "")
        )


def table_records(spec: DataSpec, path: Path) -> Iterator[_Block]:
    """Blocks of rows read by pyarrow (CSV cells as text, parsed per column
    with vectorised compute): the model's raw columns (FeatureSpace models)
    or encoded, standardised vectors (models trained on feature vectors).
    A row with a word in a numeric column becomes an error entry."""
    import pyarrow as pa

    from dlcli.data.table import is_parquet, iter_batches, read_schema

    cols = _needed(spec)
    schema = read_schema(path, encoding=spec.encoding)
    if not is_parquet(path):
        schema = pa.schema([pa.field(n, pa.string()) for n in schema.names])
    batches = iter_batches(path, schema, encoding=spec.encoding, columns=cols, rows=_BLOCK_ROWS)
    if spec.window:
        yield from _window_records(spec, path, batches, 1 if is_parquet(path) else 2)
        return
    start = 0
    for batch in batches:
        x, bad = (_raw_columns if spec.columns else _vectors)(spec, batch)
        line0 = start + (1 if is_parquet(path) else 2)
        keep = np.flatnonzero(bad < 0)
        names = [f"{path}:{line0 + i}" for i in keep]
        errors = [(int(np.searchsorted(keep, i)), f"{path}:{line0 + i}", msg) for i, msg in _row_errors(batch, bad, cols)]
        yield _Block(names, _cut(x, keep) if len(keep) != len(bad) else x, errors)
        start += batch.num_rows


def _window_records(spec: DataSpec, path: Path, batches: Iterator[Any], first_line: int) -> Iterator[_Block]:
    """Windows over all the file's rows, each named by its last row's line;
    a window holding a row the model cannot take is an error entry."""
    from dlcli.data.window import predict_windows

    parts, bads = [], []
    for batch in batches:
        x, bad = _raw_columns(spec, batch)
        parts.append(np.concatenate([x[c.name] for c in spec.columns], axis=1))
        bads.append(bad >= 0)
    if not parts:
        return
    rows = np.concatenate(parts).astype(np.float32)
    for x, last, broken in predict_windows(spec, rows, np.concatenate(bads)):
        keep = np.flatnonzero(~broken)
        names = [f"{path}:{first_line + int(last[i])}" for i in keep]
        errors = [(int(np.searchsorted(keep, i)), f"{path}:{first_line + int(last[i])}",
                   "the window holds a row with a value that is not a number") for i in np.flatnonzero(broken)]
        yield _Block(names, x[keep], errors)


def _numbers(col: Any) -> tuple[np.ndarray, np.ndarray]:
    """A column as float64 (gaps NaN) and the mask of cells that are not numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False), np.zeros(len(col), bool)
    from dlcli.data.table import NULL_VALUES

    missing = pc.or_(pc.is_null(col), pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(col), value_set=pa.array(NULL_VALUES)), True))
    ok = pc.fill_null(pc.match_substring_regex(col, _NUMBER, ignore_case=True), False)
    clean = pc.if_else(ok, pc.utf8_trim_whitespace(col), pa.scalar(None, pa.string()))
    values = clean.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return values, (~ok.to_numpy(zero_copy_only=False)) & ~missing.to_numpy(zero_copy_only=False)


def _raw_columns(spec: DataSpec, batch: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import pyarrow.compute as pc

    bad = np.full(batch.num_rows, -1)
    out = {}
    for j, c in enumerate(spec.columns):
        col = batch.column(c.name)
        if c.dtype == "string":
            arr = pc.fill_null(col.cast("string"), str(c.fill)).to_numpy(zero_copy_only=False).astype(object)
        else:
            values, wrong = _numbers(col)
            if c.dtype == "int64":
                wrong |= np.isfinite(values) & (values != np.floor(values))
            values = np.where(np.isnan(values), float(c.fill if c.fill is not None else 0), values)
            bad[wrong & (bad < 0)] = j
            arr = values.astype(c.dtype)
        out[c.name] = arr.reshape(-1, 1)
    return out, bad


def _vectors(spec: DataSpec, batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors as the vector sources made them: numeric columns,
    one-hot blocks over the training categories, then standardised."""
    import pyarrow.compute as pc

    bad = np.full(batch.num_rows, -1)
    parts = []
    categories = spec.categorical or {}
    for j, name in enumerate(spec.features or []):
        col = batch.column(name)
        if name in categories:
            cats = categories[name]
            text = pc.utf8_trim_whitespace(col.cast("string"))
            idx = pc.fill_null(pc.index_in(text, value_set=pa_array(cats)), -1).to_numpy(zero_copy_only=False)
            present = ~pc.is_null(text).to_numpy(zero_copy_only=False)
            bad[present & (idx < 0) & (bad < 0)] = j
            parts.append((idx[:, None] == np.arange(len(cats))[None, :]).astype(np.float32))
        else:
            values, wrong = _numbers(col)
            bad[wrong & (bad < 0)] = j
            parts.append(values[:, None])
    x = np.concatenate(parts, axis=1) if parts else np.zeros((batch.num_rows, 0))
    return _standardize(spec, x), bad


def pa_array(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())


def _row_errors(batch: Any, bad: np.ndarray, cols: list[str]) -> Iterator[tuple[int, str]]:
    for i in np.flatnonzero(bad >= 0):
        name = cols[int(bad[i])]
        value = batch.column(name)[int(i)].as_py()
        yield int(i), f"column {name!r} has {value!r}, which the model cannot take (a number or a training category)"


