"""`load_inputs`: predict-time inputs, preprocessed as the run's spec says.

Every path is checked before the first batch is produced (a missing path or
a kind of input the model cannot take is an error, nothing half-printed);
then inputs stream in batches, so memory stays flat however many there are.
Consecutive image inputs (files and folders) are checked together, then
read, decoded and preprocessed by one parallel tf.data pipeline, so a
folder predicts about as fast as a hand-tuned tf.data script would read it;
with `tensors=True` its batches stay the pipeline's tensors (no copy into
numpy and back on the way to the model).
A bad individual input (a corrupt image, a CSV row with a word in a numeric
column) becomes an error entry and is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from dlcli.data.registry import IMAGE_EXTENSIONS, Reader, all_suffixes, reader_for_path, readers_for_kind
from dlcli.data.spec import DataSpec
from dlcli.errors import DataError

Batch = tuple[list[str], np.ndarray, list[tuple[str, str]]]
_NOT_AN_IMAGE = "not an image file (extension not " + ", ".join(IMAGE_EXTENSIONS) + ")"


class _Block(NamedTuple):
    """Consecutive inputs decoded together: `x[k]` is `names[k]`'s sample
    (`x` an array, or the image pipeline's tensor); each error `(k, name,
    message)` came before `names[k]` (k == len(names): after the last)."""

    names: list[str]
    x: Any
    errors: list[tuple[int, str, str]]


# One input (name, sample or None, error), or a block of them.
_Item = Union[tuple[str, Optional[np.ndarray], str], _Block]


def _describe(spec: DataSpec) -> str:
    return " or ".join(r.what for r in readers_for_kind(spec.input_kind)) or "inputs of no known kind"


def load_inputs(spec: DataSpec | dict, paths: Sequence[str], batch_size: int = 32, *,
                tensors: bool = False) -> Iterator[Batch]:
    """See `dlcli.data.load_inputs`."""
    spec = DataSpec.read(spec)
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if not paths:
        raise DataError("no inputs given")
    if spec.inputs:
        from dlcli.data.npz import named_batches  # one array per named model input

        return named_batches(spec, list(paths), batch_size)
    plan: list[tuple[Reader, Path]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"input {raw} does not exist")
        reader = reader_for_path(path)
        if reader is None:
            raise DataError(
                f"unsupported input {raw}: give image files or folders ({', '.join(IMAGE_EXTENSIONS)}), "
                f"or {', '.join(s for s in all_suffixes() if s not in IMAGE_EXTENSIONS)} files"
            )
        if spec.input_kind not in reader.accepts:
            what = ("a folder of images" if path.is_dir() else "an image" if reader.records is None
                    else f"a {path.suffix[1:].upper()} file")
            raise DataError(f"input {raw} is {what}, but this model takes {_describe(spec)}")
        if reader.check:
            reader.function("check")(spec, path)
        plan.append((reader, path))
    return _batches(_records(spec, plan, batch_size), spec, batch_size, tensors)


# ---------------------------------------------------------------- batching

def _batches(items: Iterator[_Item], spec: DataSpec, batch_size: int, tensors: bool = False) -> Iterator[Batch]:
    """Regroup inputs into batches of `batch_size` samples; an error goes
    with the batch of the next sample after it. A block that starts a batch
    and fills it passes through as it is (no copy). With `tensors`, a
    batch of the image pipeline passes through as its tensor, even when a
    file dropped from it leaves it short (samples before it go first)."""
    shape = tuple(spec.input_shape or ())
    names: list[str] = []
    xs: list[np.ndarray] = []
    errors: list[tuple[str, str]] = []
    count = 0
    for item in items:
        if isinstance(item, _Block):
            block_names, block_x, block_errors = item
            if hasattr(block_x, "numpy"):  # a tensor of the image pipeline
                if tensors and len(block_names) <= batch_size:
                    if count:  # what came before goes first, as a short batch
                        yield names, _join(xs), errors
                        names, xs, errors, count = [], [], [], 0
                    yield block_names, block_x, errors + [err[1:] for err in block_errors]
                    errors = []
                    continue
                block_x = block_x.numpy()
        else:
            name, x, error = item
            if x is None:
                errors.append((name, error))
                continue
            block_names, block_x, block_errors = [name], x[None], []
        start, e, n = 0, 0, len(block_names)
        while start < n:
            end = min(n, start + batch_size - count)
            while e < len(block_errors) and block_errors[e][0] < end:
                errors.append(block_errors[e][1:])
                e += 1
            names += block_names[start:end]
            xs.append(_cut(block_x, slice(start, end)))
            count += end - start
            start = end
            if count == batch_size:
                yield names, _join(xs), errors
                names, xs, errors, count = [], [], [], 0
        errors += [err[1:] for err in block_errors[e:]]
    if names or errors:
        yield names, _join(xs) if xs else np.zeros((0,) + shape, np.float32), errors


def _cut(x: Any, rows: Any) -> Any:
    """Rows of a batch: an array, or a dict of column arrays."""
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


def _join(xs: list[Any]) -> Any:
    if isinstance(xs[0], dict):
        return {k: xs[0][k] if len(xs) == 1 else np.concatenate([x[k] for x in xs]) for k in xs[0]}
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    return x if x.dtype.kind in "US" else x.astype(np.float32, copy=False)  # raw text stays text


def _records(spec: DataSpec, plan: list[tuple[Reader, Path]], batch_size: int) -> Iterator[_Item]:
    """Every input, in order: image files in blocks, others one by one."""
    from dlcli.data.images import is_image_name, walk_files

    # Consecutive image files and folders are decoded by one pipeline; a
    # file in a folder that is not named as an image is an error entry in
    # its place (it does not break the run).
    run: list[str] = []
    not_images: dict[int, str] = {}
    for reader, path in plan:
        if reader.records is None and not path.is_dir():
            run.append(str(path))
        elif reader.records is None:
            for f in walk_files(str(path)):
                if not is_image_name(f):
                    not_images[len(run)] = _NOT_AN_IMAGE
                run.append(f)
        else:
            yield from _image_blocks(spec, run, not_images, batch_size)
            run, not_images = [], {}
            yield from reader.function("records")(spec, path)
    yield from _image_blocks(spec, run, not_images, batch_size)


# ------------------------------------------------------------------ images

_DECODERS: dict[tuple, Any] = {}


def _decoder(spec: DataSpec, codes: np.ndarray):
    """The training decoder for this spec and these files' codes, and the
    same wrapped in one tf.function."""
    import tensorflow as tf

    from dlcli.data.images import flat_decodable, make_decoder

    size = tuple(spec.image_size or spec.input_shape[:2])
    channels = 1 if spec.color_mode == "grayscale" else 3
    flat = flat_decodable(codes, channels)
    key = (size, channels, flat)
    if key not in _DECODERS:
        decode = make_decoder(size, channels, codes if flat else None)
        _DECODERS[key] = (
            decode,
            tf.function(decode, input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)]),
        )
    return _DECODERS[key]


def _checked(spec: DataSpec, files: list[str], skip: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
    """The pre-flight check over a run of files: each file's format code
    (-1 for a file not to decode) and the error of each such position."""
    from dlcli.data.images import check_images

    n = len(files)
    reasons: dict[int, str] = dict(skip)
    codes = np.full(n, -1, np.int32)
    check = np.array([i for i in range(n) if i not in skip], np.int64) if skip else np.arange(n)
    # Headers only: a file that fails to decode is dropped by the pipeline
    # and then checked in full, alone, to say why (see _image_blocks).
    codes[check], bad = check_images([files[i] for i in check] if skip else files, target=_image_shape(spec)[:2],
                                     quick=True)
    if bad:
        why = dict(bad)
        for i in check[codes[check] < 0]:
            reasons[int(i)] = why.get(files[i], "unreadable image")
    return codes, reasons


def _decoded_batches(spec: DataSpec, files: list[str], codes: np.ndarray, good: np.ndarray,
                     decode: Any, chunk: int) -> Iterator[Any]:
    """ONE tf.data pipeline over the good files: (images, run positions)
    batches of `chunk`, decoded in parallel, files that fail dropped."""
    import tensorflow as tf

    paths = files if len(good) == len(files) else [files[i] for i in good]
    ds = tf.data.Dataset.from_tensor_slices((paths, codes[good], good.astype(np.int64)))
    ds = ds.map(tf.autograph.experimental.do_not_convert(lambda p, c, i: (decode(p, c), i)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().batch(chunk)
    finish = _batch_finisher(spec)
    if finish is not None:
        ds = ds.map(tf.autograph.experimental.do_not_convert(lambda x, i: (finish(x), i)))
    return iter(ds.prefetch(tf.data.AUTOTUNE))


def _undecodable(path: str, message: str) -> str:
    """Why a file the decoder dropped is not an image: the full check's
    words where it finds what is wrong, else the decoder's."""
    from dlcli.data.images import check_image

    return check_image(path)[1] or f"cannot decode ({_op_reason(message)[:200]})"


def _image_blocks(spec: DataSpec, files: list[str], skip: dict[int, str], chunk: int) -> Iterator[_Block]:
    """Check, then decode, a run of image files as blocks of `chunk`.

    The pre-flight check runs over the whole run first (bad files become
    error entries); then ONE tf.data pipeline reads, decodes, resizes and
    scales the good files in parallel, `chunk` per batch, ahead of the
    caller; no Python runs per image but listing its name. `skip` maps
    positions in `files` that are not to be decoded to their error.

    Each file's position in the run travels with its image, so a file that
    passed the check but fails to decode (dropped by the pipeline) shows as
    a gap, whatever tf.data does with batch boundaries around an error: it
    is then decoded alone, to become an error entry or, should it decode
    alone, a sample in its place.
    """
    if not files:
        return
    import tensorflow as tf

    n = len(files)
    codes, reasons = _checked(spec, files, skip)
    good = np.flatnonzero(codes >= 0)
    failed = np.flatnonzero(codes < 0)  # sorted run positions of error entries
    decode, decode_one = _decoder(spec, codes[good])

    def decode_alone(i: int) -> Optional[np.ndarray]:
        try:
            img = decode_one(tf.constant(files[i]), tf.constant(codes[i], tf.int32)).numpy()
        except tf.errors.OpError as exc:
            reasons[i] = _undecodable(files[i], exc.message)
            return None
        return _finish_image(spec, img)

    def block(upto: int, pos: np.ndarray, x: np.ndarray, lost: np.ndarray) -> _Block:
        """The block for run positions [done, upto): samples `x` at `pos`,
        plus `lost` (good files missing from the pipeline's output)."""
        nonlocal failed
        if len(lost):
            x = np.asarray(x)
            alone = {int(i): decode_alone(int(i)) for i in lost}
            kept = {int(i): x[k] for k, i in enumerate(pos)}
            kept.update((i, img) for i, img in alone.items() if img is not None)
            failed = np.union1d(failed, [i for i, img in alone.items() if img is None]).astype(np.int64)
            pos = np.array(sorted(kept), np.int64)
            x = np.stack([kept[int(i)] for i in pos]) if len(pos) else x[:0]
        errs = failed[np.searchsorted(failed, done) : np.searchsorted(failed, upto)]
        at = np.searchsorted(pos, errs)
        return _Block([files[i] for i in pos], x,
                      [(int(k), files[i], reasons.get(int(i), "unreadable image")) for k, i in zip(at, errs)])

    done = 0  # run positions before this one have been yielded
    g = 0  # good[:g] have been yielded
    if len(good):
        batches = _decoded_batches(spec, files, codes, good, decode, chunk)
        while True:
            try:
                x, pos = next(batches)
            except StopIteration:
                break
            except tf.errors.OpError:
                # Not a decode error (those are dropped above): stop using
                # the pipeline; what is left is decoded file by file below.
                break
            pos = pos.numpy()
            upto = int(pos[-1]) + 1
            g_upto = int(np.searchsorted(good, upto))
            lost = np.setdiff1d(good[g:g_upto], pos) if g_upto - g != len(pos) else good[:0]
            yield block(upto, pos, x, lost)
            done, g = upto, g_upto
    # Good files the pipeline did not deliver at the end (or at all, had it
    # failed), `chunk` at a time, then the error entries after the last.
    empty = np.zeros((0,) + tuple(spec.input_shape), np.float32)
    for k in range(g, len(good), chunk):
        lost = good[k : k + chunk]
        upto = int(lost[-1]) + 1
        yield block(upto, good[:0], empty, lost)
        done = upto
    if done < n:
        yield block(n, good[:0], empty, good[:0])


def _op_reason(message: str) -> str:
    """The reason in a TensorFlow op error's message ('Invalid PNG data,
    size 177'), without the graph trace around it."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(("Graph execution error", "Detected at node", "File ", "[[")):
            return line.split(" [[", 1)[0].split(" [Op:", 1)[0].strip()
    return lines[0] if lines else "unknown error"


def _batch_finisher(spec: DataSpec):
    """Decoded 0..255 pixel batches -> the training input (as `_finish_image`,
    in TensorFlow); None when that is the identity."""
    import tensorflow as tf

    low, high = spec.pixel_range or (0.0, 255.0)
    scale = (low, high) != (0.0, 255.0)
    if not scale and not spec.sequence:
        return None
    low32, step32 = tf.constant(low, tf.float32), tf.constant((high - low) / 255.0, tf.float32)

    def finish(x):
        if scale:
            x = low32 + x * step32
        if not spec.sequence:
            return x
        if spec.sequence_axis == "width":
            return tf.transpose(x[..., 0], [0, 2, 1])
        return tf.reshape(x, [-1, x.shape[1], x.shape[2] * x.shape[3]])

    return finish


def _finish_image(spec: DataSpec, img: np.ndarray) -> np.ndarray:
    """Decoded 0..255 pixels -> the training input: its pixel range and
    sequence layout."""
    low, high = spec.pixel_range or (0.0, 255.0)
    if (low, high) != (0.0, 255.0):
        img = low + img * ((high - low) / 255.0)
    return _sequence_layout(spec, img).astype(np.float32)


def _sequence_layout(spec: DataSpec, img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> what the model takes: itself, its rows (H, W*C), or
    for ctc_digits its columns (W, H)."""
    if not spec.sequence:
        return img
    if spec.sequence_axis == "width":
        return img[..., 0].T
    return img.reshape(img.shape[0], -1)


def _standardize(spec: DataSpec, x: np.ndarray) -> np.ndarray:
    from dlcli.data.arrays import standardize

    if spec.standardize is not None:
        return standardize(x, spec.standardize.mean, spec.standardize.std)
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


def _image_shape(spec: DataSpec) -> Optional[tuple]:
    if spec.input_kind != "image" or not spec.image_size:
        return None
    h, w = spec.image_size
    return (int(h), int(w), 1 if spec.color_mode == "grayscale" else 3)


def _array_to_input(spec: DataSpec, x: np.ndarray) -> np.ndarray:
    """One array sample -> the model's input layout. Samples of a sequence
    model may be given as images; they get the training's sequence layout
    (raw pixel values, as in training arrays)."""
    shape = tuple(spec.input_shape)
    image = _image_shape(spec)
    if spec.sequence and image and x.shape != shape and x.size == int(np.prod(image)):
        return _sequence_layout(spec, x.reshape(image))
    return x.reshape(shape)


def check_array(spec: DataSpec, path: Path) -> None:
    """The file's samples have the model's input size and are numbers."""
    if spec.input_kind == "vector" and spec.categorical:
        raise DataError(f"input {path}: this model was trained on CSV with categorical columns; give CSV rows")
    arr = _open_array(path)
    want = tuple(spec.input_shape)
    got = arr.shape[1:]
    if arr.ndim < 1 or int(np.prod(got)) != int(np.prod(want)):
        raise DataError(f"{path} holds samples of shape {tuple(got)}, but the model takes {tuple(want)}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{path} holds {arr.dtype} values, not numbers")


def array_records(spec: DataSpec, path: Path) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    arr = _open_array(path)
    vector = spec.input_kind == "vector"
    for i in range(len(arr)):
        x = _array_to_input(spec, np.asarray(arr[i], dtype=np.float32))
        yield f"{path}:{i}", _standardize(spec, x[None])[0] if vector else x, ""
