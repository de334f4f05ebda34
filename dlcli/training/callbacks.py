"""Callbacks dlcli adds to every fit: history, checkpoints, divergence and
interrupt handling (the progress display is in dlcli.training.progress)."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import keras

from dlcli.runs import HISTORY_FILE, atomic_write_text
from dlcli.training import checkpoint as ckpt


class RunRecorder(keras.callbacks.Callback):
    """Keeps the history, writes history.csv and a checkpoint after every
    epoch, tracks the best epoch, and stops on a non-finite loss or on a
    signal.

    It must come after the user's callbacks in the list given to `fit`, so
    that a checkpoint holds what they did at the end of the epoch (a
    learning rate lowered by ReduceLROnPlateau, EarlyStopping's patience).

    Args:
        run_dir: the run folder.
        state: the state to update and checkpoint.
        monitor: the metric whose best epoch is tracked, or None.
        keep_best: write the best epoch's weights (model.keras becomes them).
        checkpoint_every: write a checkpoint every N epochs (and at the last).
        last_epoch: the run's last epoch (1-based), always checkpointed.
        user_callbacks: callbacks whose state goes into the checkpoint.
        restore_callbacks: a saved callback state to put back at the start
            of training (a resumed run), with its arrays.
        extra_columns: more history columns for an epoch (the phase).
        has_validation: fit gets validation data (val_* logs exist).
        data_rng: RNG state variables of the data pipeline to checkpoint.
    """

    def __init__(
        self,
        run_dir: Path,
        state: ckpt.TrainState,
        *,
        monitor: Optional[str],
        keep_best: bool = False,
        checkpoint_every: int = 1,
        last_epoch: int = 0,
        user_callbacks: Sequence[Any] = (),
        restore_callbacks: Optional[tuple[list[dict[str, Any]], dict[str, Any]]] = None,
        extra_columns: Optional[Callable[[int], dict[str, Any]]] = None,
        has_validation: bool = False,
        data_rng: Sequence[Any] = (),
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state = state
        self.monitor = monitor
        self.mode = monitor_mode(monitor) if monitor else None
        self.keep_best = keep_best
        self.checkpoint_every = checkpoint_every
        self.last_epoch = last_epoch
        self.user_callbacks = list(user_callbacks)
        self.restore_callbacks = restore_callbacks
        self.extra_columns = extra_columns
        self.has_validation = has_validation
        self.data_rng = list(data_rng)
        # Set when `monitor` names no metric of the run: the names there are.
        self.bad_monitor: Optional[list[str]] = None
        # (epoch, first batch, last batch, loss), 1-based: with
        # steps_per_execution > 1 Keras reports a span of batches at once.
        self.diverged: Optional[tuple[int, int, int, float]] = None
        self.interrupted: Optional[str] = None
        self.batches_done = 0  # in this process: 0 means the first step failed
        self.checkpointed_epoch = state.epoch
        self._baselines: list[dict[str, Any]] = []
        self._epoch = 0
        self._batch_begin = 0
        self._t0 = 0.0

    @property
    def stop_reason(self) -> Optional[str]:
        """Why training stopped early: a signal name, "diverged", or None."""
        if self.interrupted:
            return self.interrupted
        if self.bad_monitor is not None:
            return "bad monitor"
        return "diverged" if self.diverged else None

    # -- signals ---------------------------------------------------------
    def request_stop(self, signame: str) -> None:
        """Stop after the current batch; the partial epoch is abandoned."""
        self.interrupted = signame
        if self.model is not None:
            self.model.stop_training = True

    # -- keras hooks -----------------------------------------------------
    def on_train_begin(self, logs=None):
        # The user's callbacks reset themselves in their on_train_begin,
        # which has run by now (they come first): take the baseline, then
        # put a resumed run's state back.
        self._baselines = [ckpt.callback_baseline(cb) for cb in self.user_callbacks]
        if self.restore_callbacks is not None:
            saved, arrays = self.restore_callbacks
            ckpt.restore_callback_state(self.user_callbacks, saved, arrays)
            self.restore_callbacks = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t0 = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.batches_done == 0 and self.monitor:
            # The first batch's logs name every metric: a misspelt monitor
            # is found now, not after an epoch that never improves.
            names = sorted({*logs, *(f"val_{k}" for k in logs if self.has_validation)})
            if self.monitor not in names:
                self.bad_monitor = names
        self.batches_done += 1
        loss = logs.get("loss")
        if loss is not None and self.diverged is None and not math.isfinite(float(loss)):
            steps = (self.params or {}).get("steps") or batch + 1
            last = min(batch, steps - 1) + 1
            self.diverged = (self._epoch + 1, min(self._batch_begin + 1, last), last, float(loss))
        if self.stop_reason:
            # fit() clears stop_training when it starts: set it again.
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        # No point validating an epoch that will be thrown away.
        if self.stop_reason:
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_reason:
            return  # a partial or broken epoch is not recorded
        logs = dict(logs or {})
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (epoch + 1, 0, 0, float(loss))
            self.model.stop_training = True
            return
        row: dict[str, Any] = {"epoch": epoch + 1}
        if self.extra_columns:
            row.update(self.extra_columns(epoch))
        row.update({k: float(v) for k, v in logs.items() if _scalar(v)})
        row["learning_rate"] = current_lr(self.model)
        row["epoch_time_s"] = round(time.perf_counter() - self._t0, 4)
        append_row(self.state.history, row)
        self.state.epoch = epoch + 1
        self.state.elapsed_s += row["epoch_time_s"]
        if self.monitor:
            value = logs.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                best = self.state.best_value
                if best is None or (value < best if self.mode == "min" else value > best):
                    self.state.best_value = float(value)
                    self.state.best_epoch = epoch + 1
                    if self.keep_best:
                        self.state.best_file = ckpt.save_best(self.run_dir, self.model, epoch + 1)
        if (
            (epoch + 1) % self.checkpoint_every == 0
            or epoch + 1 >= self.last_epoch
            or self.model.stop_training
        ):
            self.save_checkpoint()
        # After the checkpoint: history.csv never runs ahead of it by more
        # than the epochs checkpoint_every skips.
        write_history(self.run_dir, self.state.history)

    def save_checkpoint(self) -> None:
        """Checkpoint the current state (called at an epoch's end)."""
        t0 = time.perf_counter()
        ckpt.save(
            self.run_dir,
            self.model,
            self.state,
            callbacks=list(zip(self.user_callbacks, self._baselines)),
            data_rng=self.data_rng,
        )
        self.checkpointed_epoch = self.state.epoch
        # Counted for the next checkpoint (metrics.json reports the cost).
        self.state.checkpoint_s += time.perf_counter() - t0


def _scalar(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def current_lr(model: Any) -> float:
    """The optimizer's learning rate now (a schedule evaluated at the
    current step); NaN where there is none."""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return float("nan")
    try:
        lr = opt.learning_rate
        if callable(lr) and not hasattr(lr, "numpy"):
            lr = lr(opt.iterations)
        return float(keras.ops.convert_to_numpy(lr))
    except Exception:  # noqa: BLE001 - a schedule we cannot evaluate
        return float("nan")


def monitor_mode(monitor: str) -> str:
    """min or max: whether lower or higher values of `monitor` are better."""
    m = monitor.lower()
    maxish = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
    return "max" if any(t in m for t in maxish) else "min"


def append_row(history: dict[str, list[Any]], row: dict[str, Any]) -> None:
    """Add one epoch's row; columns missing on either side get NaN."""
    n = len(history.get("epoch", []))
    for k in row:
        history.setdefault(k, [float("nan")] * n)
    for k, col in history.items():
        col.append(row.get(k, float("nan")))


def write_history(run_dir: Path, history: dict[str, list[Any]]) -> None:
    """Write history.csv (one row per epoch, every column) atomically."""
    cols = list(history.keys())
    n = len(history.get("epoch", []))
    lines = [",".join(cols)]
    for i in range(n):
        vals = []
        for c in cols:
            col = history[c]
            v = col[i] if i < len(col) else float("nan")
            if v is None or (isinstance(v, float) and math.isnan(v)):
                vals.append("")
            elif c in ("epoch", "phase"):
                vals.append(str(int(v)))
            else:
                vals.append(repr(float(v)))
        lines.append(",".join(vals))
    atomic_write_text(Path(run_dir) / HISTORY_FILE, "\n".join(lines) + "\n")


class SignalGuard:
    """Turn SIGINT/SIGTERM into a graceful stop of the running fit.

    The first signal asks the recorder to stop after the current batch; a
    second one raises KeyboardInterrupt to stop waiting (the last complete
    checkpoint is still on disk, as every write is atomic).
    """

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalGuard":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: nothing to catch
                pass
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.recorder.interrupted:
            raise KeyboardInterrupt
        self.recorder.request_stop(signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class EpochOrder(keras.callbacks.Callback):
    """Tell the data pipeline which epoch begins, so that its shuffle
    draws that epoch's order (`dlcli.data.pipeline.shuffle_each_epoch`):
    a resumed run sees the batches an uninterrupted one would have.

    Keras starts an epoch's data iterator after `on_epoch_begin`, in
    `fit` as in dlcli's multi-worker loop.
    """

    def on_epoch_begin(self, epoch, logs=None):
        from dlcli.data.pipeline import set_epoch

        set_epoch(epoch)
