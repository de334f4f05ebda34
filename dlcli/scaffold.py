"""`dlcli init DATA`: a commented starter config for a table (CSV or
Parquet), an image folder or an npz file, that trains as written.

What is inferred, and how:

* table: the target column's values decide the task. Text or booleans,
  or integers with at most 20 distinct values, are classes (two classes:
  one sigmoid unit and binary_crossentropy; more: softmax and
  sparse_categorical_crossentropy); other numbers are a regression (one
  linear unit, mean squared error). Every other column is a feature; its
  kind (number or category) is written as a comment, as dlcli's CSV reader
  standardises numbers and one-hot encodes categories itself.
* image folder: one sub-folder per class; a small CNN (Rescaling,
  three Conv2D blocks, global pooling) with flips as augmentation.
* npz: arrays `x` and `y`; images (rank 3-4) get a CNN, vectors an MLP,
  with the same task rules as tables.

Nothing here imports TensorFlow: pyarrow reads tables, NumPy reads npz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

from dlcli.errors import ConfigError, DataError

PathLike = Union[str, Path]
MAX_CLASSES_FROM_INTEGERS = 20
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path) -> Any:
    """The file as a pyarrow Table.

    Raises:
        DataError: unreadable.
    """
    try:
        if TABLE_SUFFIXES[path.suffix.lower()] == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pacsv

        opts = pacsv.ParseOptions(delimiter="\t") if path.suffix.lower() == ".tsv" else None
        return pacsv.read_csv(path, parse_options=opts) if opts else pacsv.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors are many
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def table_columns(path: PathLike) -> list[str]:
    """The column names of a CSV/Parquet file (for asking for a target)."""
    return list(read_table(Path(path)).column_names)


def _task(values: Sequence[Any], is_text: bool) -> tuple[str, list[str]]:
    """(classification | binary | regression, class names) from targets."""
    present = [v for v in values if v is not None]
    distinct = sorted({str(v) for v in present}) if is_text else sorted(set(present))
    integers = all(float(v).is_integer() for v in present) if not is_text else False
    if is_text or (integers and len(distinct) <= MAX_CLASSES_FROM_INTEGERS):
        names = [str(int(v)) if not is_text else str(v) for v in distinct]
        return ("binary" if len(names) == 2 else "classification"), names
    return "regression", []


def _head(task: str, n_classes: int) -> tuple[dict[str, Any], str, list[str]]:
    """(last layer, loss, metrics) for a task."""
    if task == "binary":
        return {"Dense": {"units": 1, "activation": "sigmoid"}}, "binary_crossentropy", ["accuracy"]
    if task == "classification":
        return {"Dense": {"units": n_classes, "activation": "softmax"}}, "sparse_categorical_crossentropy", ["accuracy"]
    return {"Dense": {"units": 1}}, "mean_squared_error", ["mean_absolute_error"]


def _yaml(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text  # a bare scalar's end marker


def _entry(e: Any) -> str:
    """`Dense: {units: 3}` for a one-key mapping, else the name."""
    if isinstance(e, dict) and len(e) == 1:
        ((k, v),) = e.items()
        return f"{k}: {_yaml(v)}"
    return str(e)


def _layers(entries: Sequence[Any]) -> str:
    return "\n".join(f"    - {_entry(e)}" for e in entries)


def _render(name: str, header: Sequence[str], data: dict[str, Any], data_notes: Sequence[str],
            layers: Sequence[Any], loss: str, metrics: list[str], epochs: int) -> str:
    lines = [f"# Starter config written by `dlcli init`: {line}" if i == 0 else f"# {line}" for i, line in enumerate(header)]
    lines += ["# Train it with: dlcli train " + f"{name}.yaml", "", f"name: {name}", "seed: 42", "", "data:"]
    lines += [f"  {k}: {_yaml(v) if k != 'augment' else '[' + ', '.join(_entry(a) for a in v) + ']'}" for k, v in data.items()]
    lines += [f"  # {n}" for n in data_notes]
    lines += ["", "model:", "  layers:", _layers(layers), "", "compile:", f"  loss: {loss}",
              "  optimizer: {class_name: adam, config: {learning_rate: 0.001}}", f"  metrics: {_yaml(metrics)}",
              "", "train:", f"  epochs: {epochs}", "  callbacks:",
              "    - EarlyStopping: {monitor: val_loss, patience: 5, restore_best_weights: true}", ""]
    return "\n".join(lines)


def table_config(path: Path, target: Optional[str], name: str) -> str:
    """A starter config for a CSV/Parquet file.

    Raises:
        ConfigError: no target given, or not a column (with the columns).
    """
    import pyarrow.types as pat

    from dlcli.config.suggest import did_you_mean

    table = read_table(path)
    cols = list(table.column_names)
    if not target:
        raise ConfigError(f"{path.name} needs a target column", key="--target",
                          hint=f"pass --target COLUMN; the columns are {', '.join(cols[:15])}")
    if target not in cols:
        raise ConfigError(f"no column {target!r} in {path.name}", key="--target",
                          hint=did_you_mean(target, cols) or f"the columns are {', '.join(cols[:15])}")
    col = table.column(target)
    is_text = not (pat.is_integer(col.type) or pat.is_floating(col.type))
    task, classes = _task(col.to_pylist(), is_text)
    kinds = []
    for c in cols:
        if c != target:
            t = table.column(c).type
            kinds.append(f"{c}: {'number' if pat.is_integer(t) or pat.is_floating(t) else 'category'}")
    source = TABLE_SUFFIXES[path.suffix.lower()]
    from dlcli.data.registry import SOURCES

    if source not in SOURCES:
        raise DataError(f"{path.name}: this dlcli has no {source} data source", hint="save the table as CSV")
    last, loss, metrics = _head(task, len(classes))
    what = f"{task}, {len(classes)} classes ({', '.join(classes[:10])})" if classes else "regression"
    header = [f"{path.name}, {table.num_rows:,} rows, target {target!r}: {what}.",
              "Numbers are standardised and categories one-hot encoded by dlcli's reader."]
    data = {"source": source, "path": str(path), "target": target, "validation_split": 0.2, "batch_size": 32}
    layers = [{"Dense": {"units": 64, "activation": "relu"}}, {"Dropout": {"rate": 0.2}},
              {"Dense": {"units": 32, "activation": "relu"}}, last]
    return _render(name, header, data, ["features (every other column): " + ", ".join(kinds)], layers, loss, metrics, 50)


def image_config(path: Path, name: str) -> str:
    """A starter config for a folder of class folders of images.

    Raises:
        DataError: fewer than two class folders with images.
    """
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")
                     and any(f.suffix.lower() in _IMAGE_SUFFIXES for f in d.rglob("*")))
    if len(classes) < 2:
        raise DataError(f"{path} needs at least two class folders of images (found {len(classes)})",
                        hint="one sub-folder per class: cats/, dogs/, ...")
    n = sum(1 for c in classes for f in (path / c).rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES)
    task = "binary" if len(classes) == 2 else "classification"
    last, loss, metrics = _head(task, len(classes))
    header = [f"{path}, {n:,} image files in {len(classes)} classes ({', '.join(classes[:10])}).",
              "A small CNN trained from scratch; for photos, `dlcli finetune --base mobilenet` usually does better."]
    data = {"source": "image_dir", "path": str(path), "image_size": [128, 128], "color_mode": "rgb",
            "validation_split": 0.2, "batch_size": 32, "augment": [{"RandomFlip": {"mode": "horizontal"}}]}
    layers = [{"Rescaling": {"scale": 1 / 255}}]
    for filters in (16, 32, 64):
        layers += [{"Conv2D": {"filters": filters, "kernel_size": 3, "activation": "relu", "padding": "same"}},
                   {"MaxPooling2D": {"pool_size": 2}}]
    layers += ["GlobalAveragePooling2D", {"Dropout": {"rate": 0.2}}, last]
    return _render(name, header, data, [], layers, loss, metrics, 20)


def npz_config(path: Path, name: str) -> str:
    """A starter config for an npz file of arrays `x` and `y`.

    Raises:
        DataError: unreadable, or without `x` and `y`.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k in ("x", "y")}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if set(arrays) != {"x", "y"}:
        raise DataError(f"{path} needs arrays x and y (it has {', '.join(sorted(arrays)) or 'neither'})")
    x, y = arrays["x"], arrays["y"]
    task, classes = _task(np.ravel(y).tolist(), y.dtype.kind in "USOb")
    last, loss, metrics = _head(task, len(classes))
    if x.ndim >= 3:
        body: list[Any] = [{"Reshape": {"target_shape": [*x.shape[1:3], 1]}}] if x.ndim == 3 else []
        body += [{"Conv2D": {"filters": 32, "kernel_size": 3, "activation": "relu"}}, {"MaxPooling2D": {"pool_size": 2}},
                 "Flatten", {"Dense": {"units": 64, "activation": "relu"}}]
    else:
        body = [{"Dense": {"units": 64, "activation": "relu"}}, {"Dense": {"units": 32, "activation": "relu"}}]
    what = f"{task}, {len(classes)} classes" if classes else "regression"
    header = [f"{path.name}: x {list(x.shape)} {x.dtype}, y {list(y.shape)} {y.dtype}: {what}."]
    data = {"source": "npz", "path": str(path), "validation_split": 0.2, "batch_size": 32}
    return _render(name, header, data, [], [*body, last], loss, metrics, 30)


def starter_config(data: PathLike, *, target: Optional[str] = None, name: Optional[str] = None) -> tuple[str, str]:
    """Infer a starter config for `data`.

    Returns:
        (the config's name, its YAML text with comments).

    Raises:
        ConfigError: a table without a usable --target.
        DataError: missing or unreadable data, or a kind dlcli cannot use.
    """
    path = Path(data)
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    stem = name or (path.stem if path.is_file() else path.resolve().name)
    if path.is_dir():
        return stem, image_config(path, stem)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return stem, table_config(path, target, stem)
    if suffix == ".npz":
        return stem, npz_config(path, stem)
    raise DataError(f"{path}: cannot tell what kind of data this is",
                    hint="give a .csv/.tsv/.parquet table, a .npz file or a folder of class folders of images")
