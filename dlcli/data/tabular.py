"""Files of arrays and tables: `npz` and `csv` sources, and the column
encoding that predict repeats.

CSV is read with the `csv` module (no pandas). A column is numeric when
most of its non-empty values parse as numbers; a value that does not parse
in a numeric column is an error naming its line, and empty / NA values are
filled with the training mean. Numeric columns are standardised with the
training split's mean and std; string columns are one-hot encoded over the
sorted categories seen in the file. The spec records all of it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from dlcli.data._util import cfg_error, did_you_mean, short_list
from dlcli.data.arrays import ArraySet, finish
from dlcli.data.bundle import DataBundle
from dlcli.data.labels import loss_label_mode
from dlcli.errors import DataError

MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}


def _data_path(cfg: Any, kind: str, suffixes: Sequence[str]) -> Path:
    if not cfg.data.path:
        raise cfg_error(cfg, "data.path", f"data.source {kind} needs data.path: the {kind} file to read")
    path = Path(cfg.data.path).expanduser()
    if not path.exists():
        raise cfg_error(cfg, "data.path", f"{path} does not exist")
    if not path.is_file():
        raise cfg_error(cfg, "data.path", f"{path} is not a file (data.source {kind} reads one {' / '.join(suffixes)} file)")
    return path


# --------------------------------------------------------------------- csv

def read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Open a CSV file: its header and an iterator of (line number, row).

    The delimiter (`,` `;` tab `|`) is sniffed from the first lines; a
    UTF-8 byte-order mark is dropped.

    Raises:
        DataError: the file is empty or unreadable.
    """
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    sample = f.read(64 * 1024)
    f.seek(0)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(f, dialect)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise DataError(f"{path} is empty: a CSV source needs a header line and rows") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        f.close()
        raise DataError(f"cannot read {path} as CSV: {exc}") from None
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        with f:
            try:
                for row in reader:
                    if not row or all(not v.strip() for v in row):
                        continue
                    if len(row) != len(header):
                        raise DataError(
                            f"{path}:{reader.line_num}: {len(row)} fields, but the header has {len(header)}"
                        )
                    yield reader.line_num, [v.strip() for v in row]
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"{path}:{reader.line_num}: cannot read the row: {exc}") from None

    return header, rows()


def _to_float(v: str) -> Optional[float]:
    try:
        out = float(v)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _is_missing(v: str) -> bool:
    return v.strip().lower() in MISSING


def csv_source(cfg: Any) -> DataBundle:
    """A CSV file with a header: `data.target` is the label column,
    `data.features` (default: every other column) the inputs.

    Raises:
        ConfigError: no `data.target`, or target / feature columns missing
            from the file (with the closest names).
        DataError: unreadable rows, a non-numeric value in a numeric column
            (naming the line), or an empty target.
    """
    path = _data_path(cfg, "csv", (".csv",))
    header, rows = read_csv(path)
    target = cfg.data.target
    if not target:
        raise cfg_error(cfg, "data.target", "data.source csv needs data.target: the label column",
                        hint=f"the columns of {path.name} are {short_list(header, 12)}")
    if target not in header:
        raise cfg_error(cfg, "data.target", f"no column {target!r} in {path}",
                        hint=did_you_mean(target, header) or f"columns are {short_list(header, 12)}")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path}: the header repeats column(s) {', '.join(map(repr, dup))}")
    features = list(cfg.data.features) if cfg.data.features else [h for h in header if h != target]
    missing = [c for c in features if c not in header]
    if missing:
        hints = [h for h in (did_you_mean(c, header) for c in missing) if h]
        raise cfg_error(cfg, "data.features", f"column(s) {', '.join(map(repr, missing))} not in {path}",
                        hint="; ".join(hints) if hints else f"columns are {short_list(header, 12)}")
    if target in features:
        raise cfg_error(cfg, "data.features", f"the target column {target!r} cannot also be a feature")
    if not features:
        raise cfg_error(cfg, "data.features", f"{path} has no feature columns besides {target!r}")

    cols = {c: i for i, c in enumerate(header)}
    lines: list[int] = []
    table: list[list[str]] = []
    labels: list[str] = []
    for line, row in rows:
        lines.append(line)
        table.append([row[cols[c]] for c in features])
        labels.append(row[cols[target]])
    if not table:
        raise DataError(f"{path} has a header but no rows")

    numeric, categorical = _column_kinds(path, features, table, lines)
    mode = loss_label_mode(cfg.compile.loss)
    empty = [lines[i] for i, v in enumerate(labels) if _is_missing(v)]
    if empty:
        raise DataError(f"{path}:{empty[0]}: the target column {target!r} is empty"
                        + (f" ({len(empty)} rows)" if len(empty) > 1 else ""))
    as_numbers = [_to_float(v) for v in labels]
    all_numeric = all(v is not None for v in as_numbers)
    regression = mode == "float" or (
        mode is None and all_numeric and any(v != int(v) for v in as_numbers)  # type: ignore[arg-type]
    )
    if regression:
        bad = next((i for i, v in enumerate(as_numbers) if v is None), None)
        if bad is not None:
            raise DataError(f"{path}:{lines[bad]}: target {target!r} is {labels[bad]!r}, not a number "
                            f"({cfg.compile.loss!s} is a regression loss)")
        y = np.asarray(as_numbers, np.float32)
        class_names = None
    else:
        if all_numeric and all(v == int(v) for v in as_numbers):  # type: ignore[arg-type]
            # Integer labels sort as numbers: 2 before 10.
            values = sorted({int(v) for v in as_numbers}, key=int)  # type: ignore[arg-type]
            class_names = [str(v) for v in values]
            index = {v: i for i, v in enumerate(values)}
            y = np.asarray([index[int(v)] for v in as_numbers], np.int64)  # type: ignore[arg-type]
        else:
            class_names = sorted(set(labels))
            index = {v: i for i, v in enumerate(class_names)}
            y = np.asarray([index[v] for v in labels], np.int64)

    categories = {c: sorted({r[features.index(c)] for r in table if not _is_missing(r[features.index(c)])})
                  for c in categorical}
    x, n_missing = encode_table(path, features, numeric, categories, table, lines)
    notes = [f"{path.name}: column {c!r} has {n} missing value(s), filled with the training mean"
             for c, n in n_missing.items() if n]
    s = ArraySet(
        source="csv", x=x, y=y, class_names=class_names, kind="vector",
        standardize=_numeric_mask(features, numeric, categories),
        spec={
            "path": str(path),
            "target": target,
            "features": features,
            "numeric": numeric,
            "categorical": categories,
            "feature_names": _encoded_names(features, numeric, categories),
        },
        notes=notes,
    )
    return finish(cfg, s)


def _column_kinds(path: Path, features: list[str], table: list[list[str]], lines: list[int]) -> tuple[list[str], list[str]]:
    """Split the feature columns into numeric and categorical.

    Raises:
        DataError: a mostly-numeric column holding a word (its first line).
    """
    numeric, categorical = [], []
    for j, c in enumerate(features):
        present = [(i, r[j]) for i, r in enumerate(table) if not _is_missing(r[j])]
        if not present:
            raise DataError(f"{path}: column {c!r} is empty in every row")
        bad = [(i, v) for i, v in present if _to_float(v) is None]
        if len(bad) * 2 < len(present):
            if bad:
                i, v = bad[0]
                more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
                raise DataError(f"{path}:{lines[i]}: column {c!r} is numeric but has {v!r}{more}")
            numeric.append(c)
        else:
            categorical.append(c)
    return numeric, categorical


def encode_table(
    path: Any,
    features: list[str],
    numeric: list[str],
    categories: dict[str, list[str]],
    table: Iterable[list[str]],
    lines: Sequence[Any],
) -> tuple[np.ndarray, dict[str, int]]:
    """Encode rows of feature strings into float32 vectors.

    Numeric columns give one value each (missing: NaN, which
    standardisation turns into the training mean); categorical columns a
    one-hot block over
    `categories[column]`. Columns keep the order of `features`.

    Returns:
        The (rows, width) array and the count of missing values per column.

    Raises:
        DataError: a non-numeric value in a numeric column, or a category
            not seen in training (naming the line).
    """
    numeric_set = set(numeric)
    missing = {c: 0 for c in numeric}
    out = []
    for row, line in zip(table, lines):
        vec: list[float] = []
        for c, v in zip(features, row):
            if c in numeric_set:
                if _is_missing(v):
                    missing[c] += 1
                    vec.append(math.nan)
                    continue
                f = _to_float(v)
                if f is None:
                    raise DataError(f"{path}:{line}: column {c!r} is numeric but has {v!r}")
                vec.append(f)
            else:
                cats = categories[c]
                block = [0.0] * len(cats)
                if not _is_missing(v):
                    try:
                        block[cats.index(v)] = 1.0
                    except ValueError:
                        raise DataError(
                            f"{path}:{line}: column {c!r} has {v!r}, not a category seen in training "
                            f"({short_list(cats)})"
                        ) from None
                vec.extend(block)
        out.append(vec)
    width = sum(1 if c in numeric_set else len(categories[c]) for c in features)
    return np.asarray(out, np.float32).reshape(-1, width), missing


def _numeric_mask(features: list[str], numeric: list[str], categories: dict[str, list[str]]) -> list[bool]:
    mask: list[bool] = []
    for c in features:
        mask.extend([True] if c in numeric else [False] * len(categories[c]))
    return mask


def _encoded_names(features: list[str], numeric: list[str], categories: dict[str, list[str]]) -> list[str]:
    names: list[str] = []
    for c in features:
        names.extend([c] if c in numeric else [f"{c}={v}" for v in categories[c]])
    return names
