"""Cleaning up after an HDF5 write that failed (a full disk)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Optional


def release_failed_file(exc: OSError, path: Path) -> None:
    """Close an HDF5 file a failed write (a full disk) left open at `path`.

    Keras does not close it; left to the garbage collector, h5py prints
    each of its objects' failed flush as a traceback and HDF5 crashes the
    process at exit (a segfault after dlcli's own message).
    """
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return
    import gc
    import traceback

    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        # The dying objects of the failed file report their failed flush,
        # now or at exit: noise after dlcli's own message.
        if "h5py" not in repr(getattr(unraisable, "object", "")):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        seen: set[int] = set()
        link: Optional[BaseException] = exc
        while link is not None and id(link) not in seen:  # Keras may re-raise: its frames hold the file
            seen.add(id(link))
            traceback.clear_frames(link.__traceback__)
            link = link.__context__ or link.__cause__
        gc.collect()
        for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
            with contextlib.suppress(Exception):
                if os.path.abspath(h5py.h5f.get_name(fid).decode()) != os.path.abspath(path):
                    continue
                with contextlib.suppress(Exception):
                    fid._close_open_objects(h5py.h5f.OBJ_LOCAL | ~h5py.h5f.OBJ_FILE)
                fid.close()
        gc.collect()
    except Exception:  # noqa: BLE001 - best effort: the write error itself is what the user sees
        pass
