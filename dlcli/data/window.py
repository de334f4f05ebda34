"""Time-series windows of a table, through
`keras.utils.timeseries_dataset_from_array` (the Keras weather-forecasting
setup).

`data.window` takes that function's arguments (`sequence_length`,
`sampling_rate`, `sequence_stride`) plus `target_offset`: the target of a
window is the target column `target_offset` rows after the window's last
row (0: its last row). Rows stay in file order: the validation and test
rows are the last ones (as `split: ordered`) and windows never cross a
split. Feature columns are numbers; a Normalization layer with the
training rows' mean and variance sits in front of the config's layers in
the saved model, so predict takes raw rows (each window named by its last
row's line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlcli.data._util import cfg_error, did_you_mean
from dlcli.data.bundle import DataBundle
from dlcli.data.spec import DataSpec, OutputSpec
from dlcli.errors import DataError

WINDOW_KEYS = {"sequence_length": None, "sampling_rate": 1, "sequence_stride": 1, "target_offset": 0}


def window_options(cfg: Any) -> dict[str, int]:
    """`data.window` with defaults, checked.

    Raises:
        ConfigError: at `data.window.<key>`.
    """
    given = dict(cfg.data.window or {})
    for key, value in given.items():
        if key not in WINDOW_KEYS:
            raise cfg_error(cfg, f"data.window.{key}", f"unknown window option {key!r}",
                            hint=did_you_mean(key, WINDOW_KEYS) or "options are " + ", ".join(WINDOW_KEYS))
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "target_offset" else 1):
            raise cfg_error(cfg, f"data.window.{key}", f"{key} must be a whole number of rows, at least "
                            f"{0 if key == 'target_offset' else 1}")
    if "sequence_length" not in given:
        raise cfg_error(cfg, "data.window", "data.window needs sequence_length (rows per window)")
    return {**WINDOW_KEYS, **given}


def span(opts: dict[str, int]) -> int:
    """Rows from a window's first row to its target's row."""
    return (opts["sequence_length"] - 1) * opts["sampling_rate"] + opts["target_offset"]


def windows(x: np.ndarray, y: np.ndarray, opts: dict[str, int], *, batch_size: int, shuffle: bool, seed: int) -> Any:
    """The batched `(window, target)` dataset of one split's rows."""
    import keras

    n, offset = len(x), opts["target_offset"]
    shift = span(opts)
    targets = np.zeros(n, np.float32)
    targets[: n - shift] = y[shift:]
    return keras.utils.timeseries_dataset_from_array(
        x, targets, sequence_length=opts["sequence_length"], sampling_rate=opts["sampling_rate"],
        sequence_stride=opts["sequence_stride"], batch_size=batch_size, shuffle=shuffle, seed=seed,
        end_index=n - offset,
    )


def count(n: int, opts: dict[str, int]) -> int:
    """Windows in `n` rows."""
    return max(0, (n - span(opts) - 1) // opts["sequence_stride"] + 1) if n > span(opts) else 0


def window_bundle(cfg: Any, path: Path, tables: dict[str, Any], plan: list[Any]) -> DataBundle:
    """See the module docstring.

    Raises:
        ConfigError: string feature columns, several targets, options.
        DataError: a split too short for one window.
    """
    from dlcli.data.tables import column_arrays, targets_of

    d = cfg.data
    opts = window_options(cfg)
    targets = targets_of(cfg)
    if len(targets) != 1:
        raise cfg_error(cfg, "data.target", "a windowed series predicts one target column")
    strings = [c.name for c in plan if c.dtype == "string"]
    if strings:
        raise cfg_error(cfg, "data.features", f"windows take numeric columns; {', '.join(map(repr, strings))} hold strings",
                        hint="leave them out with data.features")
    for c in plan:
        c.dtype, c.type = "float32", "float_normalized"
    xs, ys = {}, {}
    for split, t in tables.items():
        if t is None:
            xs[split] = ys[split] = None
            continue
        cols = column_arrays(t, plan)
        xs[split] = np.concatenate([cols[c.name] for c in plan], axis=1).astype(np.float32)
        ys[split] = np.nan_to_num(t.column(targets[0]).to_numpy(zero_copy_only=False).astype(np.float32))
        if count(len(xs[split]), opts) == 0:
            raise DataError(f"{path}: the {split} split has {len(xs[split])} rows, too few for one window "
                            f"({span(opts) + 1} rows from a window's start to its target)")
    seed = int(cfg.seed)
    mean, var = xs["train"].mean(axis=0), xs["train"].var(axis=0)
    spec = DataSpec(
        source=d.source, task="regression", label_mode="float", target_width=1, input_kind="table",
        input_shape=[opts["sequence_length"], len(plan)], path=str(path), target=targets[0],
        features=[c.name for c in plan], seed=seed, window=opts, encoding=d.encoding,
        columns=[_column_spec(c) for c in plan],
        outputs=None, counts={s: 0 if x is None else count(len(x), opts) for s, x in xs.items()},
    )

    def make(split: str):
        if xs[split] is None:
            return None
        return windows(xs[split], ys[split], opts, batch_size=d.batch_size, shuffle=split == "train", seed=seed)

    def head(model: Any) -> Any:
        import keras

        raw = keras.Input(shape=(opts["sequence_length"], len(plan)), name="window")
        norm = keras.layers.Normalization(mean=mean, variance=np.where(var > 0, var, 1.0), name="window_normalization")
        return keras.Model(raw, model(norm(raw)), name=model.name)

    counts = spec.counts
    return DataBundle(
        train=make("train"), val=make("val"), test=make("test"), input_shape=tuple(spec.input_shape), spec=spec,
        num_train=counts.train, num_val=counts.val, num_test=counts.test,
        representative=lambda n: np.stack([w for w, _ in _slide(xs["train"], opts)][:n]), head=head,
    )


def _column_spec(c: Any) -> Any:
    from dlcli.data.spec import ColumnSpec

    return ColumnSpec(name=c.name, type=c.type, dtype="float32", fill=c.fill, input="window")


def _slide(x: np.ndarray, opts: dict[str, int]) -> Iterator[tuple[np.ndarray, int]]:
    """(window, index of its last row) for every window of `x` in order
    (predict: no target needed, so the last rows make windows too)."""
    length, rate, stride = opts["sequence_length"], opts["sampling_rate"], opts["sequence_stride"]
    reach = (length - 1) * rate
    for start in range(0, len(x) - reach, stride):
        yield x[start : start + reach + 1 : rate], start + reach


def predict_windows(spec: DataSpec, x: np.ndarray, bad: np.ndarray, block: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of (windows, last-row indices, windows that hold a bad row)."""
    opts = spec.window or {}
    items = list(_slide(x, opts))
    reach = (opts["sequence_length"] - 1) * opts["sampling_rate"]
    bad_rows = np.cumsum(np.concatenate([[0], bad.astype(np.int64)]))
    for k in range(0, len(items), block):
        chunk = items[k : k + block]
        last = np.asarray([i for _, i in chunk], np.int64)
        broken = bad_rows[last + 1] - bad_rows[last - reach] > 0
        yield np.stack([w for w, _ in chunk]).astype(np.float32), last, broken
