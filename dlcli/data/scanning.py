"""How far a long data scan has got, for whoever shows it.

The data stage reports (listing a folder, the pre-flight check of its
images, reading text or audio files); a display listens while the data
loads (`dlcli.statusline`). Nobody listening (the Python API, a pipe,
`--quiet`), a report costs one comparison. Reports come from the thread
that loads the data; a listener only stores them (it draws on its own
clock), so reporting never slows a scan down.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

Listener = Callable[[str, Optional[int], Optional[int]], None]
_listener: Optional[Listener] = None


def report(what: str, done: int, total: Optional[int] = None) -> None:
    """`done` of `total` items (None: not known yet) of the step `what`
    ("checking images")."""
    if _listener is not None:
        _listener(what, done, total)


def step(what: str) -> None:
    """A step without a count begins ("building the input pipeline")."""
    if _listener is not None:
        _listener(what, None, None)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the reports made inside the block to `listener`."""
    global _listener
    before, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = before
