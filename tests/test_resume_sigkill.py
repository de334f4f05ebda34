"""A real `dlcli train` killed with SIGKILL mid-epoch resumes and ends
where a run that was never stopped ends."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Dropout, ReduceLROnPlateau, Adam, a shuffled pipeline and random
# augmentation (its seed states are checkpointed): all of it must come back
# for the resumed run to match.
CONFIG = ROOT / "configs" / "cnn_digits.yaml"
EPOCHS = 4


def dlcli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, epoch: int, timeout: float = 300) -> dict:
    """Poll state.json until it records `epoch` completed epochs."""
    state_file = run_dir / "checkpoints" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None  # not there yet (written atomically: never half)
        if state and state["epoch"] >= epoch:
            return state
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


def history(run_dir: Path) -> dict[str, list[float]]:
    with open(run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    common = [str(CONFIG), "--epochs", str(EPOCHS), "--json"]
    reference = dlcli("train", *common, "--output", str(tmp_path / "ref"))
    victim = dlcli("train", *common, "--output", str(tmp_path / "killed"))
    run_dir = tmp_path / "killed" / "cnn_digits" / "1"

    state = wait_for_checkpoint(run_dir, victim, 1)
    # Into the next epoch, but not its end: an epoch here takes seconds.
    time.sleep(0.4)
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert 1 <= state["epoch"] < EPOCHS and not state["finished"]
    assert not (run_dir / "model.keras").exists()

    resumed = dlcli("train", "--resume", str(run_dir), "--json")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    ref_out, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err

    got, want = json.loads(out), json.loads(ref_out)
    assert got["run_dir"] == str(run_dir)
    assert got["epochs_completed"] == want["epochs_completed"] == EPOCHS
    for k, v in want["test"].items():
        assert got["test"][k] == pytest.approx(v, rel=1e-4, abs=1e-4), k
    h_got, h_want = history(run_dir), history(Path(want["run_dir"]))
    assert h_got["epoch"] == [1.0, 2.0, 3.0, 4.0]  # each epoch exactly once
    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        np.testing.assert_allclose(h_got[k], h_want[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # What the kill left half-written is gone; one checkpoint remains.
    assert [p.name for p in run_dir.rglob(".*")] == []
    assert len(list((run_dir / "checkpoints").glob("epoch-*.weights.h5"))) == 1
