"""Callbacks dlcli adds to every fit: progress, history, checkpoints,
divergence and interrupt handling."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import keras

from dlcli.runs import HISTORY_FILE, atomic_write_text
from dlcli.training import checkpoint as ckpt


def _fmt(logs: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))


class Progress(keras.callbacks.Callback):
    """Epoch/batch progress: a Rich bar on a terminal, one line per epoch in a
    pipe, nothing when quiet. Everything goes to stderr."""

    def __init__(self, mode: str, epochs: int, steps: Optional[int], console: Any = None) -> None:
        super().__init__()
        self.mode = mode
        self.epochs = epochs
        self.steps = steps
        self.console = console
        self._progress = None
        self._task = None
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        if self.mode == "progress":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress as RichProgress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = RichProgress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self._progress is not None:
            self._task = self._progress.add_task(
                "train", total=self.steps, epoch=epoch + 1, epochs=self.epochs, metrics=""
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=batch + 1, metrics=_fmt(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        line = f"epoch {epoch + 1}/{self.epochs} {_fmt(logs or {})} ({dt:.1f}s)"
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.steps, metrics=_fmt(logs or {}))
        elif self.mode == "lines":
            print(line, file=sys.stderr, flush=True)

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class RunRecorder(keras.callbacks.Callback):
    """Keeps the history, writes history.csv and a checkpoint after every
    epoch, tracks the best epoch, and stops on NaN loss or on a signal."""

    def __init__(
        self,
        run_dir: Path,
        state: ckpt.TrainState,
        *,
        monitor: Optional[str],
        checkpoint_every: int = 1,
        extra_columns: Optional[Callable[[int], dict[str, Any]]] = None,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state = state
        self.monitor = monitor
        self.mode = _monitor_mode(monitor) if monitor else None
        self.checkpoint_every = checkpoint_every
        self.extra_columns = extra_columns
        self.diverged: Optional[tuple[int, int, float]] = None
        self.interrupted: Optional[str] = None
        self._epoch = 0
        self._t0 = 0.0

    # -- signals ---------------------------------------------------------
    def request_stop(self, signame: str) -> None:
        self.interrupted = signame
        if self.model is not None:
            self.model.stop_training = True

    # -- keras hooks -----------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self._epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged or self.interrupted:
            return  # a partial or broken epoch is not recorded
        logs = dict(logs or {})
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (epoch + 1, 0, float(loss))
            self.model.stop_training = True
            return
        row = {"epoch": epoch + 1}
        if self.extra_columns:
            row.update(self.extra_columns(epoch))
        row.update({k: float(v) for k, v in logs.items() if _scalar(v)})
        row["learning_rate"] = _current_lr(self.model)
        row["epoch_time_s"] = round(time.perf_counter() - self._t0, 4)
        append_row(self.state.history, row)
        self.state.epoch = epoch + 1
        self.state.elapsed_s += row["epoch_time_s"]
        improved = False
        if self.monitor:
            value = logs.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                best = self.state.best_value
                if best is None or (value < best if self.mode == "min" else value > best):
                    self.state.best_value = float(value)
                    self.state.best_epoch = epoch + 1
                    improved = True
        write_history(self.run_dir, self.state.history)
        if improved:
            ckpt.save_best(self.run_dir, self.model)
        if (epoch + 1) % self.checkpoint_every == 0 or self.model.stop_training:
            ckpt.save(self.run_dir, self.model, self.state)


def _scalar(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _current_lr(model: Any) -> float:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return float("nan")
    lr = opt.learning_rate
    try:
        if callable(lr) and not hasattr(lr, "numpy"):
            lr = lr(opt.iterations)
        return float(keras.ops.convert_to_numpy(lr))
    except Exception:  # noqa: BLE001 - a schedule we cannot evaluate
        return float("nan")


def _monitor_mode(monitor: str) -> str:
    m = monitor.lower()
    maxish = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
    return "max" if any(t in m for t in maxish) else "min"


def append_row(history: dict[str, list[float]], row: dict[str, Any]) -> None:
    """Add one epoch's row; columns missing on either side get NaN."""
    n = len(history.get("epoch", []))
    for k in row:
        history.setdefault(k, [float("nan")] * n)
    for k, col in history.items():
        col.append(row.get(k, float("nan")))


def write_history(run_dir: Path, history: dict[str, list[float]]) -> None:
    """Write history.csv (one row per epoch, every column) atomically."""
    cols = list(history.keys())
    n = len(history.get("epoch", []))
    lines = [",".join(cols)]
    for i in range(n):
        vals = []
        for c in cols:
            col = history[c]
            v = col[i] if i < len(col) else ""
            vals.append("" if v == "" or (isinstance(v, float) and math.isnan(v)) else (str(int(v)) if c in ("epoch", "phase") else repr(float(v))))
        lines.append(",".join(vals))
    atomic_write_text(Path(run_dir) / HISTORY_FILE, "\n".join(lines) + "\n")


class SignalGuard:
    """Turn SIGINT/SIGTERM into a graceful stop of the running fit."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalGuard":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.recorder.interrupted:
            # a second Ctrl-C: stop waiting for the batch
            raise KeyboardInterrupt
        self.recorder.request_stop(signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
