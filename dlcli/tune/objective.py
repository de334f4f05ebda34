"""One trial: the config with the trial's parameters, trained as a run."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

from dlcli.errors import ConfigError, DataError, Interrupted, TrainingError
from dlcli.runs import run_number
from dlcli.tune import space as tspace
from dlcli.tune.study import ERROR_ATTR, RUN_ATTR, SURPLUS_ATTR, StudySpec, counted


class TrialFailed(Exception):
    """A trial that failed for a reason of its own; the study goes on."""


class Surplus(Exception):
    """A trial started after the planned count was reached elsewhere."""


def trial_folder(spec: StudySpec, number: int) -> Path:
    """The folder holding trial `number`'s run folder (`trial-007/1/`)."""
    return spec.study_dir / f"trial-{number:03d}"


class Objective:
    """Optuna's objective: draw parameters, train a run, return its metric.

    Args:
        cfg: the study's validated config (its `tune:` section included).
        spec: the study.
        progress: the trainer's progress mode for each trial.
    """

    def __init__(self, cfg: Any, spec: StudySpec, progress: str = "none") -> None:
        self.cfg = cfg
        self.spec = spec
        self.progress = progress
        base = cfg.to_dict()
        base.pop("tune", None)
        self.base = base

    def __call__(self, trial: Any) -> float:
        values = tspace.suggest(trial, self.cfg.tune.space)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self._check_surplus(trial)
        folder = trial_folder(self.spec, trial.number)
        try:
            result, reporter = self._train(trial, values, folder)
        except Interrupted:
            trial.set_user_attr("interrupted", True)
            raise Interrupted(
                f"tune interrupted in trial {trial.number}",
                hint="run the same dlcli tune command again to resume the study",
            ) from None
        except (ConfigError, DataError, TrainingError) as exc:
            trial.set_user_attr(ERROR_ATTR, " ".join(str(exc).split()))
            _record_run(trial, folder)
            raise TrialFailed(str(exc)) from None
        trial.set_user_attr(RUN_ATTR, str(result.run_dir))
        if reporter.missing is not None:
            shutil.rmtree(folder, ignore_errors=True)
            raise self._bad_metric(reporter.missing)
        value = _value_of(result, self.spec.metric)
        trial.set_user_attr("epochs", result.metrics["epochs_completed"])
        if reporter.pruned_at is not None:
            import optuna

            trial.set_user_attr("pruned_at", reporter.pruned_at)
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        return value

    def _train(self, trial: Any, values: dict[str, Any], folder: Path) -> tuple[Any, Any]:
        from dlcli.config import config_from_dict
        from dlcli.training import train
        from dlcli.tune.pruning import OptunaReporter

        cfg = config_from_dict(self.base, source=self.cfg.source_file, overrides=tspace.overrides(values))
        reporter = OptunaReporter(trial, self.spec.metric)
        result = train(
            cfg,
            output=folder.parent,
            name=folder.name,
            progress=self.progress,
            callbacks=[reporter],
        )
        return result, reporter

    def _check_surplus(self, trial: Any) -> None:
        """Refuse a trial that would pass the planned count: two workers
        that both saw one trial missing start one each."""
        from optuna.trial import TrialState

        earlier = [
            t for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number and (counted(t) or t.state == TrialState.RUNNING)
        ]
        if len(earlier) >= self.spec.trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus(f"trial {trial.number} is past the planned {self.spec.trials}")

    def _bad_metric(self, names: list[str]) -> ConfigError:
        from dlcli.config.suggest import did_you_mean

        near = did_you_mean(self.spec.metric, names)
        where = "tune.metric" if self.cfg.tune.metric else "train.monitor" if self.cfg.train.monitor else "tune.metric"
        return self.cfg.error(
            where,
            f"{self.spec.metric!r} is not a metric of this run",
            hint=(near + " " if near else "") + f"the metrics are {', '.join(names)}",
        )


def _value_of(result: Any, metric: str) -> float:
    """The metric at the epoch whose weights are in model.keras."""
    history = result.history
    epochs = [int(e) for e in history.get("epoch", [])]
    at = result.metrics.get("model_epoch") or (epochs[-1] if epochs else None)
    column = history[metric]
    return float(column[epochs.index(at)] if at in epochs else column[-1])


def _record_run(trial: Any, folder: Path) -> None:
    runs = sorted((p for p in folder.glob("*") if run_number(p.name) is not None), key=lambda p: int(p.name))
    if runs:
        trial.set_user_attr(RUN_ATTR, str(runs[-1]))
