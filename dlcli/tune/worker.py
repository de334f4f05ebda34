"""Workers: each runs trials of one study until it holds the planned count.

`dlcli tune --workers N` starts N worker processes on this machine; a
worker on another machine is `dlcli tune` with the same `--storage`. Every
worker loops: fail trials whose heartbeat stopped (their retry is queued),
count, run one trial through `study.optimize` (heartbeat, retries,
pruning), until the study holds `trials` counted trials. A worker that
finds the remaining trials running elsewhere waits for them, so a dead
worker's trial is still retried.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from dlcli.errors import DlcliError
from dlcli.tune.study import StudySpec, counted, load_study, worker_seed


@dataclass
class WorkerJob:
    """What a worker process needs (picklable)."""

    config: str
    overrides: list[str]
    spec: StudySpec
    worker: int
    joined: int
    started: float


class WorkerFailed(DlcliError):
    """A worker process stopped with a dlcli error (its exit code kept)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_worker(job: WorkerJob, say: Optional[Callable[[str], None]] = None) -> int:
    """Run trials until the study is done or the timeout passes.

    Returns:
        The number of trials this worker ran.
    """
    import optuna
    from optuna.trial import TrialState

    from dlcli.config import load_config
    from dlcli.tune.objective import Objective, Surplus, TrialFailed

    # Keras warns that each new trial's model traces its functions anew:
    # true, and expected of a search.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    cfg = load_config(job.config, job.overrides)
    spec = job.spec
    study = load_study(spec, cfg.tune.space, seed=worker_seed(spec, job.worker, job.joined))
    objective = Objective(cfg, spec)
    tag = f"[worker {job.worker}] " if job.worker or say is None else ""
    done_by_me = 0

    def line(study: Any, trial: Any) -> None:
        write_trial_file(spec, trial)
        text = tag + describe(trial, spec.metric)
        (say or _stderr)(text)

    while True:
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(counted(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done >= spec.trials:
            break
        if spec.timeout is not None and time.time() - job.started > spec.timeout:
            break
        if done + running >= spec.trials:
            time.sleep(min(2.0, spec.heartbeat))  # the rest run elsewhere
            continue
        study.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus), callbacks=[line], gc_after_trial=False)
        done_by_me += 1
    return done_by_me


def describe(trial: Any, metric: str) -> str:
    """One line about a finished trial."""
    from optuna.trial import TrialState

    secs = trial.duration.total_seconds() if trial.duration else 0.0
    if trial.user_attrs.get("surplus"):
        return f"trial {trial.number} not run: the study already has its trials"
    if trial.state == TrialState.COMPLETE:
        what = f"{metric} {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        what = f"pruned after epoch {trial.user_attrs.get('pruned_at', '?')}"
    else:
        what = "failed: " + str(trial.user_attrs.get("error", "stopped"))
    return f"trial {trial.number}: {what} ({secs:.1f}s)"


def write_trial_file(spec: StudySpec, trial: Any) -> None:
    """trial.json in the trial's run folder: which study and trial it is,
    how it ended (`dlcli runs` shows a pruned trial as pruned)."""
    from dlcli.runs import atomic_write_json
    from dlcli.tune.results import state_name
    from dlcli.tune.study import RUN_ATTR, TRIAL_FILE

    run_dir = trial.user_attrs.get(RUN_ATTR)
    if run_dir and Path(run_dir).is_dir():
        atomic_write_json(Path(run_dir) / TRIAL_FILE, {
            "study": spec.name,
            "number": trial.number,
            "state": state_name(trial),
            "value": trial.value,
            "metric": spec.metric,
            "params": dict(trial.params),
        })


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def worker_process(job: WorkerJob, errors: Any) -> None:
    """Entry point of a worker process: exit code 0, or the error's."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run_worker(job)
    except DlcliError as exc:
        errors.put((exc.exit_code, str(exc)))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(job: WorkerJob, n: int, say: Callable[[str], None]) -> None:
    """Run `n` worker processes on the study and wait for them.

    Raises:
        WorkerFailed: a worker stopped with a dlcli error (the first one).
        Interrupted: Ctrl-C.
    """
    import dataclasses
    import multiprocessing as mp

    from dlcli.errors import Interrupted

    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=worker_process, args=(dataclasses.replace(job, worker=i), errors)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join()
        raise Interrupted("tune interrupted", hint="run the same dlcli tune command again to resume the study") from None
    for i, p in enumerate(procs):
        if p.exitcode and p.exitcode < 0:
            say(f"worker {i} was killed (signal {-p.exitcode}); its trial is retried")
    if not errors.empty():
        code, message = errors.get()
        raise WorkerFailed(message, code)
    if any(p.exitcode == 130 for p in procs):
        raise Interrupted("tune interrupted", hint="run the same dlcli tune command again to resume the study")
