"""The Keras callback that reports a trial's metric to Optuna each epoch.

It does not raise `optuna.TrialPruned` inside fit: it stops training
(`model.stop_training`) and lets the run finish like any early-stopped
run, so a pruned trial's run folder is complete (model.keras,
metrics.json, history.csv up to the epoch it was stopped); the objective
then tells Optuna the trial was pruned.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras


class OptunaReporter(keras.callbacks.Callback):
    """Report `metric` after every epoch; stop when Optuna says prune.

    Attributes:
        pruned_at: the epoch (1-based) after which the trial was pruned.
        missing: the metric names of the run, when `metric` is not one.
    """

    def __init__(self, trial: Any, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.pruned_at: Optional[int] = None
        self.missing: Optional[list[str]] = None

    def on_train_begin(self, logs: Any = None) -> None:
        # A second fit (a fine-tune phase) of a stopped trial stops too.
        if self.pruned_at or self.missing:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        if self.metric not in logs:
            self.missing = sorted(logs)
            self.model.stop_training = True
            return
        value = float(logs[self.metric])
        if not math.isfinite(value):
            return  # the trainer reports the divergence
        self.trial.report(value, epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
