"""`tf.data` building blocks shared by the sources."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, Optional

import numpy as np
import tensorflow as tf

from dlcli.data._util import cfg_error, did_you_mean
from dlcli.errors import DlcliError

AUTOTUNE = tf.data.AUTOTUNE

_EPOCH: Optional[tf.Variable] = None
# The dlcli error a pipeline's Python generator raised last (`keeping`).
_RAISED: list[DlcliError] = []


def epoch_variable() -> tf.Variable:
    """The (0-based) epoch the training data is drawn for.

    The trainer sets it as each epoch begins (`set_epoch`); a pipeline
    shuffled by `shuffle_each_epoch` reads it when an iterator starts.
    """
    global _EPOCH
    if _EPOCH is None:
        with tf.init_scope(), tf.device("/CPU:0"):
            _EPOCH = tf.Variable(0, dtype=tf.int64, trainable=False, name="dlcli_data_epoch")
    return _EPOCH


def set_epoch(epoch: int) -> None:
    """Make the next iterator of every training pipeline draw `epoch`'s order."""
    epoch_variable().assign(int(epoch))


def keeping(rows: Callable[[], Iterator[Any]]) -> Callable[[], Iterator[Any]]:
    """`rows`, a generator function for `Dataset.from_generator`, that
    keeps the dlcli error it raises for `raised_error`: TensorFlow reports
    it to fit as an OpError whose message is the whole traceback."""

    def kept() -> Iterator[Any]:
        try:
            yield from rows()
        except DlcliError as exc:
            _RAISED[:] = [exc]
            raise

    return kept


def raised_error(exc: BaseException) -> Optional[DlcliError]:
    """The dlcli error behind `exc` when `exc` is TensorFlow's report of
    one raised in a `keeping` generator, else None."""
    if not _RAISED or not isinstance(exc, tf.errors.OpError):
        return None
    err = _RAISED.pop()
    return err if type(err).__name__ in exc.message else None


def shuffle_each_epoch(ds: tf.data.Dataset, buffer_size: int, seed: int) -> tf.data.Dataset:
    """Shuffle `ds` anew each epoch, in an order that depends only on
    (`seed`, epoch), the epoch read from `epoch_variable` as an iterator
    starts.

    So a resumed run draws epoch k's order by setting the epoch to k, with
    nothing to replay and no dependence on how many iterators Keras's fit
    happens to create. A cache before the shuffle is filled once and
    shared by every epoch.
    """
    epoch = epoch_variable()
    n = int(ds.cardinality())

    def shuffled(e: tf.Tensor) -> tf.data.Dataset:
        # tf.data combines an op seed with the graph-level seed; fixing the
        # latter inside this function leaves (seed, epoch) the only inputs
        # (and keeps a global seed of 0 from breaking a tensor op seed).
        tf.random.set_seed(1)
        return ds.shuffle(buffer_size, seed=(int(seed) * 1_000_003 + e) % (2**31 - 1), reshuffle_each_iteration=False)

    out = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(lambda _: epoch.read_value()).flat_map(shuffled)
    # flat_map forgets the length; Keras needs it for steps and progress.
    return out.apply(tf.data.experimental.assert_cardinality(n)) if n >= 0 else out


def array_dataset(
    x: Any,
    y: Any,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    shuffle_buffer: int,
    augment: Optional[Callable] = None,
    weights: Any = None,
) -> tf.data.Dataset:
    """Batched `(x, y)` pipeline over in-memory arrays.

    `x` stays in its own dtype (uint8 for Keras's image sets: a quarter of
    the memory of float32) and is cast to float32 per batch. The arrays
    already live in memory, so `cache()` would only copy them again.

    Args:
        x, y: samples and labels, same first dimension; either may be a
            dict of arrays (named model inputs / outputs).
        batch_size: samples per batch.
        training: shuffle (an order per (seed, epoch)) and augment.
        seed: the shuffle seed.
        shuffle_buffer: the most samples in the shuffle buffer (0: no
            shuffling).
        augment: a batch -> batch function applied to training batches.
        weights: per-sample loss weights (Keras's `sample_weight`), or None.
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights))
    n = len(next(iter(x.values())) if isinstance(x, dict) else x)
    if training and shuffle_buffer > 0 and n > 1:
        ds = shuffle_each_epoch(ds, min(n, shuffle_buffer), seed)
    ds = ds.batch(batch_size)
    plain = tf.autograph.experimental.do_not_convert  # no Python control flow to convert
    arrays = x.values() if isinstance(x, dict) else [x]
    if any(a.dtype not in (np.float32,) and a.dtype.kind not in "US" for a in arrays):
        # Strings stay strings (for TextVectorization / StringLookup).
        cast = plain(lambda a: a if a.dtype in (tf.float32, tf.string) else tf.cast(a, tf.float32))
        ds = ds.map(plain(lambda a, *rest: (tf.nest.map_structure(cast, a), *rest)),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
    if training and augment is not None:
        # Sequential: the augmentation layers' seed state advances once per
        # batch in batch order, so augmented runs repeat (and resume) exactly.
        ds = ds.map(plain(lambda a, *rest: (augment(a), *rest)))
    return ds.prefetch(AUTOTUNE)


def build_augmenter(cfg: Any) -> Optional[Callable]:
    """A batch -> batch function of the Keras layers in `data.augment`.

    Each entry is `ClassName` or `ClassName: {kwargs}`, resolved by name in
    `keras.layers`. Layers that take a `seed` get `cfg.seed + i` unless the
    entry sets one, so augmented runs repeat.

    Returns:
        None when `data.augment` is empty.

    Raises:
        ConfigError: at `data.augment.<i>` for an unknown layer or bad
            arguments.
    """
    entries = cfg.data.augment or []
    if not entries:
        return None
    import keras

    layers = []
    for i, entry in enumerate(entries):
        key = f"data.augment.{i}"
        if isinstance(entry, str):
            name, kwargs = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, kwargs), = entry.items()
            kwargs = dict(kwargs or {})
        else:
            raise cfg_error(cfg, key, "an augmentation entry is `LayerName` or `LayerName: {arguments}`")
        cls = getattr(keras.layers, str(name), None)
        if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)):
            names = [n for n in dir(keras.layers) if n[:1].isupper()]
            preprocessing = [n for n in names if n.startswith("Random")]
            raise cfg_error(
                cfg, key, f"unknown Keras layer {name!r}",
                hint=did_you_mean(name, names) or f"augmentation layers include {', '.join(preprocessing[:8])}",
            )
        if "seed" in inspect.signature(cls.__init__).parameters and "seed" not in kwargs:
            kwargs["seed"] = int(cfg.seed) + i
        try:
            layers.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise cfg_error(cfg, key, f"{name}: {exc}") from None
    model = keras.Sequential(layers, name="augment")

    def augment(x):
        return model(x, training=True)

    # The layers' SeedGenerator states: checkpoints save and restore them.
    augment.rng_variables = [
        value.state
        for layer in model.layers
        for value in vars(layer).values()
        if isinstance(value, keras.random.SeedGenerator)
    ]
    return augment


def take_numpy(ds: tf.data.Dataset, n: int) -> np.ndarray:
    """The first `n` samples' inputs of a batched `(x, y)` dataset."""
    out, have = [], 0
    for x, _ in ds:
        out.append(x.numpy())
        have += len(out[-1])
        if have >= n:
            break
    if not out:
        return np.zeros((0,), np.float32)
    return np.concatenate(out)[:n]


def table_dataset(
    x: dict[str, np.ndarray],
    y: Any,
    w: Optional[np.ndarray],
    *,
    batch_size: int,
    training: bool,
    seed: int,
    shuffle: bool,
) -> tf.data.Dataset:
    """Batched `(columns, y[, sample_weight])` over in-memory table columns.

    Training batches draw from a full permutation of the rows, new every
    epoch (a real shuffle, not a buffer): the pipeline shuffles row indices
    and gathers each batch's rows from the column tensors.
    """
    parts = (x, y) if w is None else (x, y, w)
    n = len(next(iter(x.values())))
    if not (training and shuffle and n > 1):
        return array_batches(parts, batch_size).prefetch(AUTOTUNE)
    tensors = tf.nest.map_structure(tf.convert_to_tensor, parts)
    idx = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    gather = tf.autograph.experimental.do_not_convert(
        lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors))
    return idx.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def array_batches(arrays: Any, batch_size: int) -> tf.data.Dataset:
    """Batches of in-memory arrays (any nest of them, same first
    dimension) in their stored order, each batch one slice of every array:
    no per-row work, unlike `from_tensor_slices(...).batch(...)`, which
    takes rows one by one (minutes for a million rows)."""
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    n = int(tf.nest.flatten(tensors)[0].shape[0])
    size = int(batch_size)
    cut = tf.autograph.experimental.do_not_convert(
        lambda s: tf.nest.map_structure(lambda t: t[s:s + size], tensors))
    return tf.data.Dataset.range(0, n, size).map(cut, num_parallel_calls=AUTOTUNE, deterministic=True)
