"""What a person watching a run sees on stderr: a line while the data
loads, what was found, one bar per epoch on a terminal (one line per epoch
in a pipe), nothing when quiet.

The bar counts the batches Keras has really run. With
`compile.steps_per_execution: N` Keras reports every N batches at once and
names the last batch of the span, which may lie past the end of a short
epoch; the count is clipped to the epoch's length. The line is laid out
for the terminal's width each time it is drawn: the epoch, the bar and the
count always stay, the metrics are dropped first, then the times (the
layout is `dlcli.statusline.progress_line`, shared with the status line
drawn while the data loads).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import keras

from dlcli.statusline import progress_line, styled, waiting

__all__ = ["Progress", "describe_data", "format_metrics", "loading", "progress_line"]


def format_metrics(logs: dict[str, Any]) -> str:
    """`loss=0.1234 accuracy=0.9` from Keras's logs (scalars only)."""
    return " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))


class _LineColumn:
    """A Rich renderable column drawing the whole line at the console's
    width (Rich's own columns shrink the epoch and the bar before the
    metrics on a narrow terminal)."""

    def __init__(self) -> None:
        from rich.progress import ProgressColumn

        outer = self

        class Column(ProgressColumn):
            def render(self, task: Any) -> Any:
                return outer.render(task)

        self.column = Column()
        self.console: Any = None

    def render(self, task: Any) -> Any:
        f = task.fields
        width = self.console.width if self.console is not None else 80
        text, bar, filled = progress_line(
            width, f["epoch"], int(task.completed), task.total and int(task.total),
            f.get("elapsed_s", task.elapsed or 0.0), f["metrics"], f.get("finished", False),
        )
        return styled(text, bar, filled, finished=f.get("finished", False))


class Progress(keras.callbacks.Callback):
    """Epoch/batch progress on stderr.

    Args:
        mode: progress (a bar on a terminal) | lines (one line per epoch)
            | none.
        epochs: the last epoch of the run (for "epoch 3/10").
        steps: batches per epoch, where known (Keras's params win).
        console: the Rich console to draw on (stderr).
        recorder: the run's RunRecorder; a stopped epoch is shown as such.
    """

    def __init__(self, mode: str, epochs: int, steps: Optional[int], console: Any = None, recorder: Any = None) -> None:
        super().__init__()
        self.mode = mode
        self.epochs = epochs
        self.steps = steps
        self.console = console
        self.recorder = recorder
        self._progress: Any = None
        self._task: Any = None
        self._t0 = 0.0

    def _total(self) -> Optional[int]:
        steps = (self.params or {}).get("steps") or self.steps
        return int(steps) if steps else None

    def on_train_begin(self, logs=None):
        if self.mode != "progress" or self._progress is not None:
            return
        from rich.console import Console
        from rich.progress import Progress as RichProgress

        self.console = self.console or Console(stderr=True)
        line = _LineColumn()
        line.console = self.console
        self._progress = RichProgress(line.column, console=self.console, transient=False, refresh_per_second=8)
        self._progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self._progress is not None:
            self._task = self._progress.add_task(
                "train", total=self._total(), epoch=f"epoch {epoch + 1}/{self.epochs}", metrics="", elapsed_s=0.0
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._progress is None or self._task is None:
            return
        total = self._total()
        done = batch + 1 if total is None else min(batch + 1, total)
        self._progress.update(
            self._task, completed=done, metrics=format_metrics(logs or {}), elapsed_s=time.perf_counter() - self._t0
        )

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        stopped = self.recorder is not None and self.recorder.stop_reason is not None
        text = f"stopped ({self.recorder.stop_reason})" if stopped else format_metrics(logs or {})
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[-1]
            total = self._total() or int(task.completed)
            self._progress.update(
                self._task, total=total, completed=total if not stopped else task.completed,
                metrics=text, elapsed_s=dt, finished=not stopped,
            )
            self._progress.refresh()
        elif self.mode == "lines":
            print(f"epoch {epoch + 1}/{self.epochs} {text} ({dt:.1f}s)", file=sys.stderr, flush=True)

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def loading(mode: str, console: Any = None, what: str = "loading data") -> Any:
    """While the data is read and checked: on a terminal, after half a
    second, a line with the scan's count (an image folder's listing and
    pre-flight check, text or audio files read), erased when done; nothing
    in a pipe or when quiet."""
    return waiting(mode, console, what)


# What a folder source's files are called in the "found" line.
_FOUND_NOUN = {"image_dir": "images", "text_dir": "text files", "audio_dir": "audio files"}


def describe_found(spec: Any) -> Optional[str]:
    """`found 1,920 images in 4 classes, 3 skipped` for a folder source
    (the line that replaces the scan's status line); None for others."""
    found = getattr(spec, "found", None)
    if found is None:
        return None
    noun = _FOUND_NOUN.get(getattr(spec, "source", ""), "files")
    text = f"found {found:,} {noun}"
    if getattr(spec, "class_names", None):
        text += f" in {len(spec.class_names)} classes"
    return text + (f", {spec.skipped:,} skipped" if getattr(spec, "skipped", None) else "")


def describe_data(bundle: Any) -> str:
    """`data: 1,920 train, 213 val, 480 test; 4 classes` (short enough
    for a 60-column terminal), after the `found` line of a folder source."""
    parts = [f"{bundle.num_train:,} train"]
    if getattr(bundle, "num_val", 0):
        parts.append(f"{bundle.num_val:,} val")
    if getattr(bundle, "num_test", 0):
        parts.append(f"{bundle.num_test:,} test")
    text = "data: " + ", ".join(parts)
    n = getattr(bundle, "num_classes", None)
    if n and getattr(bundle, "task", None) not in ("regression", None):
        text += f"; {n} classes"
    found = describe_found(getattr(bundle, "spec", None))
    return f"{found}\n{text}" if found else text
