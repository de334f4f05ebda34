"""Keras's downloadable sets (mnist, fashion_mnist, cifar10, cifar100),
loaded by `keras.datasets` from Keras's own cache.

Keras's loaders call `keras.utils.get_file`, which downloads into
`$KERAS_HOME/datasets` (default `~/.keras/datasets`, or `/tmp/.keras` when
that is not writable) unless the file is already there. Before calling a
loader we check for the cached file ourselves, so that an offline machine
gets a message that says exactly which file to put where instead of a
URL error. The file names and cache layout below are those the loaders in
`keras/src/datasets/*.py` ask `get_file` for (Keras has no API that lists
them).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dlcli.data.arrays import ArraySet, finish
from dlcli.data.bundle import DataBundle
from dlcli.errors import DataError

_TF_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class CachedFile:
    """One file a Keras loader needs in its cache."""

    path: str  # relative to the Keras cache dir, as get_file stores it
    origin: str  # where Keras downloads it from
    download_name: str  # the file's name at `origin`


@dataclass(frozen=True)
class KerasSet:
    module: str
    files: tuple[CachedFile, ...]
    color_mode: str
    image_size: tuple[int, int]


KERAS_SETS = {
    # get_file(fname="mnist.npz", ...) -> datasets/mnist.npz
    "mnist": KerasSet(
        "mnist",
        (CachedFile("datasets/mnist.npz", _TF_DATASETS + "mnist.npz", "mnist.npz"),),
        "grayscale", (28, 28),
    ),
    # get_file(fname, cache_subdir="datasets/fashion-mnist") for four files
    "fashion_mnist": KerasSet(
        "fashion_mnist",
        tuple(
            CachedFile(f"datasets/fashion-mnist/{f}", _TF_DATASETS + f, f)
            for f in (
                "train-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
            )
        ),
        "grayscale", (28, 28),
    ),
    # get_file(fname="cifar-10-batches-py-target", extract=True): a name
    # without a dot is stored as "<fname>_archive" and extracted beside it.
    "cifar10": KerasSet(
        "cifar10",
        (CachedFile(
            "datasets/cifar-10-batches-py-target_archive",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
        ),),
        "rgb", (32, 32),
    ),
    "cifar100": KerasSet(
        "cifar100",
        (CachedFile(
            "datasets/cifar-100-python-target_archive",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
        ),),
        "rgb", (32, 32),
    ),
}

# Only fashion_mnist's class names are nowhere in its files (the CIFAR
# archives carry theirs; mnist's are the digits). From the loader's docstring.
_FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def keras_cache_dir() -> Path:
    """The folder Keras's `get_file` caches into, resolved now.

    Keras reads `KERAS_HOME` once, when it is imported, into
    `keras.src.backend.config._KERAS_DIR`; `keras_home()` returns that.
    Like `get_file`, fall back to `/tmp/.keras` when it is not writable.
    """
    from keras.src.backend import config as keras_config

    base = os.path.expanduser(keras_config.keras_home())
    if os.path.isdir(base) and not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base)


def keras_source(cfg: Any, name: Optional[str] = None) -> DataBundle:
    """Load one of Keras's downloadable sets through `keras.datasets`.

    Images become (H, W, 1) for the grayscale sets and (H, W, 3) for CIFAR,
    float32 with raw pixel values 0..255; the set's own test split is the
    test set.

    Raises:
        DataError: the set is not cached and cannot be downloaded (the
            message names the file and where to place it), or the cached
            file cannot be read.
    """
    name = name or cfg.data.source
    import keras

    spec = KERAS_SETS[name]
    cache = keras_cache_dir()
    missing = [f for f in spec.files if not (cache / f.path).exists()]
    loader = getattr(keras.datasets, spec.module).load_data
    try:
        # get_file reports downloads on stdout; stdout belongs to --json.
        with contextlib.redirect_stdout(sys.stderr):
            (x, y), (xt, yt) = loader()
    except Exception as exc:  # noqa: BLE001 - any failure to fetch or read
        gone = [f for f in spec.files if not (cache / f.path).exists()]
        if gone:
            where = "; ".join(
                f"place {f.download_name} (from {f.origin}) at {cache / f.path}" for f in gone
            )
            why = (
                "is not cached and cannot be downloaded" if missing
                else "failed Keras's checksum in the cache and cannot be downloaded again"
            )
            raise DataError(f"{name} {why} ({_first_line(exc)}): {where}") from None
        raise DataError(f"cannot read {name} from Keras's cache {cache / 'datasets'}: {_first_line(exc)}") from None
    x = np.asarray(x)
    xt = np.asarray(xt)
    if x.ndim == 3:  # grayscale (N, H, W) -> (N, H, W, 1)
        x, xt = x[..., None], xt[..., None]
    s = ArraySet(
        source=name,
        x=x,  # uint8 here; the pipeline casts each batch to float32
        y=np.asarray(y).reshape(-1).astype(np.int64),
        x_test=xt,
        y_test=np.asarray(yt).reshape(-1).astype(np.int64),
        class_names=_class_names(name, cache),
        kind="image",
        spec={
            "image_size": list(spec.image_size),
            "color_mode": spec.color_mode,
            "pixel_range": [0.0, 255.0],
        },
    )
    return finish(cfg, s)


def _class_names(name: str, cache: Path) -> list[str]:
    if name == "mnist":
        return [str(i) for i in range(10)]
    if name == "fashion_mnist":
        return list(_FASHION_NAMES)
    meta, key, n = {
        "cifar10": ("cifar-10-batches-py-target/cifar-10-batches-py/batches.meta", "label_names", 10),
        "cifar100": ("cifar-100-python-target/cifar-100-python/meta", "fine_label_names", 100),
    }[name]
    names = _read_meta(cache / "datasets" / meta, key)
    return names if names and len(names) == n else [str(i) for i in range(n)]


def _read_meta(path: Path, key: str) -> Optional[list[str]]:
    """Class names from a CIFAR `meta` pickle, read the way Keras reads the
    batches (its restricted unpickler: no code in the file runs)."""
    try:
        from keras.src.datasets.npz_utils import RestrictedUnpickler

        with open(path, "rb") as f:
            d = RestrictedUnpickler(f, encoding="bytes").load()
        return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in d[key.encode()]]
    except Exception:  # noqa: BLE001 - names are a nicety; numbers will do
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
