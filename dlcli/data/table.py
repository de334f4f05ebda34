"""Reading CSV and Parquet files with pyarrow.

`read_table` reads a whole file into a typed `pyarrow.Table` (CSV parsed
by pyarrow's multithreaded reader, no Python per cell); `iter_batches`
streams record batches of a file with a fixed schema, for files larger than
memory. Empty cells and the usual missing-value markers (NA, NaN, null,
?, ...) are nulls. A CSV that is not valid in its encoding (UTF-8 unless
`data.encoding` says otherwise) is an error naming the line.
"""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from dlcli.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING = ("", "na", "nan", "n/a", "null", "none", "?")
# Bytes of CSV text per block pyarrow parses (one thread a block): a
# stream's blocks, and a whole file's (fewer, larger blocks: less per-block
# work and allocation, still several blocks a thread on a file worth it).
CSV_BLOCK_BYTES = 1 << 20
READ_BLOCK_BYTES = 4 << 20
# The first bytes of a CSV whose rows decide its column types.
SCHEMA_BYTES = 1 << 18
NULL_VALUES = sorted({v for m in MISSING for v in (m, m.upper(), m.title())})


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _delimiter(path: Path, encoding: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as f:
        sample = f.read(16 * 1024)
    # The sniffer is slow on long samples: the first lines decide.
    text = "\n".join(sample.decode(encoding, errors="replace").splitlines()[:20])
    first = text.split("\n", 1)[0]
    for sep in (",", ";", "\t", "|"):
        if first.count(sep) and all(line.count(sep) == first.count(sep) for line in text.splitlines()[1:-1]):
            return sep
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _csv_options(path: Path, encoding: Optional[str], columns: Optional[Sequence[str]], types: Optional[dict] = None,
                 block: Optional[int] = None):
    import pyarrow.csv as pcsv

    enc = _check_encoding(encoding)
    read = pcsv.ReadOptions(use_threads=True, encoding=enc, block_size=block or CSV_BLOCK_BYTES)
    parse = pcsv.ParseOptions(delimiter=_delimiter(path, enc), newlines_in_values=False)
    convert = pcsv.ConvertOptions(
        null_values=NULL_VALUES, strings_can_be_null=True, include_columns=list(columns) if columns else None,
        column_types=types,
    )
    return read, parse, convert


def _check_encoding(encoding: Optional[str]) -> str:
    enc = encoding or "utf-8"
    try:
        codecs.lookup(enc)
    except LookupError:
        raise DataError(f"data.encoding: unknown text encoding {enc!r}", hint="e.g. utf-8, latin-1, cp1252") from None
    return enc


def read_table(path: Path, *, encoding: Optional[str] = None, columns: Optional[Sequence[str]] = None,
               float32: Sequence[str] = ()) -> Any:
    """A CSV or Parquet file as a typed `pyarrow.Table`; the columns in
    `float32` that hold floats are read as float32 (what the model takes:
    half the memory of float64).

    A CSV is read with the column types of its first rows given to the
    parser (no type inference over the whole file); when a later row does
    not fit them (a word in a number column, a fraction in a whole-number
    one) the file is read again with the types pyarrow infers. A CSV of
    1 MiB or more is parsed once: the next read of the same, unchanged file
    maps the typed table from `dlcli.data.table_cache`.

    Raises:
        DataError: the file cannot be read, is empty, or is not valid text in
            its encoding (the message names the first bad line).
    """
    import pyarrow as pa

    from dlcli.data import table_cache

    try:
        if is_parquet(path):
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=list(columns) if columns else None)
            narrow = {n: pa.float32() for n in float32 if n in table.column_names and pa.types.is_float64(table.schema.field(n).type)}
            table = table.cast(pa.schema([pa.field(f.name, narrow.get(f.name, f.type)) for f in table.schema])) if narrow else table
        else:
            key = table_cache.cache_key(path, encoding, columns, float32)
            cached = table_cache.load(key)
            if cached is not None:
                return cached
            table = _read_csv(path, encoding, columns, float32)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise _read_error(path, encoding, exc) from None
    if table.num_columns == 0:
        raise DataError(f"{path} is empty: a table source needs a header line and rows")
    _check_text(path, encoding, table)
    if is_parquet(path):
        return table
    # One chunk a column (the reader gives one a block): the splits' row
    # takes and the model's arrays read it without copying block by block.
    return table_cache.store(key, table.combine_chunks(), path)


def _read_csv(path: Path, encoding: Optional[str], columns: Optional[Sequence[str]], float32: Sequence[str]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        first = _first_batch(path, encoding)
    except DataError:
        first = None
    types = {} if first is None else {
        f.name: pa.float32() if f.name in float32 and pa.types.is_floating(f.type) else f.type
        for f in first.schema if f.name in (columns or first.schema.names) and (
            pa.types.is_floating(f.type) or pa.types.is_integer(f.type) or pa.types.is_string(f.type))}
    if types:
        plain = _read_plain(path, encoding, columns, types, first)
        if plain is not None:
            return plain
        read, parse, convert = _csv_options(path, encoding, columns, types, block=READ_BLOCK_BYTES)
        try:
            return pcsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "conversion" not in str(exc).lower():  # not a type that failed: a real error
                raise
    read, parse, convert = _csv_options(path, encoding, columns, block=READ_BLOCK_BYTES)
    table = pcsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    narrow = [i for i, f in enumerate(table.schema) if f.name in float32 and pa.types.is_float64(f.type)]
    for i in narrow:
        table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float32()))
    return table


def _read_plain(path: Path, encoding: Optional[str], columns: Optional[Sequence[str]], types: dict, first: Any) -> Any:
    """The file read as plain numbers (no quoting, no missing-value
    markers: about a fifth less CPU for the parser) when its first rows are
    that: every column read holds numbers without gaps, and no quote
    appears. None when a later row is not plain (a gap, a marker, a quote,
    a NaN): the caller reads the file again with the full options, so what
    the table holds never depends on this path.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    wanted = list(columns or first.schema.names)
    if len(types) != len(wanted) or not all(pa.types.is_floating(t) or pa.types.is_integer(t) for t in types.values()):
        return None
    if any(first.column(n).null_count for n in wanted):
        return None
    with open(path, encoding=_check_encoding(encoding), errors="replace") as f:
        if '"' in f.read(SCHEMA_BYTES):
            return None
    read, parse, _ = _csv_options(path, encoding, columns, types, block=READ_BLOCK_BYTES)
    parse.quote_char, parse.double_quote = False, False
    convert = pcsv.ConvertOptions(null_values=[], strings_can_be_null=False, include_columns=list(columns) if columns else None,
                                  column_types=types)
    try:
        table = pcsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid:
        return None
    # "nan" is a missing value in the full options, a float NaN here.
    if any(pa.types.is_floating(c.type) and pc.any(pc.is_nan(c)).as_py() for c in table.columns):
        return None
    return table


def _read_error(path: Path, encoding: Optional[str], exc: Exception) -> DataError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Empty CSV file" in text:
        return DataError(f"{path} is empty: a CSV source needs a header line and rows")
    if isinstance(exc, UnicodeDecodeError) or "decode" in text.lower() or "utf" in text.lower():
        return _encoding_error(path, encoding)
    if "Expected" in text and "columns" in text:
        row = text.split(": ", 2)[-1].encode()
        with open(path, "rb") as f:
            data = f.read()
        at = data.find(b"\n" + row)
        line = data.count(b"\n", 0, at + 1) + 1
        where = f"{path}:{line}" if at >= 0 else str(path)
        return DataError(f"{where}: {text.split(': ', 2)[1] if text.count(': ') >= 2 else text}",
                         hint="every row needs as many fields as the header")
    return DataError(f"cannot read {path}: {text}")


def _check_text(path: Path, encoding: Optional[str], table: Any) -> None:
    import pyarrow as pa

    if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema) and not is_parquet(path):
        raise _encoding_error(path, encoding)


def _encoding_error(path: Path, encoding: Optional[str]) -> DataError:
    """Find the first byte that is not valid in the encoding; name its line."""
    enc = encoding or "utf-8"
    decoder = codecs.getincrementaldecoder(enc)()
    line, offset = 1, 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                byte = chunk[exc.start:exc.start + 1].hex()
                return DataError(
                    f"{path}:{line}: not valid {enc} text (byte 0x{byte})",
                    hint="say the file's encoding with data.encoding, e.g. latin-1 or cp1252",
                )
            line += chunk.count(b"\n")
            offset += len(chunk)
    return DataError(f"{path}: some values are not valid {enc} text",
                     hint="say the file's encoding with data.encoding, e.g. latin-1 or cp1252")


def read_schema(path: Path, *, encoding: Optional[str] = None) -> Any:
    """The column names and types of a file (Parquet: its schema; CSV: the
    types pyarrow infers on the first rows)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return pq.read_schema(path)
    return _first_batch(path, encoding).schema


def _first_batch(path: Path, encoding: Optional[str]) -> Any:
    """The first rows of a CSV (its first SCHEMA_BYTES), typed as pyarrow
    infers them; a header without rows gives an empty table."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    read, parse, convert = _csv_options(path, encoding, None)
    read.block_size = SCHEMA_BYTES
    try:
        reader = pcsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        return reader.read_next_batch()
    except StopIteration:
        return reader.schema.empty_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise _read_error(path, encoding, exc) from None


def to_numpy(col: Any, dtype: Any = None) -> Any:
    """A pyarrow Array or ChunkedArray as one numpy array (of `dtype`),
    the chunks copied straight into one preallocated array.

    Number chunks without gaps are read from their buffers: pyarrow's
    `to_numpy` goes through its pandas converter, which imports pandas
    (about 0.3 s) and, for a ChunkedArray, copies once more.
    """
    import numpy as np

    chunks = col.chunks if hasattr(col, "chunks") else [col]
    if not chunks:
        import pyarrow as pa

        chunks = [pa.array([], type=col.type)]
    parts = [_chunk_numpy(c) for c in chunks]
    if len(parts) == 1:
        return parts[0] if dtype is None else parts[0].astype(dtype, copy=False)
    out = np.empty(len(col), dtype=parts[0].dtype if dtype is None else dtype)
    start = 0
    for part in parts:
        out[start:start + len(part)] = part
        start += len(part)
    return out


def _chunk_numpy(chunk: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    t = chunk.type
    if chunk.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        kind = "f" if pa.types.is_floating(t) else "i" if pa.types.is_signed_integer(t) else "u"
        dt = np.dtype(f"{kind}{t.bit_width // 8}")
        return np.frombuffer(chunk.buffers()[1], dtype=dt, count=len(chunk), offset=chunk.offset * dt.itemsize)
    return chunk.to_numpy(zero_copy_only=False)


def header(path: Path, *, encoding: Optional[str] = None) -> list[str]:
    """The column names of a CSV or Parquet file."""
    return list(read_schema(path, encoding=encoding).names)


def iter_batches(path: Path, schema: Any, *, encoding: Optional[str] = None,
                 columns: Optional[Sequence[str]] = None, rows: int = 65536) -> Iterator[Any]:
    """Stream `pyarrow.RecordBatch`es of a file with the given column types,
    holding about one block in memory at a time."""
    import pyarrow as pa

    wanted = list(columns) if columns else list(schema.names)
    if is_parquet(path):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows, columns=wanted)
        return
    import pyarrow.csv as pcsv

    types = {n: schema.field(n).type for n in wanted}
    read, parse, convert = _csv_options(path, encoding, wanted, types)
    done = 0  # rows before the block being read
    try:
        reader = pcsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            done += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _cell_error(path, encoding, exc, done, parse.delimiter) or _read_error(path, encoding, exc) from None


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'$")


def _cell_error(path: Path, encoding: Optional[str], exc: Exception, done: int, delimiter: str) -> Optional[DataError]:
    """A cell that does not have its column's type (those of the first
    rows), found at its line: the first such cell after the `done` rows
    read before the failing block (pyarrow names only the column)."""
    import itertools

    m = _CONVERSION.search(str(exc).strip().split("\n", 1)[0])
    if not m:
        return None
    index, kind, value = int(m.group(1)), m.group(2), m.group(3)
    with open(path, encoding=_check_encoding(encoding), newline="") as f:
        names = next(csv.reader([f.readline()], delimiter=delimiter))
        for _ in itertools.islice(f, done):  # one line a row: newlines_in_values is off
            pass
        for i, row in enumerate(csv.reader(f, delimiter=delimiter)):
            if index < len(row) and row[index] == value:
                what = "a whole number" if kind.startswith(("int", "uint")) else "a number" if kind in ("float", "double") else kind
                return DataError(f"{path}:{done + i + 2}: column {names[index]!r} has {value!r}, not {what} as in its first rows",
                                 hint="fix the cell; empty cells and NA are read as gaps")
    return None
