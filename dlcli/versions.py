"""The version stamp a run's metrics.json and an export record."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """The versions of dlcli and the libraries a model depends on.

    Imports TensorFlow: call it where a model exists anyway.
    """
    import keras
    import numpy
    import tensorflow as tf

    from dlcli import __version__

    return {
        "dlcli": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
