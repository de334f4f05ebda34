"""`image_dir` with `masks:`: images and per-pixel class masks, for
segmentation (as Keras's "Image segmentation with a U-Net-like
architecture" example feeds Oxford-IIIT Pets).

`data.path` holds the images (searched recursively), `data.masks` the
masks; an image and its mask share a file stem (`cat_1.jpg`,
`cat_1.png`). A mask pixel's value is its class index (0, 1, 2, ...); the
class count is the largest value seen plus one, or the number of class
names. The classes are named by `data.classes` (a list: the names of
values 0, 1, 2, ... in order), else by a `classes.txt` in the mask folder
(one name per line, as YOLO / LabelImg write it), else 0, 1, 2, ....
Images and masks are
resized to `image_size` (masks with nearest-neighbour, so classes stay
whole); the target of an image is its mask, shape (height, width, 1), for
`sparse_categorical_crossentropy` on a (height, width, classes) output.
Images without a mask, and unreadable files, are skipped (named in the
notes) unless `data.strict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data._util import cfg_error, split_indices
from dlcli.data.bundle import DataBundle
from dlcli.data.images import check_images, describe_bad, image_folder, is_image_name, make_decoder, walk_files
from dlcli.data.spec import DataSpec
from dlcli.errors import DataError


def _pairs(cfg: Any, root: Path, mask_root: Path, notes: list[str]) -> tuple[list[str], list[str]]:
    """(image, mask) paths matched by stem, in sorted image order."""
    masks: dict[str, str] = {}
    for f in walk_files(str(mask_root)):
        if is_image_name(f):
            masks.setdefault(Path(f).stem, f)
    images = [f for f in walk_files(str(root)) if is_image_name(f)]
    lone = [f for f in images if Path(f).stem not in masks]
    if lone:
        if cfg.data.strict:
            raise DataError(f"{lone[0]} has no mask in {mask_root} (a mask shares the image's file stem)"
                            + (f"; and {len(lone) - 1} more" if len(lone) > 1 else ""))
        notes.append(f"skipped {len(lone)} image(s) without a mask in {mask_root} (e.g. {lone[0]})")
    paired = [f for f in images if Path(f).stem in masks]
    if not paired:
        raise DataError(f"no image in {root} has a mask in {mask_root} (masks are matched by file stem)")
    return paired, [masks[Path(f).stem] for f in paired]


# The names file a mask folder may hold (YOLO's / LabelImg's name for it).
CLASS_NAMES_FILE = "classes.txt"


def _class_names(cfg: Any, mask_root: Path, seen: int) -> list[str]:
    """The classes' names: `data.classes`, else the mask folder's
    classes.txt, else the values 0 .. max(1, seen - 1) as strings. `seen`
    is the largest mask value plus one; every value must have a name."""
    given, where = cfg.data.classes, "data.classes"
    names_file = mask_root / CLASS_NAMES_FILE
    if not given and names_file.is_file():
        given = [line.strip() for line in names_file.read_text(encoding="utf-8", errors="replace").splitlines()]
        given, where = [n for n in given if n], str(names_file)
    if not given:
        return [str(k) for k in range(max(2, seen))]
    names = [str(n) for n in given]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    problem = (f"names class {twice!r} twice" if twice is not None
               else f"names {len(names)} class(es) but the masks hold values up to {seen - 1}" if len(names) < seen
               else "names one class; a segmentation model needs at least two" if len(names) < 2 else None)
    if problem is None:
        return names
    hint = "name the mask values 0, 1, 2, ... in order, once each"
    if where == "data.classes":
        raise cfg_error(cfg, where, f"data.classes {problem}", hint=hint)
    raise DataError(f"{where} {problem}", hint=hint)


def segmentation_source(cfg: Any) -> DataBundle:
    """See the module docstring.

    Raises:
        ConfigError: a missing folder, `data.augment` (it would move the
            image but not its mask), `data.classes` naming fewer classes than
            the masks hold, or a name twice.
        DataError: no image with a mask, unreadable files with `strict`, a
            `classes.txt` like that.
    """
    import tensorflow as tf

    from dlcli.data.pipeline import shuffle_each_epoch
    from PIL import Image

    d, seed = cfg.data, int(cfg.seed)
    root, image_size = image_folder(cfg)
    mask_root, _ = image_folder(cfg, "data.masks")
    for key in ("augment", "samples_per_class"):
        if getattr(d, key):
            raise cfg_error(cfg, f"data.{key}", f"data.{key} does not work with masks"
                            + (": put augmentation layers in the model" if key == "augment" else ""))
    notes: list[str] = []
    images, masks = _pairs(cfg, root, mask_root, notes)
    codes, bad = check_images(images + masks, target=image_size)
    if bad:
        if d.strict:
            raise DataError(f"{root}: {describe_bad(bad)}; remove them, or set data.strict: false to skip them")
        notes.append(f"skipped {describe_bad(bad)}")
    ok = (codes[: len(images)] >= 0) & (codes[len(images):] >= 0)
    images, masks = np.asarray(images, object)[ok], np.asarray(masks, object)[ok]
    image_codes = codes[: len(ok)][ok]
    names = _class_names(cfg, mask_root, 1 + max(int(np.asarray(Image.open(m)).max()) for m in masks))
    num_classes = len(names)

    channels = 1 if d.color_mode == "grayscale" else 3
    decode = make_decoder(image_size, channels, image_codes)
    size = (int(image_size[0]), int(image_size[1]))

    def load(path, code, mask_path):
        mask = tf.io.decode_image(tf.io.read_file(mask_path), channels=1, expand_animations=False)
        mask = tf.image.resize(mask, size, method="nearest")
        mask.set_shape([size[0], size[1], 1])
        return decode(path, code), tf.cast(mask, tf.int32)

    def make(idx, training):
        if idx is None or not len(idx):
            return None
        ds = tf.data.Dataset.from_tensor_slices((images[idx].astype(str), image_codes[idx], masks[idx].astype(str)))
        if training and d.shuffle_buffer > 0 and len(idx) > 1:
            ds = shuffle_each_epoch(ds, len(idx), seed)  # an order per (seed, epoch)
        ds = ds.map(tf.autograph.experimental.do_not_convert(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(d.batch_size).prefetch(tf.data.AUTOTUNE)

    kept, test = split_indices(len(images), d.test_split, seed)
    part, val = split_indices(len(kept), d.validation_split, seed)
    train, val = kept[part], kept[val]
    input_shape = (size[0], size[1], channels)
    shape = [size[0], size[1], 1]
    spec = DataSpec(
        source="image_dir", task="classification", label_mode="int", class_names=names, num_classes=num_classes,
        input_kind="image", input_shape=list(input_shape), image_size=list(size), color_mode=d.color_mode,
        pixel_range=[0.0, 255.0], extensions=None, path=str(root), layout="masks", seed=seed, skipped=len(bad),
        counts={"train": len(train), "val": len(val), "test": len(test)},
        outputs=[{"name": "mask", "task": "classification", "label_mode": "int", "class_names": names,
                  "num_classes": num_classes, "shape": shape}],
    )

    def representative(n: int) -> np.ndarray:
        from dlcli.data.pipeline import take_numpy

        return take_numpy(make(train[:n], False), n)

    return DataBundle(
        train=make(train, True), val=make(val, False), test=make(test, False), input_shape=input_shape, spec=spec,
        num_train=len(train), num_val=len(val), num_test=len(test), representative=representative, notes=notes,
        adapt_data=lambda: make(train, False).map(lambda x, y: x),
    )
