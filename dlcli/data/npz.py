"""The `npz` source: arrays `x` and `y`, or one array per model input and
output, with optional validation / test arrays and sample weights.

Naming, as DESIGN.md ("Contract, part 2") fixes it:

* inputs: `x`, or the arrays named after the model's inputs
  (`model.inputs: [a, b]`, shapes from the arrays);
* targets: `y`, or the arrays `data.target` names (one per output layer,
  named after it), else the arrays named after `model.outputs`;
* `<name>_val` / `<name>_test` (`x_val`, `y_val`, `x_test`, `y_test`):
  explicit validation and test data; without them `validation_split` /
  `test_split` are taken, seeded;
* `data.sample_weight` (default: an array called `sample_weight`, if any):
  per-sample loss weights (`<name>_val` weights the validation loss).

A target may have any shape: class labels (integers, strings or one-hot
rows; `class_names` / `<target>_class_names` name them), or float arrays
of any shape (images for an autoencoder, several regression values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from dlcli.data._util import cfg_error, split_indices
from dlcli.data.arrays import ArraySet, assemble, finish
from dlcli.data.bundle import DataBundle
from dlcli.data.labels import TASKS, encode_labels, loss_label_mode
from dlcli.data.vocab import encode_transcripts, token_separator
from dlcli.errors import DataError

SPLITS = ("val", "test")
_WEIGHT = "sample_weight"


def npz_source(cfg: Any) -> DataBundle:
    """Load an `.npz` file as the module docstring describes.

    Raises:
        ConfigError: a named input / target / weight that is not in the file.
        DataError: the file is unreadable, holds 0-d arrays, or shapes disagree.
    """
    from dlcli.data.tabular import _data_path

    path = _data_path(cfg, "npz", (".npz",))
    arrays = read_npz(path)
    inputs, targets, weight = _roles(cfg, arrays, path)
    # CTC labels (padded sequences or strings) are shaped per target, as
    # named arrays are.
    plain = (inputs == ["x"] and targets == ["y"] and weight is None and not _has_split(arrays, "x", "val")
             and loss_label_mode(cfg.compile.loss) != "ctc")
    if plain:
        token_separator(cfg, [])  # no string CTC target here: data.vocabulary is an error
        return finish(cfg, _plain_set(cfg, arrays, path))
    return _named_bundle(cfg, arrays, path, inputs, targets, weight)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file (no pickles).

    Raises:
        DataError: unreadable, or an array without a sample axis.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path} as an .npz file: {first}") from None
    scalars = [k for k, v in arrays.items() if v.ndim == 0 and not k.endswith("class_names")]
    if scalars:
        raise DataError(f"{path}: array {scalars[0]!r} is 0-d (a single value); npz arrays need a sample axis first")
    return arrays


def _found(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()) or "no arrays"


def _has_split(arrays: dict, name: str, split: str) -> bool:
    return f"{name}_{split}" in arrays


def _roles(cfg: Any, arrays: dict, path: Path) -> tuple[list[str], list[str], Optional[str]]:
    """The arrays that are inputs, targets and the sample weight."""
    d, m = cfg.data, cfg.model
    target = d.target
    if target is None:
        targets = ["y"] if "y" in arrays or not m.outputs else [str(o) for o in m.outputs]
    else:
        targets = [str(t) for t in ([target] if isinstance(target, str) else target)]
    weight_key = getattr(d, "sample_weight", None)
    weight = weight_key if weight_key else (_WEIGHT if _WEIGHT in arrays else None)
    for key, names in (("data.target", targets), ("data.sample_weight", [weight] if weight else [])):
        for n in names:
            if n not in arrays:
                raise (cfg_error(cfg, key, f"{path} has no array {n!r} (found: {_found(arrays)})")
                       if key == "data.sample_weight" or target is not None else
                       DataError(f"{path} lacks array(s) {n!r} (found: {_found(arrays)}); an npz source needs "
                                 "x and y, or arrays named after the model's inputs and outputs"))
    if m.inputs:
        inputs = [str(n) for n in m.inputs]
        missing = [n for n in inputs if n not in arrays]
        if missing:
            raise cfg_error(cfg, "model.inputs", f"{path} has no array {missing[0]!r} for model input {missing[0]!r} "
                            f"(found: {_found(arrays)})")
    elif "x" in arrays:
        inputs = ["x"]
    else:
        raise DataError(f"{path} lacks array(s) 'x' (found: {_found(arrays)}); an npz source needs x and y, "
                        "or arrays named after the model's inputs (model.inputs) and outputs (data.target)")
    return inputs, targets, weight


# --------------------------------------------------------- one x and one y

def _plain_set(cfg: Any, arrays: dict, path: Path) -> ArraySet:
    """`x`, `y` (and `x_test`, `y_test`): the classic npz, through `finish`."""
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path} has only one of x_test / y_test (found: {_found(arrays)}); give both or neither")
    x, xt = _numeric_input(arrays["x"], path, "x"), arrays.get("x_test")
    xt = None if xt is None else _numeric_input(xt, path, "x_test")
    _same_length(path, {"x": x, "y": arrays["y"]})
    if xt is not None:
        _same_length(path, {"x_test": xt, "y_test": arrays["y_test"]})
        if x.shape[1:] != xt.shape[1:]:
            raise DataError(f"{path}: x samples are {x.shape[1:]} but x_test samples are {xt.shape[1:]}")
    mode = loss_label_mode(cfg.compile.loss)
    ys, names = _labels({k: arrays[k] for k in ("y", "y_test") if k in arrays}, _class_names(arrays, "y"), mode, path, "y")
    ys = ys if names else {k: v.astype(np.float32) for k, v in ys.items()}
    return ArraySet(source="npz", x=x, y=ys["y"], x_test=xt, y_test=ys.get("y_test"), class_names=names,
                    kind="array", spec={"path": str(path)})


def _numeric_input(x: np.ndarray, path: Path, name: str) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        if x.dtype.kind == "U":
            return x  # raw strings, for a model that starts with TextVectorization / StringLookup
        raise DataError(f"{path}: {name} must be numeric, found dtype {x.dtype}")
    return x if x.dtype in (np.uint8, np.float32) else x.astype(np.float32)


def _same_length(path: Path, arrays: dict[str, np.ndarray]) -> None:
    lengths = [(k, len(v)) for k, v in arrays.items()]
    for k, n in lengths[1:]:
        if n != lengths[0][1]:
            raise DataError(f"{path}: {lengths[0][0]} has {lengths[0][1]} samples but {k} has {n}")


def _class_names(arrays: dict, name: str) -> Optional[list[str]]:
    """`<name>_class_names`, else `class_names`, from the file."""
    for key in (f"{name}_class_names", "class_names"):
        if key in arrays:
            return [str(n) for n in np.atleast_1d(arrays[key]).tolist()]
    return None


def _labels(ys: dict, names: Optional[list[str]], mode: Optional[str], path: Path, name: str) -> tuple[dict, Optional[list[str]]]:
    """One target's splits (`ys`) as class indices with their class names,
    or as float targets with None."""
    every = np.concatenate(list(ys.values()))
    if every.ndim == 2 and every.shape[1] > 1 and mode in (None, "int", "onehot", "binary") and _is_onehot(every):
        names = names or [str(i) for i in range(every.shape[1])]
        ys = {k: v.argmax(1) for k, v in ys.items()}
        every = every.argmax(1)
    if not _is_class_labels(every, mode):
        return ys, None
    values = np.unique(every)
    if names is None:
        names = [str(v) for v in values]
        return {k: np.searchsorted(values, v).astype(np.int64) for k, v in ys.items()}, names
    if not np.issubdtype(every.dtype, np.integer) or values.min() < 0 or values.max() >= len(names):
        raise DataError(f"{path}: {name} must hold indices 0..{len(names) - 1} into its class_names")
    return {k: v.astype(np.int64) for k, v in ys.items()}, names


def _is_onehot(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def _is_class_labels(y: np.ndarray, mode: Optional[str]) -> bool:
    if mode == "ctc" or y.ndim != 1:
        return False
    if y.dtype.kind in "USb":
        return True
    if mode == "float":
        return False
    if np.issubdtype(y.dtype, np.integer):
        return True
    # Float labels count as classes only when the loss asks for classes.
    return mode in ("int", "onehot", "binary") and bool(np.all(np.mod(y, 1) == 0))


# ------------------------------------------------ named inputs and outputs

def _named_bundle(cfg: Any, arrays: dict, path: Path, inputs: list[str], targets: list[str],
                  weight: Optional[str]) -> DataBundle:
    """Arrays per model input and output, with splits and weights."""
    d = cfg.data
    for key in ("classes", "samples_per_class", "sequence"):
        if getattr(d, key):
            raise cfg_error(cfg, f"data.{key}", f"data.{key} works with one x and one y array, not named arrays")
    if d.augment and inputs != ["x"]:
        raise cfg_error(cfg, "data.augment", "data.augment transforms one input array; put the augmentation layers in the model")
    parts = _split_parts(arrays, path, inputs, targets, weight)
    outputs = []
    for i, t in enumerate(targets):
        encoded, info = _encode_target(cfg, arrays, path, t, i, {s: p[t] for s, p in parts.items()})
        for s, y in encoded.items():
            parts[s][t] = y
        outputs.append(info)
    strat = next((parts["train"][o["name"]] for o in outputs if o["class_names"] and o["label_mode"] == "int"), None)
    parts = _take_splits(cfg, parts, strat)

    def structure(p: Optional[dict]) -> Optional[tuple]:
        if p is None:
            return None
        x = p["x"] if inputs == ["x"] else {n: p[n] for n in inputs}
        y = p[targets[0]] if len(targets) == 1 else {t: p[t] for t in targets}
        w = p.get(weight) if weight else None  # one array: Keras weights every output's loss with it
        return (x, y) if w is None else (x, y, w)

    first = outputs[0]
    spec: dict[str, Any] = {
        "source": "npz", "path": str(path), "task": first["task"], "label_mode": first["label_mode"],
        "class_names": first["class_names"], "num_classes": first["num_classes"], "input_kind": "array",
        "sequence": False, "target": targets if len(targets) > 1 else targets[0], "sample_weight": weight,
        "outputs": outputs, "token_separator": token_separator(cfg, outputs),
    }
    if first["class_names"] and first["label_mode"] == "int":
        spec["class_counts"] = np.bincount(parts["train"][first["name"]], minlength=first["num_classes"]).tolist()
    elif not first["class_names"]:
        # Values per sample; for an image / array target, per position
        # (what the last layer outputs).
        shape = first["shape"]
        spec["target_width"] = 1 if not shape else int(shape[-1]) if len(shape) >= 2 else int(shape[0])
    return assemble(cfg, spec, structure(parts["train"]), structure(parts.get("val")), structure(parts.get("test")))


def _split_parts(arrays: dict, path: Path, inputs: list[str], targets: list[str], weight: Optional[str]) -> dict:
    """{split: {array name: array}} for train and the explicit splits."""
    names = inputs + targets
    parts = {"train": {k: arrays[k] for k in names + ([weight] if weight else [])}}
    for split in SPLITS:
        have = [k for k in names if _has_split(arrays, k, split)]
        if not have:
            continue
        if len(have) < len(names):
            lacking = [f"{k}_{split}" for k in names if k not in have]
            raise DataError(f"{path} has {', '.join(f'{k}_{split}' for k in have)} but not {', '.join(lacking)} "
                            f"(found: {_found(arrays)}); give every input and target of the {split} split, or none")
        parts[split] = {k: arrays[f"{k}_{split}"] for k in names}
        if weight and _has_split(arrays, weight, split):
            parts[split][weight] = arrays[f"{weight}_{split}"]
    for split, p in parts.items():
        for k in inputs:
            p[k] = _numeric_input(p[k], path, k if split == "train" else f"{k}_{split}")
        if weight and weight in p:
            p[weight] = np.asarray(p[weight], np.float32).reshape(len(p[weight]))
        _same_length(path, {(k if split == "train" else f"{k}_{split}"): v for k, v in p.items()})
        for k in inputs:
            if p[k].shape[1:] != parts["train"][k].shape[1:]:
                raise DataError(f"{path}: {k} samples are {parts['train'][k].shape[1:]} but {k}_{split} samples "
                                f"are {p[k].shape[1:]}")
    return parts


def output_loss(cfg: Any, name: str, index: int) -> Any:
    """The `compile.loss` entry of one output (a mapping by output name,
    a list by position, or one loss for all)."""
    loss = cfg.compile.loss
    if isinstance(loss, dict) and "class_name" not in loss and name in loss:
        return loss[name]
    if isinstance(loss, list):
        return loss[index] if index < len(loss) else None
    return loss


def _encode_target(cfg: Any, arrays: dict, path: Path, name: str, index: int, ys: dict) -> tuple[dict, dict]:
    """One target's splits shaped for its loss, and its entry in
    `spec["outputs"]`: class labels (one per sample), integer arrays for
    a sparse loss (per-pixel masks) or CTC (padded label sequences), else
    float arrays of any shape (images for an autoencoder)."""
    wanted = loss_label_mode(output_loss(cfg, name, index))
    values, names = _labels(ys, _class_names(arrays, name), wanted, path, name)
    train = values["train"]
    if names is not None:
        mode = wanted if wanted in ("int", "onehot", "binary") else "int"
        encoded = {k: encode_labels(cfg, v, mode, len(names)) for k, v in values.items()}
    elif wanted == "ctc" and train.dtype.kind in "USO":
        encoded, names, _ = encode_transcripts(cfg, values, f"{path.name}'s {name}")
        mode = "ctc"
    elif wanted in ("int", "ctc"):
        if train.ndim == 1 or not np.all(np.mod(train, 1) == 0):
            key = f"compile.loss.{name}" if isinstance(cfg.compile.loss, dict) else "compile.loss"
            raise cfg_error(cfg, key, f"output {name!r}: the loss needs integer class indices, but {path}'s {name} "
                            f"holds {'continuous values' if train.ndim > 1 else 'one continuous value per sample'}",
                            hint="use a regression loss such as mse")
        mode, encoded = wanted, {k: v.astype(np.int32) for k, v in values.items()}
    else:
        mode, encoded = "float", {k: v.astype(np.float32) for k, v in values.items()}
    info = {"name": name, "task": TASKS[mode], "label_mode": mode, "class_names": names,
            "num_classes": len(names) if names else None, "shape": list(encoded["train"].shape[1:])}
    return encoded, info


def _take_splits(cfg: Any, parts: dict, strat: Optional[np.ndarray]) -> dict:
    """Seeded test / validation splits where the file gives none; `limit`."""
    d, seed = cfg.data, int(cfg.seed)
    train = parts["train"]

    def take(idx: np.ndarray) -> dict:
        return {k: v[idx] for k, v in train.items()}

    for split, fraction in (("test", d.test_split), ("val", d.validation_split)):
        if split in parts:
            continue
        n = len(next(iter(train.values())))
        kept, held = split_indices(n, fraction, seed, strat if strat is None else strat[: n])
        if len(held):
            parts[split] = take(held)
        train = take(kept)
        strat = None if strat is None else strat[kept]
    if d.limit:
        train = {k: v[: d.limit] for k, v in train.items()}
    parts["train"] = train
    return parts


# ------------------------------------------------------------------ predict

def named_batches(spec: Any, paths: list[str], batch_size: int) -> Iterator[tuple[list[str], dict, list]]:
    """Predict-time batches for a model with named inputs: `.npz` files
    holding one array per input (as in training). Every file is checked
    before the first batch.

    Raises:
        DataError: not an .npz file, an input array missing, or samples of
            another shape than in training.
    """
    files = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.suffix.lower() != ".npz" or not path.is_file():
            raise DataError(f"input {raw}: this model takes named inputs ({', '.join(spec.inputs)}); "
                            "give .npz files with one array per input")
        arrays = read_npz(path)
        missing = [n for n in spec.inputs if n not in arrays]
        if missing:
            raise DataError(f"input {raw} has no array {missing[0]!r} (found: {_found(arrays)}); "
                            f"the model's inputs are {', '.join(spec.inputs)}")
        x = {n: _numeric_input(arrays[n], path, n) for n in spec.inputs}
        for n, a in x.items():
            if list(a.shape[1:]) != list(spec.inputs[n]):
                raise DataError(f"input {raw}: {n} samples are {list(a.shape[1:])}, the model takes {spec.inputs[n]}")
        _same_length(path, x)
        files.append((path, x))

    def batches() -> Iterator[tuple[list[str], dict, list]]:
        for path, x in files:
            n = len(next(iter(x.values())))
            for start in range(0, n, batch_size):
                end = min(n, start + batch_size)
                yield [f"{path}:{i}" for i in range(start, end)], {k: v[start:end] for k, v in x.items()}, []

    return batches()
