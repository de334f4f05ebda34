"""Keras's weights cache, as the Backbone entry uses it.

ImageNet weights come through Keras's own download and cache
(`$KERAS_HOME/models`, default `~/.keras/models`). Offline and not cached,
a DataError names the exact file Keras asks for and the folder to put it in.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from dlcli.errors import DataError
from dlcli.model._common import short_message

# A download that stalls this long is treated as offline.
_DOWNLOAD_TIMEOUT_S = 60

# Keras's application code calls module-level helpers (file_utils.get_file,
# imagenet_utils.obtain_input_shape); dlcli swaps them briefly to learn what
# Keras asks for. One swap at a time.
PATCH_LOCK = threading.RLock()


def keras_home() -> Path:
    """The Keras cache root: `$KERAS_HOME` now, else what Keras computed.

    Keras reads KERAS_HOME once, when it is imported
    (keras/src/backend/config.py); dlcli reads it at call time and passes it
    to Keras explicitly, so setting it later still counts.
    """
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    from keras.src.backend import config as keras_config

    return Path(keras_config.keras_home()).expanduser()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def keras_weights_cache(display: str) -> Iterator[list[Path]]:
    """Route Keras's weight downloads through the cache, with clear errors.

    While active, `keras.utils.get_file` (as the applications call it) looks
    in `keras_home()/<cache_subdir>/<fname>` first, downloads only when the
    file is missing (or fails Keras's hash check), prints its progress on
    stderr (stdout is for `--json`), and turns a failed download into a
    DataError naming the file and the folder Keras expects.

    Args:
        display: the backbone's name, for messages.

    Yields:
        A list that receives the path of every file Keras asked for.
    """
    from keras.src.utils import file_utils

    asked: list[Path] = []
    with PATCH_LOCK:
        real = file_utils.get_file

        def get_file(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
            base = Path(kwargs.pop("cache_dir", None) or keras_home()).expanduser()
            # Keras creates its home when imported; one named later is
            # created here. An unwritable one sends Keras to /tmp/.keras
            # (keras/src/utils/file_utils.py): follow it, so the message
            # names the folder Keras really uses.
            with contextlib.suppress(OSError):
                base.mkdir(parents=True, exist_ok=True)
            if not os.access(base, os.W_OK):
                base = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
            cache_dir = str(base)
            subdir = kwargs.get("cache_subdir", "datasets")
            name = str(fname) if fname else os.path.basename(urllib.parse.urlsplit(str(origin)).path)
            target = base / subdir / name
            asked.append(target)
            cached = target.exists()
            try:
                with contextlib.redirect_stdout(sys.stderr), _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                    return real(fname, origin, *args, cache_dir=cache_dir, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any download failure: one clear message
                # Keras words it "URL fetch failure on <url>: <code> -- <reason>".
                reason = str(exc).rsplit(" -- ", 1)[-1].strip() or type(exc).__name__
                reason = short_message(Exception(reason), 120)
                if cached:
                    message = (f"the cached weights file {target} for {display} fails Keras's hash check "
                               f"and a fresh copy could not be downloaded ({reason})")
                else:
                    message = (f"ImageNet weights for {display} are not in Keras's cache and could not be downloaded "
                               f"({reason}): Keras expects the file {name} in {target.parent}")
                raise DataError(message, hint=f"download {origin} into that folder, or use weights: none") from None

        file_utils.get_file = get_file
        try:
            yield asked
        finally:
            file_utils.get_file = real
