"""From in-memory arrays to a DataBundle: class filter, seeded splits,
few-shot subsets, standardisation, labels for the loss, `tf.data`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from dlcli.data._util import cfg_error, class_filter, per_class_subset, split_indices
from dlcli.data.bundle import DataBundle
from dlcli.data.labels import TASKS, choose_label_mode, encode_labels
from dlcli.data.spec import DataSpec


@dataclass
class ArraySet:
    """What an array source hands to `finish`.

    Attributes:
        source: the source's name.
        x, y: the samples; all of them when the source has no test set of
            its own, else its training set. `y` holds class indices for
            classification, float targets otherwise.
        x_test, y_test: the source's own test set, or None.
        class_names: one name per class index; None for a continuous target.
        kind: "image" (N, H, W, C), "vector" (N, F) or "array" (any shape).
        standardize: standardise vector features with training-split stats:
            True (every column), False, or a per-column bool mask (csv:
            numeric columns only, not one-hot blocks).
        spec: source-specific entries for the spec (image_size, features...).
        notes: things the user should know (shown after training).
    """

    source: str
    x: np.ndarray
    y: np.ndarray
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    class_names: Optional[list[str]] = None
    kind: str = "vector"
    standardize: Any = False
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def finish(cfg: Any, s: ArraySet) -> DataBundle:
    """Apply the `data:` options to an ArraySet and build its pipelines.

    Order: keep `data.classes`; take the seeded test split (when the source
    has no test set); take `validation_split` of what remains; cap the
    training split with `samples_per_class` and `limit`; standardise with
    training statistics; shape labels for the loss.

    Raises:
        ConfigError: an option that cannot apply to this source.
    """
    d = cfg.data
    seed = int(cfg.seed)
    classification = s.class_names is not None
    mode = choose_label_mode(cfg, classification=classification, source=s.source)
    class_names = list(s.class_names) if classification else None
    x, y, xt, yt = s.x, s.y, s.x_test, s.y_test

    if d.classes:
        if not classification:
            raise cfg_error(cfg, "data.classes", f"{s.source} has a continuous target, not classes")
        keep = class_filter(cfg, class_names, d.classes)
        remap = np.full(len(class_names), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        x, y = _select(x, y, remap)
        if xt is not None:
            xt, yt = _select(xt, yt, remap)
        class_names = [class_names[k] for k in keep]
    if d.samples_per_class and not classification:
        raise cfg_error(cfg, "data.samples_per_class", f"{s.source} has a continuous target, not classes")

    strat = y if classification else None
    if xt is None:
        kept, held = split_indices(len(x), d.test_split, seed, strat)
        if len(held):
            xt, yt = x[held], y[held]
        x, y = x[kept], y[kept]
    kept, held = split_indices(len(x), d.validation_split, seed, y if classification else None)
    xv, yv = (x[held], y[held]) if len(held) else (None, None)
    x, y = x[kept], y[kept]
    if d.samples_per_class:
        idx = per_class_subset(y, d.samples_per_class, seed)
        x, y = x[idx], y[idx]
    if d.limit and len(x) > d.limit:
        # The split left the training samples in a seeded random order.
        x, y = x[: d.limit], y[: d.limit]
    if len(x) == 0:
        raise cfg_error(cfg, "data", f"{s.source}: no training samples left after the splits and filters")

    spec = dict(s.spec)
    if s.kind == "image":
        check_native_image_options(cfg, s.source, spec)
    if s.kind == "vector" and s.standardize is not False:
        mean, std = _fit_standardize(x, s.standardize)
        x, xv, xt = (None if a is None else standardize(a, mean, std) for a in (x, xv, xt))
        spec["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}
    if d.sequence:
        if s.kind != "image":
            raise cfg_error(cfg, "data.sequence", f"{s.source} is not an image data set; sequence turns images into rows")
        x, xv, xt = (None if a is None else a.reshape(a.shape[0], a.shape[1], -1) for a in (x, xv, xt))
    spec["sequence"] = bool(d.sequence) if s.kind == "image" else False

    num_classes = len(class_names) if classification else None
    enc = lambda a: None if a is None else encode_labels(cfg, a, mode, num_classes)  # noqa: E731
    spec.update(
        source=s.source,
        task=TASKS[mode],
        label_mode=mode,
        class_names=class_names,
        num_classes=num_classes,
        input_kind=s.kind,
    )
    if classification:
        spec["class_counts"] = np.bincount(y.astype(np.int64), minlength=num_classes).tolist()
    else:
        spec["target_width"] = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
    bundle = assemble(cfg, spec, (x, enc(y)), None if xv is None else (xv, enc(yv)), None if xt is None else (xt, enc(yt)))
    bundle.notes.extend(s.notes)
    return bundle


def _fit_standardize(x: np.ndarray, columns: Any) -> tuple[np.ndarray, np.ndarray]:
    """Training-split mean and std per column (missing values, NaN, left
    out); columns outside the `columns` mask keep mean 0, std 1."""
    width = x.shape[1]
    cols = np.ones(width, bool) if columns is True else np.asarray(columns, bool)
    mean, std = np.zeros(width), np.ones(width)
    if cols.any():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column
            mean[cols] = np.nanmean(x[:, cols].astype(np.float64), axis=0)
            std[cols] = np.nanstd(x[:, cols].astype(np.float64), axis=0)
    mean[~np.isfinite(mean)] = 0.0
    # A constant (or empty) feature would divide by zero; centre it only.
    std[~np.isfinite(std) | (std == 0)] = 1.0
    return mean, std


def standardize(x: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """(x - mean) / std as float32; a missing value (NaN) becomes 0, the
    training mean."""
    out = (np.asarray(x, np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def check_native_image_options(cfg: Any, source: str, spec: dict[str, Any]) -> None:
    """`image_size` resizes image_dir files; a built-in image set has its
    own size, so a different one in the config would be silently ignored:
    refuse it instead. (`color_mode` is not checked: saved run configs
    carry its default, `rgb`, for every source.)

    Raises:
        ConfigError: at `data.image_size`.
    """
    d = cfg.data
    if d.image_size is not None and list(d.image_size) != list(spec["image_size"]):
        raise cfg_error(cfg, "data.image_size", f"{source} images are {spec['image_size'][0]}x{spec['image_size'][1]}; "
                        "image_size resizes image_dir files only", hint=f"remove it, or set {list(spec['image_size'])}")


def _select(x: np.ndarray, y: np.ndarray, remap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    new = remap[y.astype(np.int64)]
    mask = new >= 0
    return x[mask], new[mask]


def assemble(
    cfg: Any,
    spec: dict[str, Any],
    train: tuple,
    val: Optional[tuple],
    test: Optional[tuple],
) -> DataBundle:
    """Build the `tf.data` pipelines and the DataBundle for array splits.

    Each split is `(x, y)` or `(x, y, sample_weight)`; `x` and `y` may be
    dicts of arrays keyed by model input / output name. Named inputs make
    `input_shape` a dict `{name: shape}` (`spec["inputs"]` records it;
    `spec["input_shape"]` is the first input's).
    """
    from dlcli.data.pipeline import array_dataset, build_augmenter

    d = cfg.data
    seed = int(cfg.seed)
    augment = build_augmenter(cfg)
    x_train = train[0]
    named = isinstance(x_train, dict)
    given = x_train.items() if named else [("x", x_train)]
    shapes = {k: tuple(int(v) for v in a.shape[1:]) for k, a in given}
    # Raw strings (for a TextVectorization first layer) need a string input.
    kinds = {k: ({"shape": list(shapes[k]), "dtype": "string"} if a.dtype.kind in "US" else shapes[k]) for k, a in given}
    input_shape: Any = kinds if named else kinds["x"]
    spec["input_shape"] = list(next(iter(shapes.values())))
    if named:
        spec["inputs"] = {k: list(v) for k, v in shapes.items()}
        spec["input_dtypes"] = {k: str(a.dtype) for k, a in x_train.items()}

    def count(split):
        return int(len(next(iter(split[0].values())) if isinstance(split[0], dict) else split[0])) if split else 0

    spec["seed"] = seed
    spec["counts"] = {"train": count(train), "val": count(val), "test": count(test)}

    def make(split, training):
        if split is None:
            return None
        return array_dataset(
            split[0], split[1], batch_size=d.batch_size, training=training, seed=seed,
            shuffle_buffer=d.shuffle_buffer, augment=augment, weights=split[2] if len(split) > 2 else None,
        )

    def representative(n: int) -> Any:
        if named:
            return {k: np.asarray(a[:n]) for k, a in x_train.items()}
        return np.asarray(x_train[:n], dtype=np.float32) if x_train.dtype.kind not in "US" else x_train[:n]

    typed = DataSpec(**spec)
    return DataBundle(
        train=make(train, True),
        val=make(val, False),
        test=make(test, False),
        input_shape=input_shape,
        spec=typed,
        num_train=typed.counts.train,
        num_val=typed.counts.val,
        num_test=typed.counts.test,
        representative=representative,
        rng_variables=list(getattr(augment, "rng_variables", [])),
        adapt_data=lambda: make(train, False).map(lambda x, *rest: x),
    )
