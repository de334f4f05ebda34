"""Column types for CSV / Parquet features, through `keras.utils.FeatureSpace`.

`data.column_types` names a column's FeatureSpace feature type (float,
float_rescaled, float_normalized, float_discretized, integer_categorical,
integer_hashed, string_categorical, string_hashed; `hashed` picks the
string or integer one), or `text` (raw strings straight into a model input,
for a TextVectorization in the model) or `passthrough` (the value as it
is). An entry may be a mapping, `{type: string_hashed, num_bins: 64}`, whose
other keys are the FeatureSpace method's arguments. Unlisted columns:
numbers are float_normalized, strings string_categorical, and a string
column that looks like free text (most values distinct) is an error that
asks for a type instead of being one-hot encoded per value.

The FeatureSpace is adapted on the training split and its layers sit in
front of the config's layers in the saved model (`attach`), so predict and
export take raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from dlcli.data._util import cfg_error, did_you_mean

FS_TYPES = (
    "float", "float_rescaled", "float_normalized", "float_discretized",
    "integer_categorical", "integer_hashed", "string_categorical", "string_hashed",
)
TYPES = FS_TYPES + ("hashed", "text", "passthrough")
# The input a column's raw values reach the model as.
_FLOAT, _INT, _STRING = "float32", "int64", "string"
# What a gap in a string column becomes.
MISSING = "(missing)"
# Defaults for arguments FeatureSpace requires.
_DEFAULTS = {"float_discretized": {"num_bins": 10}, "string_hashed": {"num_bins": 64}, "integer_hashed": {"num_bins": 64}}
# A string column with more distinct values than this share of its rows
# (and at least this many rows) is free text, not categories.
_TEXT_SHARE, _TEXT_MIN_ROWS = 0.5, 20


@dataclass
class Column:
    """One feature column: its type, the dtype its raw values have in the
    model, the value that fills a gap, and the model input it feeds."""

    name: str
    type: str
    dtype: str
    kwargs: dict[str, Any]
    fill: Any
    group: str


def _declared(cfg: Any, name: str) -> tuple[Optional[str], dict[str, Any]]:
    raw = (cfg.data.column_types or {}).get(name)
    if raw is None:
        return None, {}
    key = f"data.column_types.{name}"
    if isinstance(raw, dict):
        kwargs = dict(raw)
        kind = kwargs.pop("type", None)
        if kind is None:
            raise cfg_error(cfg, key, "a column type mapping needs type:", hint="e.g. {type: string_hashed, num_bins: 64}")
    else:
        kind, kwargs = raw, {}
    if kind not in TYPES:
        raise cfg_error(cfg, key, f"unknown column type {kind!r}", hint=did_you_mean(kind, TYPES) or "types are " + ", ".join(TYPES))
    return str(kind), kwargs


def plan_columns(cfg: Any, table: Any, features: list[str], groups: dict[str, str], path: Any) -> list[Column]:
    """Decide each feature column's type from `data.column_types` and the
    data, and fill its gaps' value from `table` (the training rows).

    Raises:
        ConfigError: an unknown type, a type that cannot take the column,
            or a free-text column without a type.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for name in features:
        col = table.column(name)
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
        kind, kwargs = _declared(cfg, name)
        key = f"data.column_types.{name}"
        if kind is None:
            if not numeric and _looks_like_text(col):
                raise cfg_error(cfg, key, f"column {name!r} of {path} looks like free text "
                                f"({pc.count_distinct(col).as_py()} distinct values in {len(col)} rows)",
                                hint=f"set data.column_types.{name}: text (raw strings to the model), string_hashed, or string_categorical")
            kind = "float_normalized" if numeric else "string_categorical"
        if kind == "hashed":
            kind = "integer_hashed" if pa.types.is_integer(col.type) else "string_hashed"
        if kind.startswith("float") and not numeric:
            raise cfg_error(cfg, key, f"column {name!r} holds strings; {kind} needs numbers",
                            hint="use string_categorical, string_hashed or text")
        if kind.startswith("integer") and not (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
            raise cfg_error(cfg, key, f"column {name!r} is {col.type}, not whole numbers; {kind} needs integers",
                            hint="use float_discretized, or string_categorical")
        dtype = (_FLOAT if kind.startswith("float") or (kind == "passthrough" and numeric)
                 else _INT if kind.startswith("integer") else _STRING)
        out.append(Column(name, kind, dtype, {**_DEFAULTS.get(kind, {}), **kwargs}, _fill(col, dtype), groups.get(name, "features")))
    return out


def _looks_like_text(col: Any) -> bool:
    import pyarrow.compute as pc

    n = len(col) - col.null_count
    return n >= _TEXT_MIN_ROWS and pc.count_distinct(col).as_py() > _TEXT_SHARE * n


def _fill(col: Any, dtype: str) -> Any:
    """The value a gap gets: the training mean (floats), -1 (integers:
    IntegerLookup's out-of-vocabulary token), MISSING (strings: a category
    of its own; an empty string would not survive saving the vocabulary)."""
    import pyarrow.compute as pc

    if dtype == _FLOAT:
        mean = pc.mean(col.cast("float64")).as_py()
        return 0.0 if mean is None else float(mean)
    return -1 if dtype == _INT else MISSING


def feature_space(columns: list[Column], crosses: list[dict[str, Any]], cfg: Any) -> Any:
    """The (unadapted) FeatureSpace of the columns it encodes; None when
    every column goes to the model as it is (text, passthrough strings)."""
    from keras.utils import FeatureSpace

    features = {c.name: getattr(FeatureSpace, "float" if c.type == "passthrough" else c.type)(**c.kwargs)
                for c in columns if c.type in FS_TYPES or (c.type == "passthrough" and c.dtype == _FLOAT)}
    if not features:
        return None
    made = []
    for i, cross in enumerate(crosses):
        names = list(cross.get("features") or [])
        bad = [n for n in names if n not in features or not features[n].output_mode == "one_hot"]
        if len(names) < 2 or bad:
            raise cfg_error(cfg, f"data.crosses.{i}", "a cross joins two or more categorical feature columns",
                            hint=f"not categorical here: {', '.join(bad)}" if bad else "features: [a, b]")
        made.append(FeatureSpace.cross(names, crossing_dim=int(cross.get("crossing_dim", 32))))
    try:
        return FeatureSpace(features=features, crosses=made or None, output_mode="dict")
    except (TypeError, ValueError) as exc:
        raise cfg_error(cfg, "data.column_types", f"FeatureSpace: {exc}") from None


def adapt_feature_space(fs: Any, columns: dict[str, Any]) -> None:
    """`FeatureSpace.adapt` on in-memory columns: each preprocessing layer
    adapts on its whole column at once (FeatureSpace's own adapt makes one
    tf.data pass per column, ~0.3 s each whatever the batch size), then the
    FeatureSpace finishes building as its adapt does (Keras 3.x's
    FeatureSpace flags; a Keras without them gets FeatureSpace's own
    adapt). Its layers are marked adapted (`mark_adapted`)."""
    from dlcli.model.adapt import needs_adapt

    if not _knows_flags(fs):
        # A Keras whose FeatureSpace keeps other state: its own adapt, slower.
        import tensorflow as tf

        fs.adapt(tf.data.Dataset.from_tensor_slices({n: columns[n] for n in fs.preprocessors}).batch(65536))
        mark_adapted(fs)
        return
    for name, layer in fs.preprocessors.items():
        if needs_adapt(layer):
            layer.adapt(columns[name])
    fs._is_adapted = True  # what FeatureSpace.adapt sets once its layers adapted
    fs.get_encoded_features()
    fs.built = fs._sublayers_built = True
    mark_adapted(fs)


def _knows_flags(fs: Any) -> bool:
    """The FeatureSpace has the state flags its adapt sets in Keras 3.x."""
    return hasattr(fs, "_is_adapted") and hasattr(fs, "_sublayers_built")


def mark_adapted(fs: Any) -> None:
    """Tell `dlcli.model.adapt` that the FeatureSpace's layers hold their
    adapted state already (it adapts what is left in the model once, not
    these a second time over the same rows)."""
    for layer in fs.preprocessors.values():
        for sub in getattr(layer, "_flatten_layers", lambda: [layer])():
            sub.dlcli_adapted = True


def head(columns: list[Column], fs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw-row inputs (one per column) and the tensor each model input
    gets: the concatenated FeatureSpace encodings of its columns, or a
    text / passthrough column as it is."""
    import keras

    inputs: dict[str, Any] = dict(fs.get_inputs()) if fs is not None else {}
    encoded: dict[str, Any] = dict(fs.get_encoded_features()) if fs is not None else {}
    parts: dict[str, list[Any]] = {}
    for c in columns:
        if c.name not in inputs:
            inputs[c.name] = keras.Input(shape=(1,), dtype=c.dtype, name=c.name)
            encoded[c.name] = inputs[c.name]
        parts.setdefault(c.group, []).append(encoded.pop(c.name))
    groups = {c.name: c.group for c in columns}
    for cross_name, tensor in encoded.items():  # crosses join their first column's input
        first = cross_name.split("_X_")[0]
        parts.setdefault(groups.get(first, "features"), []).append(tensor)
    out = {}
    for group, tensors in parts.items():
        floats = [keras.ops.cast(t, "float32") if t.dtype != "string" else t for t in tensors]
        out[group] = floats[0] if len(floats) == 1 else keras.layers.Concatenate(name=f"{group}_features")(floats)
    return inputs, out


def check_groups(cfg: Any, columns: list[Column]) -> None:
    """A text column feeds a model input of its own (strings do not
    concatenate with numbers).

    Raises:
        ConfigError: at `data.inputs.<name>`.
    """
    by_group: dict[str, list[Column]] = {}
    for c in columns:
        by_group.setdefault(c.group, []).append(c)
    for group, cols in by_group.items():
        strings = [c.name for c in cols if c.dtype == _STRING and c.type not in FS_TYPES]
        if strings and len(cols) > 1:
            key = f"data.inputs.{group}" if cfg.data.inputs else "data.inputs"
            raise cfg_error(cfg, key, f"text column(s) {', '.join(map(repr, strings))} need a model input of their own",
                            hint=f"e.g. data.inputs: {{{strings[0]}: {strings[0]}, features: [...]}}")
