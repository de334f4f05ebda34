"""scikit-learn's bundled data sets: digits, iris, wine, breast_cancer,
diabetes. They ship inside scikit-learn, so they work offline."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dlcli.data.arrays import ArraySet, finish
from dlcli.data.bundle import DataBundle


def load_sklearn(name: str) -> Any:
    """Return scikit-learn's Bunch for a bundled set (`load_<name>()`)."""
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")()


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits as float32 (N, 8, 8, 1), raw 0..16."""
    bunch = load_sklearn("digits")
    return bunch.images.astype(np.float32)[..., None], bunch.target.astype(np.int64)


def sklearn_source(cfg: Any, name: Optional[str] = None) -> DataBundle:
    """Load one of scikit-learn's bundled sets as a DataBundle.

    digits: images (8, 8, 1), pixel values 0..16 kept raw (the model
    rescales; spec `pixel_range`). iris / wine / breast_cancer: feature
    vectors standardised with the training split's mean and std (recorded in
    the spec). diabetes: standardised vectors, float regression target.
    """
    name = name or cfg.data.source
    if name == "digits":
        x, y = digits_arrays()
        s = ArraySet(
            source=name,
            x=x,
            y=y,
            class_names=[str(i) for i in range(10)],
            kind="image",
            spec={"image_size": [8, 8], "color_mode": "grayscale", "pixel_range": [0.0, 16.0]},
        )
        return finish(cfg, s)
    bunch = load_sklearn(name)
    x = np.asarray(bunch.data, dtype=np.float32)
    features = [str(f) for f in bunch.feature_names]
    if name == "diabetes":
        s = ArraySet(source=name, x=x, y=bunch.target.astype(np.float32), class_names=None,
                     kind="vector", standardize=True, spec={"features": features, "numeric": features})
    else:
        s = ArraySet(source=name, x=x, y=bunch.target.astype(np.int64),
                     class_names=[str(c) for c in bunch.target_names],
                     kind="vector", standardize=True, spec={"features": features, "numeric": features})
    return finish(cfg, s)
