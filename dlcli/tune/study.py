"""The Optuna study behind `dlcli tune`: storage, sampler, pruner, counting.

A study lives in a study folder, `<output>/<name>/tune/`, which holds its
default storage (`study.db`, SQLite), `best.yaml`, `trials.json`, plots and
one run folder per trial (`trial-<NNN>/1/`). `--storage URL` puts the study
in any database Optuna supports instead, so that workers on many machines
share it; each still writes its trials' run folders under its own study
folder.

Every worker keeps a heartbeat on its running trial; a worker that dies
(killed, its machine lost) leaves a trial whose heartbeat stops, which the
next worker to look fails and re-queues with the same parameters
(`RetryHeartbeatStaleTrialCallback`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dlcli.errors import ConfigError
from dlcli.tune.space import grid_values

STUDY_DIR = "tune"
STUDY_DB = "study.db"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.json"
TRIAL_FILE = "trial.json"  # in each trial's run folder

# A trial that failed for a reason of its own (diverged, a parameter
# combination that does not build) carries this user attribute and counts
# towards `tune.trials`; one lost with its worker (killed, interrupted) or
# started past the planned count does not.
ERROR_ATTR = "error"
SURPLUS_ATTR = "surplus"
RUN_ATTR = "run_dir"

# Words in a metric's name that mean smaller is better.
_MINIMIZE_WORDS = (
    "loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge",
    "logcosh", "divergence", "poisson", "huber",
)


@dataclass
class StudySpec:
    """Where a study is and how it searches (all plain, picklable data)."""

    name: str
    study_dir: Path
    storage_url: str
    metric: str
    direction: str
    trials: int
    timeout: Optional[float]
    sampler: str
    pruner: str
    seed: int
    epochs: int
    heartbeat: int
    shared: bool


def study_spec(cfg: Any, output: Path, name: Optional[str], storage: Optional[str], trials: Optional[int], heartbeat: int) -> StudySpec:
    """The study of a config with a `tune:` section.

    Raises:
        ConfigError: the config has no `tune:` section.
    """
    t = cfg.tune
    if t is None:
        raise ConfigError(
            "this config has no tune: section",
            file=cfg.source_file,
            key="tune",
            hint="add tune: {space: {key.path: {type: float, low: ..., high: ...}}} (see README, Hyperparameter search)",
        )
    from dlcli.runs import check_run_name

    # A study's name, like a run's, never leaves --output.
    check_run_name(name or cfg.name or "tune", cfg=cfg, key="--name" if name else "name")
    name = name or cfg.name or "tune"
    study_dir = Path(output) / name / STUDY_DIR
    metric = t.metric or cfg.train.monitor or "val_loss"
    direction = t.direction or default_direction(metric)
    url = storage or f"sqlite:///{(study_dir / STUDY_DB).resolve()}"
    total = trials if trials is not None else t.trials
    if t.sampler == "grid":
        total = min(total, _grid_size(t.space))
    return StudySpec(
        name=name,
        study_dir=study_dir,
        storage_url=url,
        metric=metric,
        direction=direction,
        trials=total,
        timeout=t.timeout,
        sampler=t.sampler,
        pruner=t.pruner,
        seed=cfg.seed,
        epochs=cfg.train.epochs,
        heartbeat=heartbeat,
        shared=storage is not None,
    )


def default_direction(metric: str) -> str:
    """minimize for losses and errors, maximize for anything else."""
    low = metric.lower()
    return "minimize" if any(w in low for w in _MINIMIZE_WORDS) else "maximize"


def _grid_size(space: dict[str, Any]) -> int:
    size = 1
    for param in space.values():
        size *= len(grid_values(param))
    return size


def quiet_optuna() -> None:
    """dlcli prints its own line per trial: Optuna's log and its warnings
    about experimental features (heartbeats) would only repeat it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(spec: StudySpec) -> Any:
    """The study's RDB storage, with heartbeats and stale-trial retries."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    quiet_optuna()
    kwargs: dict[str, Any] = {}
    if spec.storage_url.startswith("sqlite"):
        spec.study_dir.mkdir(parents=True, exist_ok=True)
        # Several workers write one SQLite file: wait for its lock rather
        # than fail at once.
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        for attempt in range(5):
            try:
                return RDBStorage(
                    spec.storage_url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=spec.heartbeat,
                    grace_period=3 * spec.heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                )
            except OperationalError as exc:
                # Another worker created the new database's tables at the
                # same moment: they exist now, so opening again succeeds.
                if "already exists" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except (ImportError, ValueError, optuna.exceptions.StorageInternalError, SQLAlchemyError) as exc:
        raise ConfigError(
            f"cannot open the study storage {spec.storage_url}: {' '.join(str(exc).split())}",
            key="--storage",
            hint="give a database URL Optuna supports, e.g. sqlite:///study.db or postgresql://user@host/db",
        ) from None


def make_sampler(spec: StudySpec, space: dict[str, Any], seed: int) -> Any:
    """The configured Optuna sampler, seeded."""
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        grid = {key: grid_values(p) for key, p in space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if spec.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the cmaes sampler needs the cmaes package",
                key="tune.sampler",
                hint="pip install cmaes, or choose tpe | random | grid",
            ) from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    # constant_liar: workers running at once draw apart, not alike.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(spec: StudySpec) -> Any:
    """The configured Optuna pruner (steps are epochs)."""
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, spec.epochs))
    return optuna.pruners.NopPruner()


def load_study(spec: StudySpec, space: dict[str, Any], seed: Optional[int] = None) -> Any:
    """Create the study, or load it where it exists (resume, other workers)."""
    import optuna

    return optuna.create_study(
        storage=open_storage(spec),
        study_name=spec.name,
        direction=spec.direction,
        sampler=make_sampler(spec, space, spec.seed if seed is None else seed),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )


def counted(trial: Any) -> bool:
    """Whether a finished trial counts towards `tune.trials`."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs


def pending(trial: Any) -> bool:
    """Whether a trial is running or queued (a retry waiting for a worker)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def worker_seed(spec: StudySpec, worker: int, joined: int) -> int:
    """The sampler seed of one worker.

    The first worker of a new study in its own SQLite file uses `seed:`
    itself, so a one-worker study is repeatable; other local workers, and
    any worker that joins a study with trials (a resume) or a shared
    `--storage` (other machines), get seeds of their own, so that no two
    draw the same random start-up trials.
    """
    import socket

    import numpy as np

    if worker == 0 and joined == 0 and not spec.shared:
        return spec.seed
    entropy = [spec.seed, worker, joined]
    if joined or spec.shared:
        entropy += [os.getpid(), *socket.gethostname().encode()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
