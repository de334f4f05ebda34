"""The `csv` and `parquet` sources: typed columns read with pyarrow, the
features encoded by a Keras FeatureSpace inside the model.

Columns: `data.target` (one column, or a list: one per model output, each
output layer named after its column), `data.features` (default: every
column but the targets and `data.sample_weight`), `data.inputs` (columns to
named model inputs), `data.column_types` (see `dlcli.data.columns`).
Splits: `data.validation_path` / `data.test_path` are read like
`data.path`; otherwise `validation_split` / `test_split` of its rows are
held out, at random (stratified by the first class target) or, with
`split: ordered`, the last rows. `data.window` makes sliding windows
(`dlcli.data.window`). The whole table is shuffled every epoch (not a
buffer of it). With `data.cache: false` (or `auto` and a file larger than
a quarter of the free memory) the file streams from disk instead:
`dlcli.data.stream`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dlcli.data._util import cfg_error, did_you_mean, short_list, split_indices
from dlcli.data.bundle import DataBundle
from dlcli.data.columns import Column, adapt_feature_space, check_groups, feature_space, head, plan_columns
from dlcli.data.labels import TASKS, encode_labels, loss_label_mode, loss_name
from dlcli.data.spec import ColumnSpec, DataSpec, OutputSpec
from dlcli.data.table import read_table, to_numpy
from dlcli.data.vocab import token_separator, transcript_target
from dlcli.errors import DataError

# Rows per batch when preprocessing layers adapt (large: adapt runs Python per batch).
_ADAPT_BATCH = 65536
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def file_path(cfg: Any, key: str) -> Path:
    """`data.<key>` as an existing file, resolved against the config's folder."""
    from dlcli.config.paths import resolve_path

    raw = getattr(cfg.data, key)
    path = resolve_path(cfg, raw)
    if not path.exists():
        raise cfg_error(cfg, f"data.{key}", f"{path} does not exist")
    if not path.is_file():
        raise cfg_error(cfg, f"data.{key}", f"{path} is not a file (data.source {cfg.data.source} reads one file)")
    return path


def targets_of(cfg: Any) -> list[str]:
    t = cfg.data.target
    return [t] if isinstance(t, str) else list(t or [])


def _columns(cfg: Any, names: list[str], path: Path) -> tuple[list[str], dict[str, str]]:
    """(feature columns, column -> model input) from the config, checked
    against the file's header."""
    d = cfg.data
    targets = targets_of(cfg)
    groups: dict[str, str] = {}
    for name, cols in (d.inputs or {}).items():
        for c in [cols] if isinstance(cols, str) else cols:
            groups[c] = str(name)
    extra = [d.sample_weight] if d.sample_weight else []
    features = list(d.features) if d.features else (list(groups) if groups else [n for n in names if n not in targets + extra])
    for key, cols in (("data.target", targets), ("data.sample_weight", extra), ("data.features", features),
                      ("data.inputs", list(groups))):
        missing = [c for c in cols if c not in names]
        if missing:
            hints = [h for h in (did_you_mean(c, names) for c in missing) if h]
            raise cfg_error(cfg, key, f"column(s) {', '.join(map(repr, missing))} not in {path}",
                            hint="; ".join(hints) if hints else f"columns are {short_list(names, 12)}")
    both = [c for c in features if c in targets + extra]
    if both and not d.window:  # a series' past values may predict its future
        raise cfg_error(cfg, "data.features", f"column {both[0]!r} is a target or weight; it cannot also be a feature")
    if not features:
        raise cfg_error(cfg, "data.features", f"{path} has no feature columns besides the target")
    return features, groups


def check_numbers(path: Path, table: Any) -> None:
    """A column that is mostly numbers but holds a word is a typo, not a
    category column: name its first line.

    Raises:
        DataError: at the file and line.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            continue
        ok = pc.match_substring_regex(col, _NUMBER)
        good, present = pc.sum(ok).as_py() or 0, len(col) - col.null_count
        if present and good * 2 > present and good < present:
            bad = pc.indices_nonzero(pc.invert(pc.fill_null(ok, True)))
            first = int(bad[0].as_py())
            raise DataError(f"{path}:{first + 2}: column {name!r} is numeric but has {col[first].as_py()!r}"
                            + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""))


def _loss_of(cfg: Any, target: str, single: bool) -> Any:
    loss = cfg.compile.loss
    if isinstance(loss, dict) and target in loss:
        return loss[target]
    return loss


def encode_target(cfg: Any, path: Path, table: Any, target: str, single: bool,
                  train_rows: Optional[int] = None) -> tuple[OutputSpec, np.ndarray]:
    """One target column as labels for its loss, and what it holds
    (`train_rows`: how many of the table's first rows are training rows,
    where a CTC vocabulary is learned).

    Raises:
        DataError: an empty target cell, or a word where a regression
            target needs numbers (naming the line).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(target)
    if col.null_count:
        first = int(pc.indices_nonzero(pc.is_null(col))[0].as_py())
        raise DataError(f"{path}:{first + 2}: the target column {target!r} is empty"
                        + (f" ({col.null_count} rows)" if col.null_count > 1 else ""))
    loss = _loss_of(cfg, target, single)
    mode = loss_label_mode(loss)
    if mode == "ctc":
        return transcript_target(cfg, path, col, target, table.num_rows if train_rows is None else train_rows)
    numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
    whole = numeric and (pa.types.is_integer(col.type) or bool(pc.all(pc.equal(col, pc.floor(col))).as_py()))
    if mode == "float" or (mode is None and numeric and not whole):
        if not numeric:
            raise DataError(f"{path}: target {target!r} holds words, but {loss_name(loss)} is a regression loss")
        y = to_numpy(col, np.float32)
        return OutputSpec(name=target, task="regression", label_mode="float", shape=[]), y
    values = pc.unique(col).sort()
    names = [str(int(v)) if numeric else str(v) for v in values.to_pylist()]
    y = to_numpy(pc.index_in(col, value_set=values), np.int64)
    if mode is None:
        mode = "int"
    return OutputSpec(name=target, task=TASKS[mode], label_mode=mode, class_names=names, num_classes=len(names), shape=[]), y


def _split(cfg: Any, n: int, labels: Optional[np.ndarray], held: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if cfg.data.split == "ordered" or cfg.data.window:
        k = int(np.ceil(n * held)) if held > 0 else 0
        return np.arange(n - k), np.arange(n - k, n)
    return split_indices(n, held, seed, labels)


def _take(table: Any, idx: np.ndarray) -> Any:
    return table.take(idx) if len(idx) != table.num_rows else table


def float_features(cfg: Any, features: list[str]) -> list[str]:
    """The feature columns whose floats the model takes as float32 (all but
    those `data.column_types` makes categories or text)."""
    declared = cfg.data.column_types or {}

    def kind(c: str) -> str:
        raw = declared.get(c)
        return str(raw.get("type", "") if isinstance(raw, dict) else raw)

    return [c for c in features if c not in declared or kind(c).startswith("float") or kind(c) == "passthrough"]


def split_tables(cfg: Any, path: Path, columns: list[str], floats: Sequence[str] = ()) -> dict[str, Any]:
    """{"train", "val", "test"} tables (val / test None when there are none):
    from their own files, or held out of `data.path`; the `floats` columns'
    floats read as float32."""
    d = cfg.data
    table = read_table(path, encoding=d.encoding, columns=columns, float32=floats)
    if table.num_rows == 0:
        raise DataError(f"{path} has a header but no rows")
    check_numbers(path, table)
    out: dict[str, Any] = {"train": table, "val": None, "test": None}
    seed = int(cfg.seed)
    first = targets_of(cfg)[0] if targets_of(cfg) else None
    strat = None
    if first and d.split != "ordered" and not d.window:
        import pyarrow.compute as pc

        strat = to_numpy(pc.index_in(table.column(first), value_set=pc.unique(table.column(first))))
    del table  # the splits below are copies: the whole file need not stay too
    for split, key, fraction in (("test", "test_path", d.test_split), ("val", "validation_path", d.validation_split)):
        if getattr(d, key):
            other = file_path(cfg, key)
            t = read_table(other, encoding=d.encoding, columns=columns, float32=floats)
            check_numbers(other, t)
            try:
                out[split] = t.cast(out["train"].schema)
            except (ValueError, TypeError, Exception) as exc:  # noqa: BLE001 - pyarrow cast errors vary
                raise DataError(f"{other}: its columns do not have the types of {path}'s ({str(exc).splitlines()[0]})") from None
            continue
        kept, held = _split(cfg, out["train"].num_rows, strat, fraction, seed)
        if len(held):
            out[split] = _take(out["train"], held)
            out["train"] = _take(out["train"], kept)
            strat = None if strat is None else strat[kept]
    return out


def column_arrays(table: Any, columns: list[Column]) -> dict[str, np.ndarray]:
    """{column: (rows, 1) array} of the model's raw inputs, gaps filled."""
    import pyarrow.compute as pc

    # A table's columns in one chunk each (one Arrow concatenation), then
    # each column is a view of it: faster than copying the reader's blocks
    # one by one into numpy. (A streamed record batch is one chunk.)
    if hasattr(table, "combine_chunks"):
        table = table.select(list(dict.fromkeys(c.name for c in columns))).combine_chunks()
    out = {}
    for c in columns:
        col = table.column(c.name)
        if c.dtype == "string":
            col = col.cast("string")
        col = pc.fill_null(col, c.fill) if col.null_count else col
        out[c.name] = to_numpy(col, object if c.dtype == "string" else c.dtype).reshape(-1, 1)
    return out


def table_source(cfg: Any) -> DataBundle:
    """See the module docstring.

    Raises:
        ConfigError: columns or types the file cannot give.
        DataError: unreadable files, gaps in a target, words in numbers.
    """
    from dlcli.data.table import header

    d = cfg.data
    path = file_path(cfg, "path")
    names = header(path, encoding=d.encoding)
    if len(set(names)) != len(names):
        dup = sorted({h for h in names if names.count(h) > 1})
        raise DataError(f"{path}: the header repeats column(s) {', '.join(map(repr, dup))}")
    features, groups = _columns(cfg, names, path)
    targets = targets_of(cfg)
    from dlcli.data.stream import stream_source, streams

    if streams(cfg, path):
        return stream_source(cfg, path, features, groups, targets)
    extra = [d.sample_weight] if d.sample_weight else []
    tables = split_tables(cfg, path, list(dict.fromkeys(features + targets + extra)), float_features(cfg, features))
    if d.limit and tables["train"].num_rows > d.limit:
        tables["train"] = tables["train"].slice(0, d.limit)
    plan = plan_columns(cfg, tables["train"], features, groups, path)
    check_groups(cfg, plan)
    if d.window:
        from dlcli.data.window import window_bundle

        return window_bundle(cfg, path, tables, plan)
    return _bundle(cfg, path, tables, plan, targets)


def _labels(cfg: Any, path: Path, tables: dict[str, Any], targets: list[str]) -> tuple[list[OutputSpec], dict[str, Any]]:
    """Output specs and per-split label arrays (by target name when several),
    class indices taken from all splits together."""
    import pyarrow as pa

    present = [t for t in tables.values() if t is not None]
    whole = pa.concat_tables([t.select(targets) for t in present])
    outputs, ys = [], {}
    for target in targets:
        out, y = encode_target(cfg, path, whole, target, len(targets) == 1, train_rows=present[0].num_rows)
        outputs.append(out)
        ys[target] = y
    result: dict[str, Any] = {}
    start = 0
    for split, t in tables.items():
        if t is None:
            result[split] = None
            continue
        part = {}
        for out in outputs:
            y = ys[out.name][start:start + t.num_rows]
            part[out.name] = encode_labels(cfg, y, out.label_mode, out.num_classes)
        start += t.num_rows
        result[split] = part[targets[0]] if len(targets) == 1 else part
    return outputs, result


def _bundle(cfg: Any, path: Path, tables: dict[str, Any], plan: list[Column], targets: list[str]) -> DataBundle:
    d = cfg.data
    outputs, labels = _labels(cfg, path, tables, targets)
    xs = {s: None if t is None else column_arrays(t, plan) for s, t in tables.items()}
    weights = {s: None if t is None or not d.sample_weight else
               to_numpy(t.column(d.sample_weight).fill_null(0), np.float32) for s, t in tables.items()}
    first = outputs[0]
    spec = table_spec(cfg, path, plan, outputs, {s: 0 if t is None else t.num_rows for s, t in tables.items()})
    if first.class_names and len(outputs) == 1 and first.task != "ctc":
        spec.class_counts = np.bincount(np.asarray(labels["train"]).reshape(-1).astype(np.int64)
                                        if first.label_mode != "onehot" else np.asarray(labels["train"]).argmax(1),
                                        minlength=first.num_classes).tolist()
    bundle = assemble_table(cfg, spec, plan, xs, labels, weights)
    bundle.notes.extend(gap_notes(path, tables["train"], plan))
    return bundle


def table_spec(cfg: Any, path: Path, plan: list[Column], outputs: list[OutputSpec], counts: dict[str, int]) -> DataSpec:
    """The DataSpec of a table source: its columns, outputs and split sizes."""
    d = cfg.data
    first = outputs[0]
    return DataSpec(
        source=d.source, task=first.task, label_mode=first.label_mode, class_names=first.class_names,
        num_classes=first.num_classes, target_width=1 if first.task == "regression" else None, input_kind="table",
        path=str(path), target=d.target, features=[c.name for c in plan], seed=int(cfg.seed),
        columns=[ColumnSpec(name=c.name, type=c.type, dtype=c.dtype, fill=c.fill, input=c.group) for c in plan],
        outputs=outputs if len(outputs) > 1 else None, sample_weight=d.sample_weight, encoding=d.encoding,
        counts=counts, token_separator=token_separator(cfg, outputs),
    )


def gap_notes(path: Path, table: Any, plan: list[Column]) -> list[str]:
    """What filled the gaps of the training rows, one line per column."""
    how = {"float32": "the training mean", "int64": "-1 (an unseen category)", "string": "'(missing)', a category of its own"}
    return [f"{path.name}: column {c.name!r} has {table.column(c.name).null_count} missing value(s), filled with {how[c.dtype]}"
            for c in plan if table.column(c.name).null_count]


def assemble_table(cfg: Any, spec: DataSpec, plan: list[Column], xs: dict, labels: dict, weights: dict,
                   streams: Optional[Callable[[str], Any]] = None) -> DataBundle:
    """Datasets, the adapted FeatureSpace and the model head for column
    arrays (the rows of each split, or windows of them). With `streams`
    (split -> dataset read from disk), `xs["train"]` is only the sample the
    preprocessing adapts on."""
    from dlcli.data.pipeline import array_batches, table_dataset

    d = cfg.data
    fs = feature_space(plan, list(d.crosses or []), cfg)
    seed = int(cfg.seed)
    train_x = xs["train"]

    def adapt_data():
        # A model with one raw column takes it as it is.
        return array_batches(next(iter(train_x.values())) if len(train_x) == 1 else train_x, _ADAPT_BATCH)

    if fs is not None:
        adapt_feature_space(fs, train_x)
    inputs, encoded = head(plan, fs)
    # What the config's model takes, in the builder's terms: a shape, or
    # {shape, dtype} for raw strings; by model input name for several.
    shapes = {g: [int(v) for v in t.shape[1:]] for g, t in encoded.items()}
    dtypes = {g: "string" for g, t in encoded.items() if t.dtype == "string"}
    given = {g: {"shape": s, "dtype": "string"} if g in dtypes else tuple(s) for g, s in shapes.items()}
    single = len(encoded) == 1
    spec.input_shape = next(iter(shapes.values())) if single else None

    def attach(model: Any) -> Any:
        import keras

        # The config's layers, rebuilt on the encoded columns with the
        # built model's weights: one flat graph from raw columns to the
        # outputs, which keep their names, and every layer has one input
        # node (adapting preprocessing layers relies on it). This is what
        # keras.models.clone_model does, without its re-wrapping of
        # non-Input tensors into new inputs.
        given = [encoded[t.name] for t in model.inputs] if not single else [next(iter(encoded.values()))]
        pairs = []

        def rebuild(layer: Any) -> Any:
            new = layer.__class__.from_config(layer.get_config())
            pairs.append((layer, new))
            return new

        outputs = model._run_through_graph(given if len(given) > 1 else given[0], operation_fn=rebuild)
        for old, new in pairs:
            new.set_weights(old.get_weights())
        return keras.Model(inputs, outputs, name=model.name)

    def make(split: str):
        if streams is not None:
            return streams(split)
        if xs[split] is None:
            return None
        return table_dataset(xs[split], labels[split], weights[split], batch_size=d.batch_size,
                             training=split == "train", seed=seed, shuffle=d.shuffle_buffer > 0 and d.split != "ordered")

    counts = spec.counts
    return DataBundle(
        train=make("train"), val=make("val"), test=make("test"),
        input_shape=next(iter(given.values())) if single else given, spec=spec,
        num_train=counts.train, num_val=counts.val, num_test=counts.test,
        representative=lambda n: {k: v[:n] for k, v in train_x.items()},
        adapt_data=adapt_data, head=attach,
    )
