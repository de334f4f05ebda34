"""Hyperparameter search on Optuna: `dlcli tune CONFIG`.

    >>> from dlcli.tune import tune
    >>> result = tune("configs/tune_digits.yaml", ["tune.trials=4"])
    >>> result.summary["best"]["value"]

A study is a config with a `tune:` section. Every trial is a normal run
(same training engine, TensorFlow imported once per worker process) whose
run folder lies in the study folder `<output>/<name>/tune/trial-<NNN>/1/`;
see `dlcli.tune.study` for the folder and storage.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

__all__ = ["TuneResult", "tune"]

INSTALL_HINT = "pip install 'dlcli[tune]'"


@dataclass
class TuneResult:
    """A study's state after `tune`: `summary` is what --json prints."""

    study_dir: Path
    summary: dict[str, Any]


def require_optuna() -> None:
    """Raise a clean error (exit 2) when Optuna is not installed."""
    from dlcli.errors import ConfigError

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("dlcli tune needs Optuna, which is not installed", hint=INSTALL_HINT) from None


def tune(
    config: Union[str, Path],
    overrides: Sequence[str] = (),
    *,
    output: Union[str, Path] = "runs",
    name: Optional[str] = None,
    storage: Optional[str] = None,
    workers: int = 1,
    trials: Optional[int] = None,
    heartbeat: int = 10,
    say: Callable[[str], None] = lambda text: None,
) -> TuneResult:
    """Run (or resume, or join) the study of a config's `tune:` section.

    Args:
        config: the YAML config.
        overrides: `--set` strings, applied to the config (and its tune:).
        output: the root of run folders; the study folder is
            `<output>/<name>/tune/`.
        name: the study's name (default: the config's name).
        storage: an Optuna database URL (default: SQLite in the study folder).
        workers: worker processes to start here (1: this process).
        trials: the study's planned trial count (default: tune.trials).
        heartbeat: seconds between a running trial's heartbeats; a trial
            silent for three of them is failed and retried.
        say: where one-line notes (a line per finished trial) go.

    Returns:
        TuneResult with the summary of every trial and the best one.

    Raises:
        ConfigError: a bad config, tune: section or storage (exit 2).
        TrainingError: the workers stopped before the study was done.
        Interrupted: Ctrl-C (exit 130); running it again resumes.
    """
    from dlcli.config import load_config
    from dlcli.tune.study import load_study, study_spec
    from dlcli.tune.worker import WorkerJob, run_worker, run_workers

    require_optuna()
    cfg = load_config(config, overrides)
    spec = study_spec(cfg, Path(output), name, storage, trials, heartbeat)
    fresh = not spec.study_dir.exists()
    try:
        study = load_study(spec, cfg.tune.space)
        joined = len(study.get_trials(deepcopy=False))
        job = WorkerJob(str(config), list(overrides), spec, 0, joined, time.time())
        if workers > 1:
            run_workers(job, workers, say)
        else:
            run_worker(job, say)
    except Exception as exc:
        if fresh and getattr(exc, "exit_code", None) == 2:
            # A mistake found at the first trial (a metric the run does not
            # have) leaves nothing behind, like any config error.
            shutil.rmtree(spec.study_dir, ignore_errors=True)
        raise
    return _summarize(spec, study, say)


def _summarize(spec: Any, study: Any, say: Callable[[str], None]) -> TuneResult:
    from dlcli.errors import TrainingError
    from dlcli.tune.results import best_trial, trial_rows, write_best, write_plots, write_trials
    from dlcli.tune.study import counted

    rows = trial_rows(study)
    best = best_trial(study)
    best_path = write_best(spec, best) if best is not None else None
    plots = write_plots(spec, study)
    done = sum(counted(t) for t in study.get_trials(deepcopy=False))
    summary = {
        "study": spec.name,
        "study_dir": str(spec.study_dir),
        "storage": spec.storage_url,
        "metric": spec.metric,
        "direction": spec.direction,
        "trials_planned": spec.trials,
        "trials_done": done,
        "best": None if best is None else {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run_dir": best.user_attrs.get("run_dir"),
            "config": str(best_path) if best_path else None,
        },
        "plots": plots,
        "trials": rows,
    }
    write_trials(spec, summary)
    if done < spec.trials and spec.timeout is None:
        raise TrainingError(
            f"the study has {done} of its {spec.trials} trials: its workers stopped early",
            hint="run the same dlcli tune command again to resume it",
        )
    return TuneResult(study_dir=spec.study_dir, summary=summary)
