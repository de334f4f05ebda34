"""What a study shows: its trials as rows, best.yaml, trials.json, plots."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

from dlcli.runs import CONFIG_FILE, atomic_path, atomic_write_json, atomic_write_text
from dlcli.tune.study import BEST_FILE, ERROR_ATTR, RUN_ATTR, SURPLUS_ATTR, TRIALS_FILE, StudySpec

PLOTS = {"history": "plots/history.png", "importance": "plots/importance.png"}


def state_name(trial: Any) -> str:
    """complete | pruned | failed | lost (its worker died or was stopped)
    | running | waiting (a retry queued)."""
    name = trial.state.name.lower()
    if name == "fail":
        return "failed" if ERROR_ATTR in trial.user_attrs else "lost"
    return name


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One plain row per trial (surplus trials, never run, left out)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS_ATTR):
            continue
        rows.append({
            "number": t.number,
            "state": state_name(t),
            "value": t.value,
            "params": dict(t.params),
            "duration_s": round(t.duration.total_seconds(), 2) if t.duration else None,
            "epochs": t.user_attrs.get("epochs"),
            "pruned_at": t.user_attrs.get("pruned_at"),
            "retry_of": t.system_attrs.get("failed_trial"),
            "run_dir": t.user_attrs.get(RUN_ATTR),
            "error": t.user_attrs.get(ERROR_ATTR),
        })
    return rows


def best_trial(study: Any) -> Optional[Any]:
    """The best complete trial, or None when none completed."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    return study.best_trial


def write_best(spec: StudySpec, trial: Any) -> Optional[Path]:
    """Copy the best trial's resolved config to `best.yaml` in the study
    folder, with a header saying where it came from."""
    run_dir = trial.user_attrs.get(RUN_ATTR)
    source = Path(run_dir) / CONFIG_FILE if run_dir else None
    if source is None or not source.is_file():
        return None
    header = (
        f"# Best trial of study '{spec.name}': trial {trial.number}, {spec.metric} {trial.value:.6g}\n"
        f"# (run folder {run_dir}). `dlcli train` on this file repeats it.\n"
    )
    path = spec.study_dir / BEST_FILE
    atomic_write_text(path, header + source.read_text(encoding="utf-8"))
    return path


def write_plots(spec: StudySpec, study: Any) -> dict[str, str]:
    """Optimization history and parameter importances (Optuna's matplotlib
    plots) in the study folder's plots/; a plot with too few trials for
    it is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written: dict[str, str] = {}
    makers = {"history": ovm.plot_optimization_history, "importance": ovm.plot_param_importances}
    for key, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make(study, target_name=spec.metric)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances of fewer than two complete trials
        fig = ax.figure
        fig.set_size_inches(7.5, 4.5)
        fig.tight_layout()
        path = spec.study_dir / PLOTS[key]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written[key] = str(path)
    return written


def write_trials(spec: StudySpec, summary: dict[str, Any]) -> None:
    """The study's summary as trials.json in the study folder."""
    atomic_write_json(spec.study_dir / TRIALS_FILE, summary)
