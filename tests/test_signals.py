"""Ctrl-C and SIGTERM: the current batch ends, the checkpoint of the last
completed epoch stays, the run says how to resume, and exits 130."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "cnn_digits.yaml"
EPOCHS = 6


def _start(output: Path) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(CONFIG), "--epochs", str(EPOCHS), "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_epoch(run_dir: Path, proc: subprocess.Popen, epoch: int, timeout: float = 300) -> None:
    state_file = run_dir / "checkpoints" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads(state_file.read_text())["epoch"] >= epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def _interrupt(tmp_path: Path, sig: signal.Signals) -> tuple[Path, str, float]:
    proc = _start(tmp_path / "runs")
    run_dir = tmp_path / "runs" / "cnn_digits" / "1"
    _wait_for_epoch(run_dir, proc, 1)
    time.sleep(0.3)  # into epoch 2
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - t0
    assert proc.returncode == 130, err
    return run_dir, err, stopped_after


def _check_resumable(run_dir: Path, err: str, signame: str) -> dict:
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert signame in errors[0] and f"dlcli train --resume {run_dir}" in errors[0]
    assert "Traceback" not in err
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert 1 <= state["epoch"] < EPOCHS and not state["finished"]
    assert (run_dir / "checkpoints" / state["weights_file"]).is_file()
    assert not (run_dir / "model.keras").exists()  # not a finished run
    assert [p.name for p in run_dir.rglob(".*")] == []  # no half-written file
    with open(run_dir / "history.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(1, state["epoch"] + 1))
    return state


@pytest.mark.slow
def test_sigint_keeps_a_resumable_checkpoint_and_exits_130(tmp_path):
    run_dir, err, stopped_after = _interrupt(tmp_path, signal.SIGINT)
    state = _check_resumable(run_dir, err, "SIGINT")
    # It stops after the batch in flight, not at the end of the epoch.
    assert stopped_after < 30

    from dlcli import api

    result = api.train(resume=run_dir, progress="none")
    assert result.metrics["epochs_completed"] == EPOCHS
    with open(run_dir / "history.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(1, EPOCHS + 1))
    assert state["epoch"] < EPOCHS


@pytest.mark.slow
def test_sigterm_keeps_a_resumable_checkpoint_and_exits_130(tmp_path):
    run_dir, err, _ = _interrupt(tmp_path, signal.SIGTERM)
    _check_resumable(run_dir, err, "SIGTERM")
