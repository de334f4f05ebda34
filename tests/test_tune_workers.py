"""Several workers on one study, and a worker killed mid-trial (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_tune_run import LR_SPACE, tiny_study

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def dlcli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def trials_of(study_dir: Path) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'study.db'}").get_trials()


def test_two_workers_finish_the_planned_trials_once_each(write_file, tmp_path):
    cfg = tiny_study(write_file, LR_SPACE, trials=4)
    proc = dlcli("tune", str(cfg), "-o", "runs", "--workers", "2", "--json", cwd=tmp_path)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    study = tmp_path / "runs" / "tiny" / "tune"
    trials = trials_of(study)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and summary["trials_done"] == 4
    # Every trial ran once, in one run folder, and both workers ran some.
    assert sorted(p.relative_to(study).as_posix() for p in study.glob("trial-*/*")) == [
        f"trial-{i:03d}/1" for i in range(4)
    ]
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    # The workers drew apart: no two trials share their parameters.
    assert len({t.params["compile.optimizer.config.learning_rate"] for t in trials}) == 4


def test_a_killed_worker_loses_only_its_trial_and_the_study_resumes(write_file, tmp_path):
    # Enough epochs that a trial is still running when the poll below sees
    # it, even on a busy machine where start-up is slow and epochs fast.
    cfg = tiny_study(write_file, LR_SPACE, trials=2, epochs=30)
    study = tmp_path / "runs" / "tiny" / "tune"
    proc = dlcli("tune", str(cfg), "-o", "runs", "--heartbeat", "1", cwd=tmp_path)
    deadline = time.time() + 240
    running = []
    while time.time() < deadline and not running and proc.poll() is None:
        time.sleep(0.1)
        if not (study / "study.db").is_file():
            continue
        try:
            trials = trials_of(study)
        except Exception:  # noqa: BLE001 - the study is still being created
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and (study / f"trial-{t.number:03d}").is_dir()]
    assert running, f"no running trial seen (exit {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = running[0]
    assert trials_of(study)[killed.number].state.name == "RUNNING"  # left behind, heartbeat stopped

    again = dlcli("tune", str(cfg), "-o", "runs", "--heartbeat", "1", "--json", cwd=tmp_path)
    out, err = again.communicate(timeout=400)
    assert again.returncode == 0, err
    rows = {r["number"]: r for r in json.loads(out)["trials"]}
    assert rows[killed.number]["state"] == "lost"
    retry = [r for r in rows.values() if r["retry_of"] == killed.number]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    assert retry[0]["params"] == killed.params
    assert sum(r["state"] == "complete" for r in rows.values()) == 2
    # The killed trial's folder stays as it was; its retry has its own.
    assert (study / f"trial-{killed.number:03d}" / "1").is_dir()
    assert Path(retry[0]["run_dir"]).parent.name == f"trial-{retry[0]['number']:03d}"
