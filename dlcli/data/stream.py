"""CSV / Parquet streamed from disk: `data.cache: false` (and `auto` for a
file larger than a quarter of the free memory).

Training, validation and test batches are read block by block with
pyarrow (`dlcli.data.table.iter_batches`) through `tf.data`, so memory
stays flat however many rows the file has:

- one pass over the target column(s) first finds the classes, the row
  count and the split sizes;
- a row's split is fixed by a hash of (seed, row number): `test_split` of
  the rows are test, `validation_split` of the rest validation (the same
  rows in every pass and every run); `split: ordered` holds out the last
  rows instead; `validation_path` / `test_path` stream their own files.
  These splits are not stratified (in memory they are, by the first
  target): each class gets its share of held-out rows only on average, so
  a rare class may have few or none in a small validation split;
- training rows are shuffled through a buffer of `data.shuffle_buffer`
  rows, in an order that depends on (seed, epoch) only;
- column types, gap fills and the adapted preprocessing (FeatureSpace, the
  config's own preprocessing layers) come from the first
  `SAMPLE_ROWS` training rows.

Windows (`data.window`) and CTC targets read the file into memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from dlcli.data.bundle import DataBundle
from dlcli.errors import DataError

SAMPLE_ROWS = 100_000
BLOCK_ROWS = 65_536
_TRAIN, _VAL, _TEST = 0, 1, 2
_SPLITS = {"train": _TRAIN, "val": _VAL, "test": _TEST}


def streams(cfg: Any, path: Path) -> bool:
    """Whether the file is streamed from disk rather than read into memory."""
    from dlcli.data.labels import loss_label_mode

    d = cfg.data
    losses = cfg.compile.loss
    if d.window or any(loss_label_mode(v) == "ctc" for v in (losses.values() if isinstance(losses, dict) else [losses])):
        return False
    if d.cache is False:
        return True
    if d.cache == "auto":
        free = free_memory()
        return free is not None and path.stat().st_size * 4 > free
    return False


def free_memory() -> Optional[int]:
    """Bytes of memory free now (None where the system does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _uniform(rows: np.ndarray, seed: int) -> np.ndarray:
    """A value in [0, 1) per row number, the same in every pass (splitmix64)."""
    z = rows.astype(np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class _Source:
    """The files of a streamed table and which split each row belongs to."""

    def __init__(self, cfg: Any, path: Path, columns: list[str], schema: Any) -> None:
        from dlcli.data.tables import file_path

        d = cfg.data
        self.cfg, self.path, self.columns, self.schema, self.seed = cfg, path, columns, schema, int(cfg.seed)
        self.own = {s: file_path(cfg, key) for s, key in (("val", "validation_path"), ("test", "test_path")) if getattr(d, key)}
        self.test = 0.0 if "test" in self.own else float(d.test_split)
        self.val = 0.0 if "val" in self.own else float(d.validation_split)
        self.rows = 0  # data.path's row count, set by `scan`

    def files(self, split: str) -> list[tuple[Path, bool]]:
        """(file, whether its rows are split by `codes`) that hold the split's rows."""
        if split in self.own:
            return [(self.own[split], False)]
        return [(self.path, True)] if split == "train" or getattr(self, split) > 0 else []

    def codes(self, start: int, n: int) -> np.ndarray:
        """The split of rows start..start+n of data.path."""
        rows = np.arange(start, start + n)
        if self.cfg.data.split == "ordered":
            k_test = int(np.ceil(self.rows * self.test)) if self.test > 0 else 0
            k_val = int(np.ceil((self.rows - k_test) * self.val)) if self.val > 0 else 0
            return np.where(rows >= self.rows - k_test, _TEST, np.where(rows >= self.rows - k_test - k_val, _VAL, _TRAIN))
        u = _uniform(rows, self.seed)
        return np.where(u < self.test, _TEST, np.where(u < self.test + self.val * (1 - self.test), _VAL, _TRAIN))

    def batches(self, split: str, columns: Optional[list[str]] = None) -> Iterator[Any]:
        """The split's rows, block by block, as pyarrow record batches."""
        import pyarrow.compute as pc

        from dlcli.data.table import iter_batches

        for file, shared in self.files(split):
            start = 0
            for batch in iter_batches(file, self.schema, encoding=self.cfg.data.encoding,
                                      columns=columns or self.columns, rows=BLOCK_ROWS):
                n = batch.num_rows
                if shared:
                    batch = batch.filter(pc.equal(self.codes(start, n), _SPLITS[split]))
                start += n
                if batch.num_rows:
                    yield batch


def _scan(src: _Source, targets: list[str]) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """One pass over the target columns: rows per split, each target's
    distinct values (all splits) and their counts in the training rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = {"train": 0, "val": 0, "test": 0}
    distinct: dict[str, list[Any]] = {t: [] for t in targets}
    train_counts: dict[str, list[Any]] = {t: [] for t in targets}
    for split in ("train", "val", "test"):
        if split == "train" and src.cfg.data.split == "ordered":  # the held-out rows are the last ones
            src.rows = sum(b.num_rows for b in _all_rows(src, targets[:1]))
        for batch in src.batches(split, targets):
            counts[split] += batch.num_rows
            for t in targets:
                col = batch.column(t)
                if col.null_count:
                    raise DataError(f"{src.path}: the target column {t!r} has empty cells")
                distinct[t].append(pc.unique(col))
                if split == "train":
                    train_counts[t].append(pc.value_counts(col))
    values = {t: pc.unique(pa.chunked_array(v)) if v else pa.array([]) for t, v in distinct.items()}
    return counts, values, train_counts


def _all_rows(src: _Source, columns: list[str]) -> Iterator[Any]:
    from dlcli.data.table import iter_batches

    yield from iter_batches(src.path, src.schema, encoding=src.cfg.data.encoding, columns=columns, rows=BLOCK_ROWS)


def _first_rows(src: _Source, n: int) -> Any:
    """The first `n` training rows as a table (the sample)."""
    import pyarrow as pa

    got, have = [], 0
    for batch in src.batches("train"):
        got.append(batch)
        have += batch.num_rows
        if have >= n:
            break
    if not got:
        raise DataError(f"{src.path} has no training rows")
    return pa.Table.from_batches(got).slice(0, n)


def _schema(cfg: Any, path: Path, floats: list[str]) -> Any:
    """The column types every block is read with (CSV: those of its first
    rows; float features as float32)."""
    import pyarrow as pa

    from dlcli.data.table import is_parquet, read_schema

    schema = read_schema(path, encoding=cfg.data.encoding)
    if is_parquet(path):
        return schema
    return pa.schema([pa.field(f.name, pa.float32() if f.name in floats and pa.types.is_floating(f.type)
                               else pa.string() if pa.types.is_null(f.type) else f.type) for f in schema])


def stream_source(cfg: Any, path: Path, features: list[str], groups: dict[str, str], targets: list[str]) -> DataBundle:
    """See the module docstring.

    Raises:
        ConfigError: columns or types the file cannot give.
        DataError: an empty target cell, words in numbers (in the sample).
    """
    import pyarrow as pa

    from dlcli.data.columns import check_groups, plan_columns
    from dlcli.data.tables import assemble_table, check_numbers, encode_target, float_features, table_spec

    d = cfg.data
    extra = [d.sample_weight] if d.sample_weight else []
    src = _Source(cfg, path, list(dict.fromkeys(features + targets + extra)), _schema(cfg, path, float_features(cfg, features)))
    counts, values, train_counts = _scan(src, targets)
    if d.limit:
        counts["train"] = min(counts["train"], int(d.limit))
    if not counts["train"]:
        raise DataError(f"{path} has no training rows")
    outputs = [encode_target(cfg, path, pa.table({t: values[t]}), t, len(targets) == 1)[0] for t in targets]
    sample = _first_rows(src, min(SAMPLE_ROWS, counts["train"]))
    check_numbers(path, sample)
    plan = plan_columns(cfg, sample, features, groups, path)
    check_groups(cfg, plan)
    spec = table_spec(cfg, path, plan, outputs, counts)
    first = outputs[0]
    if first.class_names and len(targets) == 1:
        spec.class_counts = _class_counts(train_counts[targets[0]], values[targets[0]])
    encode = _Encoder(cfg, plan, outputs, targets, values)
    x, y, w = encode(sample)
    bundle = assemble_table(cfg, spec, plan, {"train": x}, {"train": y}, {"train": w},
                            streams=lambda split: _dataset(src, encode, split, counts[split], (x, y, w)))
    why = "data.cache: false" if d.cache is False else "data.cache: auto, the file is over a quarter of the free memory"
    bundle.notes.append(f"{path.name}: streamed from disk in blocks of {BLOCK_ROWS:,} rows ({why}); "
                        f"column types, gap fills and preprocessing from the first {sample.num_rows:,} training rows")
    return bundle


def _class_counts(parts: list[Any], values: Any) -> list[int]:
    import pyarrow.compute as pc

    order = values.sort()
    totals = np.zeros(len(order), np.int64)
    for vc in parts:
        idx = pc.index_in(vc.field("values"), value_set=order).to_numpy(zero_copy_only=False)
        np.add.at(totals, idx, vc.field("counts").to_numpy(zero_copy_only=False))
    return totals.tolist()


class _Encoder:
    """A block of rows -> (column arrays, labels, sample weights or None)."""

    def __init__(self, cfg: Any, plan: list[Any], outputs: list[Any], targets: list[str], values: dict[str, Any]) -> None:
        self.cfg, self.plan, self.outputs, self.targets = cfg, plan, outputs, targets
        # The class values in encode_target's order (sorted): index = class.
        self.values = {o.name: values[o.name].sort() for o in outputs if o.class_names}
        self.weight = cfg.data.sample_weight

    def __call__(self, batch: Any) -> tuple[dict, Any, Any]:
        import pyarrow.compute as pc

        from dlcli.data.labels import encode_labels
        from dlcli.data.tables import column_arrays

        x = column_arrays(batch, self.plan)
        ys = {}
        for out in self.outputs:
            col = batch.column(out.name)
            if out.class_names:
                idx = pc.index_in(col, value_set=self.values[out.name]).to_numpy(zero_copy_only=False)
                ys[out.name] = encode_labels(self.cfg, idx, out.label_mode, out.num_classes)
            else:
                ys[out.name] = col.to_numpy(zero_copy_only=False).astype(np.float32)
        y = ys[self.targets[0]] if len(self.targets) == 1 else ys
        w = batch.column(self.weight).fill_null(0).to_numpy(zero_copy_only=False).astype(np.float32) if self.weight else None
        return x, y, w


def _dataset(src: _Source, encode: _Encoder, split: str, count: int, example: tuple) -> Any:
    """The split's batches from disk through `tf.data.Dataset.from_generator`."""
    import tensorflow as tf

    from dlcli.data.pipeline import AUTOTUNE, epoch_variable, keeping

    if not count:
        return None
    d = src.cfg.data
    parts = example if example[2] is not None else example[:2]
    signature = tf.nest.map_structure(
        lambda a: tf.TensorSpec((None, *a.shape[1:]), tf.string if a.dtype == object else tf.as_dtype(a.dtype)), parts)
    training = split == "train"
    shuffle = training and d.shuffle_buffer > 0 and d.split != "ordered"

    def rows() -> Iterator[tuple]:
        blocks = (encode(b)[:len(parts)] for b in src.batches(split))
        if shuffle:
            rng = np.random.default_rng([src.seed, int(epoch_variable().numpy())])
            blocks = _shuffled(blocks, int(d.shuffle_buffer), rng)
        yield from _rebatch(_limited(blocks, count), int(d.batch_size))

    ds = tf.data.Dataset.from_generator(keeping(rows), output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-count // int(d.batch_size))))
    return ds.prefetch(AUTOTUNE)


def _size(parts: Any) -> int:
    import tensorflow as tf

    return len(tf.nest.flatten(parts)[0])


def _map(fn: Callable, *parts: Any) -> Any:
    import tensorflow as tf

    return tf.nest.map_structure(fn, *parts)


def _shuffled(blocks: Iterator[tuple], buffer: int, rng: np.random.Generator) -> Iterator[tuple]:
    """Rows drawn at random from a pool of `buffer` rows, refilled block by block."""
    pool = None
    for block in blocks:
        pool = block if pool is None else _map(lambda a, b: np.concatenate([a, b]), pool, block)
        n = _size(pool)
        if n > buffer:
            order = rng.permutation(n)
            out, keep = order[:n - buffer], order[n - buffer:]
            yield _map(lambda a: a[out], pool)
            pool = _map(lambda a: a[keep], pool)
    if pool is not None and _size(pool):
        order = rng.permutation(_size(pool))
        yield _map(lambda a: a[order], pool)


def _limited(blocks: Iterator[tuple], count: int) -> Iterator[tuple]:
    """At most `count` rows (data.limit)."""
    left = count
    for block in blocks:
        if left <= 0:
            return
        n = _size(block)
        yield block if n <= left else _map(lambda a: a[:left], block)
        left -= n


def _rebatch(blocks: Iterator[tuple], batch_size: int) -> Iterator[tuple]:
    """Blocks of any size -> batches of `batch_size` rows (the last one shorter)."""
    pending = None
    for block in blocks:
        pending = block if pending is None else _map(lambda a, b: np.concatenate([a, b]), pending, block)
        n, start = _size(pending), 0
        while n - start >= batch_size:
            yield _map(lambda a: a[start:start + batch_size], pending)
            start += batch_size
        pending = _map(lambda a: a[start:], pending)
    if pending is not None and _size(pending):
        yield pending
