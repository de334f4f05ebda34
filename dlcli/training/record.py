"""Which epoch's weights a finished run's model.keras holds, and why.

Three things decide it, latest first: `train.monitor` (dlcli keeps that
metric's best epoch), a user's `EarlyStopping(restore_best_weights=True)`
(Keras puts its best epoch's weights back when fit ends), and otherwise
the last epoch. Ties follow Keras: a later epoch must beat the best value
strictly, so the first of several equal epochs is kept; the record names
the tied epochs so nobody has to guess.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence


def restored_epoch(callbacks: Sequence[Any]) -> Optional[int]:
    """The 1-based epoch whose weights a user's EarlyStopping with
    `restore_best_weights` put back at the end of the last fit, or None."""
    import keras

    for cb in callbacks:
        if (
            isinstance(cb, keras.callbacks.EarlyStopping)
            and cb.restore_best_weights
            and cb.best_weights is not None
        ):
            return int(cb.best_epoch) + 1
    return None


def early_stopping_monitor(callbacks: Sequence[Any]) -> Optional[str]:
    """The metric a restoring EarlyStopping watches (for the record)."""
    import keras

    for cb in callbacks:
        if isinstance(cb, keras.callbacks.EarlyStopping) and cb.restore_best_weights:
            return str(cb.monitor)
    return None


def tied_epochs(history: dict[str, list[Any]], monitor: Optional[str], value: Optional[float]) -> list[int]:
    """Epochs (1-based) whose `monitor` equals the best `value`."""
    if not monitor or value is None or monitor not in history:
        return []
    epochs = history.get("epoch") or list(range(1, len(history[monitor]) + 1))
    return [
        int(e)
        for e, v in zip(epochs, history[monitor])
        if v is not None and math.isfinite(float(v)) and math.isclose(float(v), float(value), rel_tol=0, abs_tol=1e-12)
    ]


def model_record(
    *,
    last_epoch: int,
    monitor_key: Optional[str],
    best_epoch: Optional[int],
    best_value: Optional[float],
    restored: Optional[int],
    restored_monitor: Optional[str],
    history: dict[str, list[Any]],
) -> dict[str, Any]:
    """What metrics.json says about model.keras.

    Args:
        last_epoch: the last completed epoch.
        monitor_key: `train.monitor`, or None.
        best_epoch, best_value: that monitor's best epoch and value.
        restored: the epoch an EarlyStopping restored, or None.
        restored_monitor: that EarlyStopping's monitor.
        history: history.csv's columns (for ties).

    Returns:
        {"epoch": N, "reason": "train.monitor" | "restore_best_weights" |
        "last", "monitor": ..., "value": ..., "tied_epochs": [...]}.
    """
    if monitor_key and best_epoch:
        epoch, reason, monitor = best_epoch, "train.monitor", monitor_key
    elif restored:
        epoch, reason, monitor = restored, "restore_best_weights", restored_monitor
    else:
        return {"epoch": last_epoch, "reason": "last", "monitor": None, "value": None, "tied_epochs": [],
                "metrics": epoch_row(history, last_epoch)}
    col = history.get(monitor or "", [])
    epochs = [int(e) for e in history.get("epoch", [])]
    value = best_value if reason == "train.monitor" else (col[epochs.index(epoch)] if epoch in epochs and col else None)
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    ties = tied_epochs(history, monitor, value)
    return {
        "epoch": epoch, "reason": reason, "monitor": monitor, "value": value,
        "tied_epochs": ties if len(ties) > 1 else [], "metrics": epoch_row(history, epoch),
    }


def epoch_row(history: dict[str, list[Any]], epoch: int) -> dict[str, Any]:
    """History's metrics of one epoch (1-based), NaN as None."""
    epochs = [int(e) for e in history.get("epoch", [])]
    if epoch not in epochs:
        return {}
    i = epochs.index(epoch)
    out = {}
    for k, col in history.items():
        if k in ("epoch", "phase") or i >= len(col):
            continue
        v = col[i]
        out[k] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
    return out


def describe_model(metrics: dict[str, Any]) -> str:
    """The closing line: `model.keras: epoch 11 of 19 (best val_loss
    0.2314, EarlyStopping restored it)`."""
    rec = metrics.get("model") or {}
    epoch = rec.get("epoch", metrics.get("model_epoch"))
    total = metrics.get("epochs_completed")
    text = f"model.keras: epoch {epoch} of {total}"
    reason = rec.get("reason")
    if reason == "last" or not reason:
        return text + " (the last epoch)"
    value = rec.get("value")
    best = f"best {rec.get('monitor')}" + (f" {value:.4g}" if value is not None else "")
    why = "train.monitor" if reason == "train.monitor" else "EarlyStopping restored it"
    ties = rec.get("tied_epochs") or []
    if ties:
        best += f", first of epochs {', '.join(map(str, ties))} with that value"
    return f"{text} ({best}; {why})"
