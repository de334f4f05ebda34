"""`ctc_digits`: strings of handwritten digits for the CTC loss.

Each sample is `length` scikit-learn 8x8 digits placed side by side (an
8 x (8 * length) image, wider with `gap`), labelled with its digit
sequence. Train, val and test strings are composed from disjoint pools of
source digit images, so the test score is on handwriting the model never
saw.

Label format, as Keras 3 defines it (`keras.losses.ctc` in
keras/src/losses/losses.py sets `mask_index = 0`, counts a label's length
as its non-zero entries, and the TensorFlow backend's `ctc_loss` passes
`blank_index=mask_index` to `tf.nn.ctc_loss`): index 0 is both the CTC
blank and the padding of shorter labels, so it cannot be a class. Digit d
is therefore class d + 1; the model's last layer has 11 units (blank and
ten digits) giving logits per time step; labels are int32 (n,
max_label_length), padded with 0. The spec records `blank_index`,
`mask_index`, `label_offset` and `max_label_length` so decoding at predict
time (`keras.ops.ctc_decode(..., mask_index=0)`, then subtract the offset)
gives the digits back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.data._util import cfg_error, did_you_mean, split_indices
from dlcli.data.arrays import assemble, check_native_image_options
from dlcli.data.bundle import DataBundle
from dlcli.data.labels import loss_label_mode, loss_name

# Keys of `data.ctc`, with their defaults.
CTC_DEFAULTS = {"length": 4, "samples": 6000, "min_length": None, "gap": 0}

BLANK = 0
LABEL_OFFSET = 1


def ctc_options(cfg: Any) -> dict[str, Any]:
    """`data.ctc` with defaults, checked.

    Raises:
        ConfigError: at `data.ctc.<key>` for an unknown key or a bad value.
    """
    given = dict(cfg.data.ctc or {})
    for key in given:
        if key not in CTC_DEFAULTS:
            raise cfg_error(cfg, f"data.ctc.{key}", f"unknown ctc_digits option {key!r}",
                            hint=did_you_mean(key, CTC_DEFAULTS) or f"options are {', '.join(CTC_DEFAULTS)}")
    opts = {**CTC_DEFAULTS, **given}
    if opts["min_length"] is None:
        opts["min_length"] = opts["length"]
    for key, low in (("length", 1), ("samples", 10), ("min_length", 1), ("gap", 0)):
        v = opts[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise cfg_error(cfg, f"data.ctc.{key}", f"must be an integer >= {low}, got {v!r}")
    if opts["min_length"] > opts["length"]:
        raise cfg_error(cfg, "data.ctc.min_length", f"min_length {opts['min_length']} exceeds length {opts['length']}")
    return opts


def compose(
    images: np.ndarray, labels: np.ndarray, pool: np.ndarray, n: int, opts: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Compose `n` digit strings from the digit images `images[pool]`.

    Returns:
        float32 images (n, 8, width, 1) with raw 0..16 pixels, and int32
        labels (n, length): digit + 1, padded with 0.
    """
    length, gap = opts["length"], opts["gap"]
    h, w = images.shape[1], images.shape[2]
    width = w * length + gap * (length - 1)
    by_digit = [pool[labels[pool] == k] for k in range(10)]
    x = np.zeros((n, h, width, images.shape[3]), np.float32)
    y = np.zeros((n, length), np.int32)
    sizes = rng.integers(opts["min_length"], length + 1, size=n)
    digits = rng.integers(0, 10, size=(n, length))
    for i in range(n):
        pos = 0
        for j in range(sizes[i]):
            d = digits[i, j]
            src = by_digit[d][rng.integers(len(by_digit[d]))]
            x[i, :, pos : pos + w] = images[src]
            y[i, j] = d + LABEL_OFFSET
            pos += w + (int(rng.integers(0, gap + 1)) if gap else 0)
    return x, y


def ctc_digits_source(cfg: Any) -> DataBundle:
    """Build the ctc_digits set: `data.ctc.samples` strings split into
    train / val / test by `test_split` and `validation_split`, seeded.

    With `data.sequence: true` each image is given as its columns, (width,
    height): a time step per pixel column, left to right, for recurrent
    models.

    Raises:
        ConfigError: options that do not apply (classes, samples_per_class),
            bad `data.ctc`, or a loss other than CTC.
    """
    from dlcli.data.builtin import digits_arrays

    d = cfg.data
    seed = int(cfg.seed)
    opts = ctc_options(cfg)
    for key in ("classes", "samples_per_class"):
        if getattr(d, key):
            raise cfg_error(cfg, f"data.{key}", f"data.{key} does not apply to ctc_digits (labels are digit strings)")
    mode = loss_label_mode(cfg.compile.loss)
    if mode not in (None, "ctc"):
        raise cfg_error(cfg, "compile.loss", f"ctc_digits labels are digit sequences for the CTC loss, not {loss_name(cfg.compile.loss)}",
                        hint="use loss: ctc")

    images, labels = digits_arrays()
    check_native_image_options(cfg, "ctc_digits", {
        "image_size": [8, 8 * opts["length"] + opts["gap"] * (opts["length"] - 1)]})
    # Disjoint pools of source images, stratified by digit.
    rest, test_pool = split_indices(len(images), d.test_split, seed, labels)
    keep, val_pool = split_indices(len(rest), d.validation_split, seed, labels[rest])
    train_pool, val_pool = rest[keep], rest[val_pool]

    total = opts["samples"]
    n_test = int(round(total * d.test_split)) if len(test_pool) else 0
    n_val = int(round((total - n_test) * d.validation_split)) if len(val_pool) else 0
    n_train = total - n_test - n_val
    rng = np.random.default_rng(seed)
    train = compose(images, labels, train_pool, n_train, opts, rng)
    val = compose(images, labels, val_pool, n_val, opts, rng) if n_val else None
    test = compose(images, labels, test_pool, n_test, opts, rng) if n_test else None
    if d.limit and n_train > d.limit:
        train = (train[0][: d.limit], train[1][: d.limit])

    if d.sequence:
        # (n, H, W, 1) -> (n, W, H): one time step per column.
        cols = lambda s: None if s is None else (np.ascontiguousarray(s[0][..., 0].transpose(0, 2, 1)), s[1])  # noqa: E731
        train, val, test = cols(train), cols(val), cols(test)

    height, width = 8, train[0].shape[2] if not d.sequence else train[0].shape[1]
    spec = {
        "source": "ctc_digits",
        "task": "ctc",
        "label_mode": "ctc",
        "class_names": ["<blank>"] + [str(i) for i in range(10)],
        "num_classes": 11,
        "blank_index": BLANK,
        "mask_index": BLANK,
        "label_offset": LABEL_OFFSET,
        "max_label_length": opts["length"],
        "min_label_length": opts["min_length"],
        "ctc": opts,
        "input_kind": "image",
        "image_size": [height, width],
        "color_mode": "grayscale",
        "pixel_range": [0.0, 16.0],
        "sequence": bool(d.sequence),
        "sequence_axis": "width" if d.sequence else None,
        "source_pools": {"train": int(len(train_pool)), "val": int(len(val_pool)), "test": int(len(test_pool))},
    }
    return assemble(cfg, spec, train, val, test)


def decode_labels(labels: np.ndarray, spec: Any) -> list[str]:
    """Turn CTC labels (or decoded class sequences) back into digit strings,
    dropping blanks / padding (index 0) and negative fill values."""
    offset = LABEL_OFFSET if spec.label_offset is None else int(spec.label_offset)
    mask = spec.mask_index or 0
    out = []
    for row in np.asarray(labels):
        out.append("".join(str(int(v) - offset) for v in row if int(v) > mask))
    return out
