"""Writing `.weights.h5` files so that a full disk is a plain write error.

HDF5 writing straight to disk fails badly when the disk fills: Keras leaves
the half-written file open, h5py prints its objects' failed flushes as
tracebacks after dlcli's own message, and HDF5 can crash the process at
exit (a segfault, exit 139). Here HDF5 builds the file in memory and one
ordinary Python write puts it on disk, through `atomic_path`: a full disk
is then an `OSError` naming the file, nothing of HDF5 is left open, and no
half-written file stays behind.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dlcli.runs import atomic_path


class _WeightsBuffer(io.BytesIO):
    """An in-memory file Keras accepts as a `.weights.h5` target: Keras
    checks the name's suffix with `str()`, and h5py writes into file
    objects."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def __str__(self) -> str:
        return self._name


def save_weights(model: Any, path: Path) -> None:
    """Write `model.save_weights` to `path` atomically.

    Raises:
        OSError: the file could not be written (its `filename` is `path`);
            any previous `path` is untouched.
    """
    path = Path(path)
    buffer = _WeightsBuffer(path.name)
    model.save_weights(buffer)
    try:
        with atomic_path(path, suffix=".weights.h5") as tmp, open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
