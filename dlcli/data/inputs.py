"""`load_inputs`: predict-time inputs, preprocessed as the run's spec says.

Every path is checked before the first batch is produced (a missing path or
a kind of input the model cannot take is an error, nothing half-printed);
then inputs stream in batches, so memory stays flat however many there are.
A bad individual input (a corrupt image, a CSV row with a word in a numeric
column) becomes an error entry and is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from dlcli.data.sources import IMAGE_EXTENSIONS
from dlcli.errors import DataError

Batch = tuple[list[str], np.ndarray, list[tuple[str, str]]]
_ARRAY_EXT = (".npz", ".npy")


def _describe(spec: dict) -> str:
    kind = spec.get("input_kind")
    if kind == "image":
        return "images (files or folders)"
    if kind == "vector":
        return "CSV rows (or NPZ arrays of features)"
    return "NPZ / NPY arrays"


def load_inputs(spec: dict, paths: Sequence[str], batch_size: int = 32) -> Iterator[Batch]:
    """See `dlcli.data.load_inputs`."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if not paths:
        raise DataError("no inputs given")
    kind = spec.get("input_kind")
    plan: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"input {raw} does not exist")
        ext = path.suffix.lower()
        if path.is_dir() or ext in IMAGE_EXTENSIONS:
            if kind != "image":
                raise DataError(f"input {raw} is {'a folder of images' if path.is_dir() else 'an image'}, "
                                f"but this model takes {_describe(spec)}")
            plan.append(("folder" if path.is_dir() else "image", path))
        elif ext == ".csv":
            if kind != "vector":
                raise DataError(f"input {raw} is a CSV file, but this model takes {_describe(spec)}")
            _check_csv_header(spec, path)
            plan.append(("csv", path))
        elif ext in _ARRAY_EXT:
            _check_array(spec, path)
            plan.append(("array", path))
        else:
            raise DataError(
                f"unsupported input {raw}: give image files ({', '.join(IMAGE_EXTENSIONS)}), "
                "folders of images, .csv or .npz / .npy files"
            )
    return _batches(_records(spec, plan, batch_size), spec, batch_size)


# ---------------------------------------------------------------- batching

def _batches(records: Iterator[tuple[str, Optional[np.ndarray], str]], spec: dict, batch_size: int) -> Iterator[Batch]:
    shape = tuple(spec.get("input_shape") or ())
    names: list[str] = []
    xs: list[np.ndarray] = []
    errors: list[tuple[str, str]] = []
    for name, x, error in records:
        if x is None:
            errors.append((name, error))
            continue
        names.append(name)
        xs.append(x)
        if len(xs) == batch_size:
            yield names, np.stack(xs).astype(np.float32), errors
            names, xs, errors = [], [], []
    if xs or errors:
        x = np.stack(xs).astype(np.float32) if xs else np.zeros((0,) + shape, np.float32)
        yield names, x, errors


def _records(spec: dict, plan: list[tuple[str, Path]], batch_size: int) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """(name, sample or None, error) for every input, in order."""
    from dlcli.data.images import is_image_name, walk_files

    run: list[str] = []  # consecutive image files, decoded together
    for kind, path in plan:
        if kind == "image":
            run.append(str(path))
        elif kind == "folder":
            for f in walk_files(str(path)):
                if is_image_name(f):
                    run.append(f)
                    continue
                yield from _image_records(spec, run, batch_size)
                run = []
                yield f, None, "not an image file (extension not " + ", ".join(IMAGE_EXTENSIONS) + ")"
        else:
            yield from _image_records(spec, run, batch_size)
            run = []
            yield from (_csv_records(spec, path) if kind == "csv" else _array_records(spec, path))
    yield from _image_records(spec, run, batch_size)


# ------------------------------------------------------------------ images

_DECODERS: dict[tuple, Any] = {}


def _decoder(spec: dict):
    """The training decoder for this spec, wrapped in one tf.function."""
    import tensorflow as tf

    from dlcli.data.images import make_decoder

    size = tuple(spec.get("image_size") or spec["input_shape"][:2])
    channels = 1 if spec.get("color_mode") == "grayscale" else 3
    key = (size, channels)
    if key not in _DECODERS:
        decode = make_decoder(size, channels)
        _DECODERS[key] = (
            decode,
            tf.function(decode, input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)]),
        )
    return _DECODERS[key]


def _image_records(spec: dict, files: list[str], chunk: int) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """Check and decode image files `chunk` at a time (lazily)."""
    for start in range(0, len(files), chunk):
        yield from _decode_chunk(spec, files[start : start + chunk])


def _decode_chunk(spec: dict, files: list[str]) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    import tensorflow as tf

    from dlcli.data.images import check_images

    codes, bad = check_images(files, target=_image_shape(spec)[:2])
    reasons = dict(bad)
    good = [i for i, c in enumerate(codes) if c >= 0]
    decoded: dict[int, np.ndarray] = {}
    decode, decode_one = _decoder(spec)
    if good:
        ds = tf.data.Dataset.from_tensor_slices(([files[i] for i in good], codes[good]))
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(len(good))
        try:
            batch = next(iter(ds)).numpy()
            decoded = {i: batch[k] for k, i in enumerate(good)}
        except tf.errors.OpError:
            # A file passed the check but does not decode: find it alone.
            for i in good:
                try:
                    decoded[i] = decode_one(tf.constant(files[i]), tf.constant(codes[i], tf.int32)).numpy()
                except tf.errors.OpError as exc:
                    reasons[files[i]] = f"cannot decode ({exc.message.splitlines()[0][:200]})"
    for i, f in enumerate(files):
        if i in decoded:
            yield f, _finish_image(spec, decoded[i]), ""
        else:
            yield f, None, reasons.get(f, "unreadable image")


def _finish_image(spec: dict, img: np.ndarray) -> np.ndarray:
    """Decoded 0..255 pixels -> the training input: its pixel range and
    sequence layout."""
    low, high = spec.get("pixel_range") or (0.0, 255.0)
    if (low, high) != (0.0, 255.0):
        img = low + img * ((high - low) / 255.0)
    return _sequence_layout(spec, img).astype(np.float32)


def _sequence_layout(spec: dict, img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> what the model takes: itself, its rows (H, W*C), or
    for ctc_digits its columns (W, H)."""
    if not spec.get("sequence"):
        return img
    if spec.get("sequence_axis") == "width":
        return img[..., 0].T
    return img.reshape(img.shape[0], -1)


# -------------------------------------------------------------------- csv

def _check_csv_header(spec: dict, path: Path) -> None:
    from dlcli.data._util import did_you_mean
    from dlcli.data.tabular import read_csv

    header, rows = read_csv(path)
    rows.close()
    features = spec.get("features") or []
    missing = [c for c in features if c not in header]
    if missing:
        hints = [h for h in (did_you_mean(c, header) for c in missing) if h]
        raise DataError(
            f"{path} lacks the feature column(s) {', '.join(map(repr, missing))} the model was trained on"
            + (f" ({'; '.join(hints)})" if hints else "")
        )


def _csv_records(spec: dict, path: Path) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    from dlcli.data.tabular import encode_table, read_csv

    header, rows = read_csv(path)
    features = spec["features"]
    numeric = spec.get("numeric") or features
    categories = spec.get("categorical") or {}
    where = [header.index(c) for c in features]
    stats = spec.get("standardize")
    for line, row in rows:
        name = f"{path}:{line}"
        try:
            x, _ = encode_table(path, features, numeric, categories, [[row[j] for j in where]], [line])
        except DataError as exc:
            yield name, None, exc.message
            continue
        yield name, _standardize(spec, x[0], stats), ""


def _standardize(spec: dict, x: np.ndarray, stats: Optional[dict]) -> np.ndarray:
    from dlcli.data.arrays import standardize

    if stats:
        return standardize(x[None], stats["mean"], stats["std"])[0]
    return np.nan_to_num(x.astype(np.float32))


# ----------------------------------------------------------------- arrays

def _open_array(path: Path) -> np.ndarray:
    """The array in an .npy file (memory-mapped) or an .npz file (`x`, or
    its only array)."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            if "x" in keys:
                return f["x"]
            if len(keys) == 1:
                return f[keys[0]]
            raise DataError(f"{path} has arrays {', '.join(keys)}: name the inputs `x` (or keep a single array)")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read {path}: {exc}") from None


def _image_shape(spec: dict) -> Optional[tuple]:
    if spec.get("input_kind") != "image" or not spec.get("image_size"):
        return None
    h, w = spec["image_size"]
    return (int(h), int(w), 1 if spec.get("color_mode") == "grayscale" else 3)


def _array_to_input(spec: dict, x: np.ndarray) -> np.ndarray:
    """One array sample -> the model's input layout. Samples of a sequence
    model may be given as images; they get the training's sequence layout
    (raw pixel values, as in training arrays)."""
    shape = tuple(spec["input_shape"])
    image = _image_shape(spec)
    if spec.get("sequence") and image and x.shape != shape and x.size == int(np.prod(image)):
        return _sequence_layout(spec, x.reshape(image))
    return x.reshape(shape)


def _check_array(spec: dict, path: Path) -> None:
    if spec.get("input_kind") == "vector" and spec.get("categorical"):
        raise DataError(f"input {path}: this model was trained on CSV with categorical columns; give CSV rows")
    arr = _open_array(path)
    want = tuple(spec["input_shape"])
    got = arr.shape[1:]
    if arr.ndim < 1 or int(np.prod(got)) != int(np.prod(want)):
        raise DataError(f"{path} holds samples of shape {tuple(got)}, but the model takes {tuple(want)}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{path} holds {arr.dtype} values, not numbers")


def _array_records(spec: dict, path: Path) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    arr = _open_array(path)
    stats = spec.get("standardize") if spec.get("input_kind") == "vector" else None
    for i in range(len(arr)):
        x = _array_to_input(spec, np.asarray(arr[i], dtype=np.float32))
        if spec.get("input_kind") == "vector":
            x = _standardize(spec, x, stats)
        yield f"{path}:{i}", x, ""
