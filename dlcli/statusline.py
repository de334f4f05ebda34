"""One line a person watches on a terminal: its layout for any width, and
a transient status line while something slow runs before training
(TensorFlow starting, an image folder listed and checked).

The status line is drawn only on a terminal, on stderr, and only once the
wait has lasted `delay` seconds (a short wait draws nothing and costs
nothing); it is redrawn on its own clock (at most ten times a second) from
the counts the data stage reports (`dlcli.data.scanning`), and erased when
the wait ends, where the lines saying what was found take its place.
Nothing here imports TensorFlow; Rich is imported only when drawing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Iterator, Optional

from dlcli.data import scanning

# Narrowest bar worth drawing, and the widest (a longer bar says nothing more).
_MIN_BAR = 8
_MAX_BAR = 40
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _clock(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-:--"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_line(
    width: int,
    epoch: str,
    done: int,
    total: Optional[int],
    elapsed: float,
    metrics: str,
    finished: bool = False,
    unit: str = "steps",
) -> tuple[str, int, int]:
    """Lay out one progress line for a terminal `width` columns wide.

    Args:
        width: the terminal's width.
        epoch: what is counted: `epoch 3/10`, `checking images`.
        done: items (batches, files) completed so far.
        total: items in all, or None when unknown.
        elapsed: seconds since the count started.
        metrics: the metrics text, dropped first when space runs out.
        finished: the count is complete (no eta shown).
        unit: the items' name where the total is unknown (`1,200 files`).

    Returns:
        (the text with a gap of `bar` columns for the bar after the epoch,
        the bar's width, the number of bar cells filled). The caller draws
        the bar; a bar width of 0 means no bar (unknown total).
    """
    count = f"{done:,}/{total:,}" if total else f"{done:,} {unit}"
    if finished or not total or not done:
        times = _clock(elapsed)
    else:
        times = f"{_clock(elapsed)} eta {_clock(elapsed / done * (total - done))}"
    parts_fixed = f"{epoch} " + "{bar}" + f" {count}"
    base = len(parts_fixed) - len("{bar}")
    room = width - 1 - base  # Rich needs the last column free
    # The bar's width depends on the terminal's only, so it does not jump
    # as metrics come and go; the metrics get what is left.
    bar = max(_MIN_BAR, min(_MAX_BAR, width // 4)) if total else 0
    room -= bar
    tail = ""
    if room >= len(times) + 1:
        tail = " " + times
        room -= len(times) + 1
        shown = _fit_metrics(metrics, room - 1)
        if shown:
            tail += " " + shown
    text = parts_fixed.replace("{bar}", "\0") + tail
    filled = int(bar * min(done, total) / total) if total else 0
    return text, bar, filled


def _fit_metrics(metrics: str, room: int) -> str:
    """As many whole `name=value` items as fit in `room` columns."""
    out = ""
    for item in metrics.split():
        cand = f"{out} {item}" if out else item
        if len(cand) > room:
            break
        out = cand
    return out


def styled(text: str, bar: int, filled: int, finished: bool = False) -> Any:
    """`progress_line`'s text as Rich Text, the bar drawn in its gap."""
    from rich.text import Text

    head, _, tail = text.partition("\0")
    out = Text(head, style="bold")
    if bar:
        out.append("━" * filled, style="green" if finished else "magenta")
        out.append("━" * (bar - filled), style="grey23")
    out.append(tail.replace("\0", ""))
    return out


def settle(progress: str, verbose: str = "auto") -> str:
    """progress | lines | none: `auto` (the caller's, then the config's
    `train.verbose`) settled by whether stderr is a terminal."""
    mode = verbose if progress == "auto" else progress
    if mode == "auto":
        tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        return "progress" if tty else "lines"
    return mode


class StatusLine:
    """A transient line on `console` (stderr, a terminal) while a wait
    lasts: drawn after `delay` seconds, redrawn `refresh` times a second.

    `update` is the data stage's listener: it only stores the counts.
    """

    def __init__(self, console: Any, what: str, delay: float = 0.5, refresh: float = 10.0) -> None:
        self.console = console
        self.what = what
        self.done: Optional[int] = None
        self.total: Optional[int] = None
        self.delay = delay
        self.refresh = refresh
        self._since = time.perf_counter()
        self._lock = threading.Lock()
        self._closed = False
        self._live: Any = None
        self._timer: Optional[threading.Timer] = None

    def update(self, what: str, done: Optional[int] = None, total: Optional[int] = None) -> None:
        if what != self.what:
            self.what, self._since = what, time.perf_counter()
        self.done, self.total = done, total

    def start(self) -> None:
        if self.delay <= 0:
            self._show()
            return
        self._timer = threading.Timer(self.delay, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        from rich.errors import LiveError
        from rich.live import Live

        with self._lock:
            if self._closed:
                return
            # stdout stays as it is (it carries results and --json); what
            # is printed on stderr meanwhile goes above the line.
            live = Live(self, console=self.console, transient=True, refresh_per_second=self.refresh,
                        redirect_stdout=False, redirect_stderr=True)
            try:
                live.start()
            except LiveError:  # another display owns the terminal: draw nothing
                return
            self._live = live

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            live, self._live = self._live, None
        if live is not None:
            live.stop()  # transient: the line is erased

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.text import Text

        elapsed = time.perf_counter() - self._since
        done, total = self.done, self.total
        if done is None:
            spin = _SPINNER[int(elapsed * self.refresh) % len(_SPINNER)]
            yield Text(f"{spin} {self.what}… {_clock(elapsed)}"[: max(1, options.max_width - 1)])
            return
        # Every scan reported counts files.
        yield styled(*progress_line(options.max_width, self.what, done, total, elapsed, "", unit="files"))


@contextlib.contextmanager
def waiting(mode: str, console: Any = None, what: str = "loading data", delay: float = 0.5,
            ) -> Iterator[Optional[StatusLine]]:
    """A status line for the block on a terminal (`mode` progress), drawn
    after `delay` seconds; the data stage's reports inside it move its
    count. Elsewhere nothing."""
    if mode != "progress":
        yield None
        return
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    line = StatusLine(console, what, delay=delay)
    with scanning.listening(line.update):
        line.start()
        try:
            yield line
        finally:
            line.close()


def starting_tensorflow(progress: str, console: Any = None, verbose: str = "auto") -> Any:
    """`starting TensorFlow…` on a terminal, drawn at once (the import holds
    the interpreter for seconds, so a delayed line would come late), while
    the block imports it; nothing when it is imported already."""
    first = "tensorflow" not in sys.modules
    return waiting(settle(progress, verbose) if first else "none", console, "starting TensorFlow", delay=0)
