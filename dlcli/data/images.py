"""Image folders: listing, the pre-flight check, decoding, `image_dir`.

Design, for folders of any size:
- Listing walks the folder with `os.scandir` (no stat of every file).
- A pre-flight check reads each file's first bytes (JPEG, PNG, GIF or BMP
  by content, whatever the extension says) and walks its structure without
  decoding pixels (JPEG: every marker, those inside its pixel data too, to
  the end-of-image marker; PNG: every chunk's CRC; GIF / BMP: Pillow's
  `verify()`), in a
  thread pool. Corrupt or non-image files are found before training and
  skipped (listed in the notes), or are an error with `data.strict`. It
  also reads each image's size, which picks the JPEG decode scale.
- Training streams the folder: the file names (a string tensor) are
  shuffled, not the images, and a parallel `tf.data` map reads, decodes and
  resizes each file. Nothing per epoch runs in Python, and memory does not
  grow with the folder. Decoded images are cached only with
  `data.cache: true` (`auto` means off here): a cache holds every decoded
  image in memory, which grows with the folder.
- Pixel values stay 0..255 float32; models rescale or backbones preprocess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dlcli.data import scanning
from dlcli.data._util import cfg_error, class_filter, per_class_subset, short_list, split_indices
from dlcli.data.bundle import DataBundle
from dlcli.data.registry import IMAGE_EXTENSIONS
from dlcli.data.spec import DataSpec
from dlcli.errors import DataError

from dlcli.data.image_check import (  # noqa: F401 (the pre-flight check, re-exported)
    JPEG,
    JPEG_SCALES,
    MAX_PIXELS,
    OTHER,
    PNG,
    check_image,
    check_images,
    describe_bad,
    sniff_format,
)

DEFAULT_IMAGE_SIZE = (224, 224)
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


# ---------------------------------------------------------------- listing

def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def walk_files(folder: str, counted: int = 0) -> list[str]:
    """Every non-hidden file under `folder`, recursively (following links,
    each real folder once), sorted. The count so far (after `counted`
    files found elsewhere) is reported folder by folder."""
    out: list[str] = []
    stack = [folder]
    seen = {os.path.realpath(folder)}
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            raise DataError(f"cannot list {d}: {exc.strerror}") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=True):
                real = os.path.realpath(e.path)
                if real not in seen:  # a link back up would loop forever
                    seen.add(real)
                    stack.append(e.path)
            elif e.is_file(follow_symlinks=True):
                out.append(e.path)
        scanning.report("listing files", counted + len(out))
    out.sort()
    return out


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _loose_files(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


@dataclass
class Listing:
    """The files of an image folder, by split, before the pre-flight check."""

    root: Path
    layout: str  # "classes" (one folder per class) or "splits" (train/ val/ test/)
    class_names: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)  # split -> paths
    labels: dict[str, list[int]] = field(default_factory=dict)  # split -> class index
    ignored: int = 0  # files without an image extension
    notes: list[str] = field(default_factory=list)


def list_image_folder(root: Path, wanted: Optional[Callable[[list[str]], list[int]]] = None) -> Listing:
    """List an image folder: one sub-folder per class, or train/ (+ val/ or
    validation/, test/) each holding class folders.

    Args:
        root: the folder.
        wanted: maps the class folder names to the indices to keep, in order
            (`data.classes`); None keeps all, sorted by name.

    Raises:
        DataError: no class folders, a single class, folders mixing both
            layouts, or a split folder naming classes that train/ lacks.
    """
    subs = _subdirs(root)
    split_dirs = {}
    if "train" in subs and _subdirs(root / "train"):
        for split, names in SPLIT_FOLDERS.items():
            for n in names:
                if n in subs:
                    split_dirs[split] = root / n
                    break
        extra = [s for s in subs if s not in {p.name for p in split_dirs.values()}]
        if extra:
            raise DataError(
                f"{root} mixes split folders (train/) with other folders ({short_list(extra)}): "
                "use either train/ val/ test/ each holding class folders, or one folder per class"
            )
        layout = "splits"
    else:
        split_dirs = {"all": root}
        layout = "classes"

    train_dir = split_dirs.get("train", root)
    classes = _subdirs(train_dir)
    if not classes:
        images = [n for n in _loose_files(train_dir) if is_image_name(n)]
        if images:
            raise DataError(
                f"{train_dir} holds images but no class folders: put each class's images in its own "
                f"sub-folder ({train_dir}/<class name>/...)"
            )
        raise DataError(f"{train_dir} is empty: image_dir needs one sub-folder of images per class")
    if len(classes) == 1:
        raise DataError(f"{train_dir} has a single class folder ({classes[0]!r}): a classifier needs at least two")
    keep = wanted(classes) if wanted else list(range(len(classes)))
    class_names = [classes[k] for k in keep]
    listing = Listing(root=root, layout=layout, class_names=class_names)
    listed = 0  # files of the splits before this one (for the reported count)

    for split, folder in split_dirs.items():
        present = _subdirs(folder)
        unknown = [c for c in present if c not in classes]
        if unknown:
            raise DataError(f"{folder} has class folder(s) {short_list(unknown)} that {train_dir} lacks")
        loose = [n for n in _loose_files(folder) if is_image_name(n)]
        if loose:
            listing.notes.append(f"ignored {len(loose)} image(s) directly in {folder} (not in a class folder)")
        files, labels = [], []
        for label, name in enumerate(class_names):
            if name not in present:
                continue
            found = walk_files(str(folder / name), counted=listing.ignored + len(files) + listed)
            images = [p for p in found if is_image_name(p)]
            listing.ignored += len(found) - len(images)
            files.extend(images)
            labels.extend([label] * len(images))
        listing.files[split] = files
        listing.labels[split] = labels
        listed += len(files)
    return listing


# --------------------------------------------------------------- decoding

def flat_decodable(codes: Any, channels: int) -> bool:
    """Whether every file of `codes` decodes with TensorFlow's one
    `decode_image` kernel: JPEGs at full scale and PNGs (and, in RGB, GIF and
    BMP), so the decoder needs no per-file branch."""
    flat = {JPEG, PNG} | ({OTHER} if channels == 3 else set())
    return set(np.unique(np.asarray(codes, np.int64)).tolist()) <= flat


def make_decoder(image_size: Sequence[int], channels: int, codes: Any = None) -> Callable:
    """A TensorFlow function `(path, code) -> float32 (H, W, channels)`.

    `code` (from the pre-flight check) picks the decoder: JPEG and PNG
    decode straight to the wanted channels (a JPEG at least twice the
    target size is scaled down while decoding); GIF (first frame) and BMP
    decode as RGB, as TensorFlow requires, then convert to grayscale when
    asked. Then a bilinear resize, as `keras.utils.image_dataset_from_
    directory` does. Training and predict share this function.

    With `codes` (those of every file the function will see) that need no
    branch (`flat_decodable`), one `decode_image` kernel reads them all: the
    same pixels, without a `switch_case` per file (about a fifth of a small
    image's decode time in tf.data, and a smaller graph to trace).
    """
    import tensorflow as tf

    height, width = int(image_size[0]), int(image_size[1])

    def resized(img):
        img.set_shape([None, None, channels])
        img = tf.image.resize(img, (height, width))
        img.set_shape([height, width, channels])
        return img

    def decode_flat(path, code):
        return resized(tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False))

    def decode(path, code):
        data = tf.io.read_file(path)

        def jpeg(ratio):
            return lambda: tf.io.decode_jpeg(data, channels=channels, ratio=ratio)

        def png():
            return tf.io.decode_png(data, channels=channels)

        def other():
            img = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.image.rgb_to_grayscale(img) if channels == 1 else img

        branches = [jpeg(r) for r in JPEG_SCALES] + [png, other]
        return resized(tf.switch_case(tf.cast(code, tf.int32), branches))

    # Nothing here branches in Python on tensors, and autograph's rewrite of
    # this function costs seconds per pipeline.
    flat = codes is not None and flat_decodable(codes, channels)
    return tf.autograph.experimental.do_not_convert(decode_flat if flat else decode)


def image_dataset(
    paths: Sequence[str],
    codes: np.ndarray,
    labels: np.ndarray,
    decode: Callable,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    cache: bool,
    shuffle_buffer: int = 10000,
    augment: Optional[Callable] = None,
):
    """Batched `(image, label)` pipeline that streams image files.

    Training shuffles the file names (all of them, in an order per (seed,
    epoch): `pipeline.shuffle_each_epoch`), then decodes in parallel; val / test keep their order. With `cache`, decoded
    images are kept in memory after the first epoch and shuffled from a
    buffer of `shuffle_buffer` images.
    """
    import tensorflow as tf

    from dlcli.data.pipeline import shuffle_each_epoch

    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=object).astype(str), codes, labels))
    n = len(paths)
    load = tf.autograph.experimental.do_not_convert(lambda p, c, y: (decode(p, c), y))
    if cache:
        ds = ds.map(load, num_parallel_calls=autotune, deterministic=True).cache()
        if training and shuffle_buffer > 0 and n > 1:
            ds = shuffle_each_epoch(ds, min(n, shuffle_buffer), seed)
    else:
        if training and shuffle_buffer > 0 and n > 1:
            # File names are small: shuffle every one of them, not images.
            ds = shuffle_each_epoch(ds, n, seed)
        # Training order follows tf.data's options (deterministic unless a
        # caller sets `options.deterministic = False` to trade repeatable
        # runs for throughput); val / test always keep their order.
        ds = ds.map(load, num_parallel_calls=autotune, deterministic=None if training else True)
    ds = ds.batch(batch_size)
    if training and augment is not None:
        # Sequential, for repeatable augmentation (see pipeline.array_dataset).
        ds = ds.map(tf.autograph.experimental.do_not_convert(lambda x, y: (augment(x), y)))
    return ds.prefetch(autotune)


# -------------------------------------------------------------- image_dir

def image_folder(cfg: Any, key: str = "data.path") -> tuple[Path, tuple[int, int]]:
    """The checked folder at `key` and the image size to resize to.

    Raises:
        ConfigError: no folder there, or a bad `data.image_size`.
    """
    value = cfg.data.path if key == "data.path" else cfg.data.masks
    if not value:
        raise cfg_error(cfg, key, f"data.source image_dir needs {key}: the image folder")
    root = Path(value).expanduser()
    if not root.exists():
        raise cfg_error(cfg, key, f"{root} does not exist")
    if not root.is_dir():
        raise cfg_error(cfg, key, f"{root} is not a folder (image_dir reads a folder of class folders)")
    image_size = tuple(cfg.data.image_size) if cfg.data.image_size else DEFAULT_IMAGE_SIZE
    if min(image_size) < 1:
        raise cfg_error(cfg, "data.image_size", f"image sizes must be positive, got {list(image_size)}")
    return root, image_size


def _readable_splits(cfg: Any, root: Path, image_size: Any, listing: Any, notes: list[str]) -> tuple[dict, list]:
    """Each split's readable (files, codes, labels) after the pre-flight check; bad files are
    noted (or, with `data.strict`, refused). Raises DataError for a class with no readable image."""
    d = cfg.data
    class_names = listing.class_names
    num_classes = len(class_names)
    every = [p for split in listing.files for p in listing.files[split]]
    codes_all, bad = check_images(every, target=image_size)
    if bad:
        if d.strict:
            raise DataError(f"{root}: {describe_bad(bad)}; remove them, or set data.strict: false to skip them")
        notes.append(f"skipped {describe_bad(bad)}")
    if listing.ignored:
        notes.append(f"ignored {listing.ignored} file(s) in {root} without an image extension "
                     f"({', '.join(IMAGE_EXTENSIONS)})")
    code_of = dict(zip(every, codes_all.tolist()))

    splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for split, files in listing.files.items():
        labels = np.asarray(listing.labels[split], np.int64)
        codes = np.asarray([code_of[p] for p in files], np.int32)
        ok = codes >= 0
        splits[split] = (np.asarray(files, dtype=object)[ok], codes[ok], labels[ok])

    base = "train" if "train" in splits else "all"
    counts = np.bincount(splits[base][2], minlength=num_classes)
    empty = [class_names[k] for k in range(num_classes) if counts[k] == 0]
    if empty:
        folder = root / "train" if base == "train" else root
        raise DataError(f"class folder(s) {', '.join(str(folder / c) for c in empty)} have no readable images")

    return splits, bad


def _train_val_test(d: Any, seed: int, splits: dict) -> tuple:
    """The train, val and test (files, codes, labels) from the folder's splits and the config's
    test_split / validation_split / samples_per_class / limit (None where empty)."""
    base = "train" if "train" in splits else "all"

    def take(split, idx):
        f, c, y = splits[split]
        return f[idx], c[idx], y[idx]

    if base == "all":
        f, c, y = splits["all"]
        kept, held = split_indices(len(f), d.test_split, seed, y)
        test = take("all", held) if len(held) else None
        train = take("all", kept)
    else:
        train = splits["train"]
        test = splits.get("test")
    if "val" in splits:
        val = splits["val"]
    else:
        kept, held = split_indices(len(train[0]), d.validation_split, seed, train[2])
        val = tuple(a[held] for a in train) if len(held) else None
        train = tuple(a[kept] for a in train)
    if d.samples_per_class:
        idx = per_class_subset(train[2], d.samples_per_class, seed)
        train = tuple(a[idx] for a in train)
    if d.limit and len(train[0]) > d.limit:
        idx = np.random.default_rng(seed).permutation(len(train[0]))[: d.limit]
        train = tuple(a[idx] for a in train)
    if test is not None and len(test[0]) == 0:
        test = None
    if val is not None and len(val[0]) == 0:
        val = None

    return train, val, test


def _image_spec(cfg: Any, root: Path, image_size: Any, listing: Any, mode: str, parts: tuple, found: int,
                skipped: int) -> dict:
    """The data spec of an image folder run."""
    from dlcli.data.labels import TASKS

    d = cfg.data
    train, val, test = parts
    num_classes = len(listing.class_names)
    channels = 1 if d.color_mode == "grayscale" else 3
    return {
        "source": "image_dir",
        "task": TASKS[mode],
        "label_mode": mode,
        "class_names": listing.class_names,
        "num_classes": num_classes,
        "input_kind": "image",
        "input_shape": [image_size[0], image_size[1], channels],
        "image_size": list(image_size),
        "color_mode": d.color_mode,
        "pixel_range": [0.0, 255.0],
        "sequence": False,
        "extensions": list(IMAGE_EXTENSIONS),
        "path": str(root),
        "layout": listing.layout,
        "seed": int(cfg.seed),
        "counts": {
            "train": int(len(train[0])),
            "val": int(len(val[0])) if val else 0,
            "test": int(len(test[0])) if test else 0,
        },
        "class_counts": np.bincount(train[2], minlength=num_classes).tolist(),
        "found": found,
        "skipped": skipped,
    }


def image_dir_source(cfg: Any) -> DataBundle:
    """A folder of images, one sub-folder per class (or train/ val/ test/).

    Raises:
        ConfigError: no `data.path`, a bad `image_size` or `data.classes`.
        DataError: the folder does not fit the layout, a class has no
            readable images, or (with `data.strict`) unreadable files.
    """
    from dlcli.data.labels import choose_label_mode, encode_labels
    from dlcli.data.pipeline import build_augmenter

    d = cfg.data
    seed = int(cfg.seed)
    if d.masks is not None:
        from dlcli.data.masks import segmentation_source

        return segmentation_source(cfg)
    root, image_size = image_folder(cfg)
    channels = 1 if d.color_mode == "grayscale" else 3
    mode = choose_label_mode(cfg, classification=True, source="image_dir")

    wanted = (lambda names: class_filter(cfg, names, d.classes)) if d.classes else None
    listing = list_image_folder(root, wanted)
    notes = list(listing.notes)
    num_classes = len(listing.class_names)

    splits, bad = _readable_splits(cfg, root, image_size, listing, notes)
    scanning.step("building the input pipeline")
    train, val, test = _train_val_test(d, seed, splits)

    every_code = np.concatenate([codes for _, codes, _ in splits.values()] or [np.zeros(0, np.int32)])
    decode = make_decoder(image_size, channels, every_code)  # one kernel when no file needs a branch
    augment = build_augmenter(cfg)
    cache = d.cache is True

    def make(split, training):
        if split is None:
            return None
        files, codes, labels = split
        y = encode_labels(cfg, labels, mode, num_classes)
        return image_dataset(
            files, codes, y, decode, batch_size=d.batch_size, training=training, seed=seed,
            cache=cache, shuffle_buffer=d.shuffle_buffer, augment=augment,
        )

    input_shape = (image_size[0], image_size[1], channels)
    found = sum(len(files) for files, _, _ in splits.values())
    spec = _image_spec(cfg, root, image_size, listing, mode, (train, val, test), found, len(bad))
    train_files, train_codes = train[0], train[1]

    def representative(n: int) -> np.ndarray:
        from dlcli.data.pipeline import take_numpy

        k = min(n, len(train_files))
        ds = image_dataset(train_files[:k], train_codes[:k], np.zeros(k, np.int32), decode,
                           batch_size=max(1, min(k, 64)), training=False, seed=seed, cache=False)
        return take_numpy(ds, k)

    return DataBundle(
        train=make(train, True),
        val=make(val, False),
        test=make(test, False),
        input_shape=input_shape,
        spec=DataSpec(**spec),
        num_train=spec["counts"]["train"],
        num_val=spec["counts"]["val"],
        num_test=spec["counts"]["test"],
        representative=representative,
        notes=notes,
        rng_variables=list(getattr(augment, "rng_variables", [])),
        adapt_data=lambda: make(train, False).map(lambda x, y: x),
    )
