"""Data sources and `tf.data` pipelines.

`load_data(cfg)` turns the `data:` section of a config into a `DataBundle`
(batched train / val / test datasets plus the `spec` that predict, evaluate
and export use to repeat the preprocessing). `load_inputs(spec, paths, ...)`
applies that recorded preprocessing to new files at predict time.

Importing this package is cheap: TensorFlow is imported by the functions
that need it, so `dlcli validate` can read the source registry
(`SOURCES`, `dlcli.data.registry`) without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from dlcli.data.bundle import DataBundle
from dlcli.data.registry import (
    IMAGE_EXTENSIONS,
    READERS,
    SOURCES,
    Reader,
    Source,
    register_reader,
    register_source,
)
from dlcli.data.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from dlcli.config.schema import Config

__all__ = [
    "DataBundle",
    "load_data",
    "load_inputs",
    "make_demo_image_folder",
    "DataSpec",
    "SOURCES",
    "READERS",
    "Source",
    "Reader",
    "register_source",
    "register_reader",
    "IMAGE_EXTENSIONS",
]


def load_data(cfg: "Config") -> DataBundle:
    """Load the data a config describes as batched `tf.data` pipelines.

    Args:
        cfg: a validated dlcli `Config`; its `data` section picks the source,
            `compile.loss` decides how labels are shaped and `seed` seeds
            every split and shuffle.

    Returns:
        A `DataBundle` with train / val / test datasets and the `DataSpec`
        saved as `data_spec.json`.

    Raises:
        ConfigError: a data key that cannot work (unknown source, missing
            `data.path`, a class that does not exist, a loss that does not fit
            the labels).
        DataError: data that is missing, unreadable or unusable.
    """
    from dlcli.data.loader import load_data as _load

    return _load(cfg)


def load_inputs(
    spec: "DataSpec | dict", paths: Sequence[str], batch_size: int = 32, *, tensors: bool = False
) -> Iterator[tuple[list[str], "np.ndarray", list[tuple[str, str]]]]:
    """Yield batches of predict inputs preprocessed exactly as in training.

    Args:
        spec: the run's `DataSpec` (or the mapping read from its
            `data_spec.json`).
        paths: image files, folders of images (searched recursively, in
            sorted order), CSV files or NPZ / NPY files.
        batch_size: the most samples per yielded batch.
        tensors: image batches as the decoding pipeline's float32 tensors
            (what predict hands the model, no copy through numpy); such a
            batch may hold fewer than `batch_size` samples.

    Returns:
        An iterator of `(names, x, errors)`: the names of the samples in `x`
        (file paths for images, `file.csv:line` for CSV rows, `file.npz:i`
        for arrays), a float32 array of at most `batch_size` samples, and
        `(name, message)` pairs for the inputs that were skipped.

    Raises:
        DataError: a missing path, or an input kind the model cannot take
            (checked for every path before anything is yielded).
    """
    from dlcli.data.inputs import load_inputs as _load_inputs

    return _load_inputs(spec, paths, batch_size, tensors=tensors)


def make_demo_image_folder(
    path,
    n_per_class: int = 60,
    size: int | tuple[int, int] = 128,
    corrupt: bool = True,
    seed: int = 0,
) -> dict:
    """Write a small generated `cats_dogs/`-shaped image folder.

    See `dlcli.data.demo.make_demo_image_folder`.
    """
    from dlcli.data.demo import make_demo_image_folder as _make

    return _make(path, n_per_class=n_per_class, size=size, corrupt=corrupt, seed=seed)
