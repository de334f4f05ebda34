"""`dlcli train --resume`: continuing runs in place, in process.

A small model with everything resuming has to bring back: dropout (Keras
SeedGenerator state), ReduceLROnPlateau's patience and lowered learning
rate, Adam's moments, the shuffled data order of each epoch. The killed
subprocess test is in test_resume_sigkill.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Each test trains two or three small runs (10-40 s on 2 busy cores).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "configs" / "mlp_iris.yaml"
# Dropout and a plateau callback whose state matters from epoch to epoch.
STATEFUL = [
    "model.layers=[Dense: {units: 16, activation: relu}, Dropout: {rate: 0.3}, Dense: {units: 3, activation: softmax}]",
    "train.callbacks=[ReduceLROnPlateau: {monitor: loss, factor: 0.5, patience: 3, min_delta: 10}]",
]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in dlcli catches it."""


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_history(a: dict, b: dict, keys=("loss", "val_loss", "accuracy", "learning_rate")) -> None:
    assert a["epoch"] == b["epoch"]
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7, err_msg=k)


def _train(**kw):
    from dlcli import api

    return api.train(progress="none", **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 4-epoch run of the stateful model."""
    return _train(config=IRIS, overrides=STATEFUL, epochs=4, output=tmp_path_factory.mktemp("ref"))


def test_stateful_run_lowers_its_learning_rate(reference):
    # Otherwise the callback-state part of the comparisons proves nothing.
    lrs = reference.history["learning_rate"]
    assert lrs[-1] < lrs[0]


def test_run_killed_between_checkpoint_files_resumes_like_uninterrupted(reference, tmp_path, monkeypatch):
    from dlcli.training import checkpoint as ckpt

    real_write_state = ckpt.write_state

    def write_state(run_dir, state):
        # Epoch 3's weights are on disk but state.json still names epoch 2.
        if state.epoch == 3:
            raise Killed
        real_write_state(run_dir, state)

    monkeypatch.setattr(ckpt, "write_state", write_state)
    with pytest.raises(Killed):
        _train(config=IRIS, overrides=STATEFUL, epochs=4, output=tmp_path)
    monkeypatch.setattr(ckpt, "write_state", real_write_state)
    run_dir = tmp_path / "mlp_iris" / "1"
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epoch"] == 2
    # What SIGKILL leaves besides: temporary files of interrupted writes.
    (run_dir / ".history.k1ll3d.csv").write_text("epoch\n1\n2\n3\n")
    (run_dir / "checkpoints" / ".epoch-0004.weights.abcd.weights.h5").write_bytes(b"\x89HDF")

    resumed = _train(resume=run_dir)

    assert resumed.run_dir == run_dir and resumed.resumed
    _same_history(resumed.history, reference.history)
    assert resumed.metrics["test"] == pytest.approx(reference.metrics["test"], rel=1e-5)
    assert [int(r["epoch"]) for r in _history(run_dir)] == [1, 2, 3, 4]
    leftovers = [p.name for p in run_dir.rglob(".*")]
    assert leftovers == []
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("epoch-")) == [
        "epoch-0004.weights.h5"
    ]


def test_run_killed_in_its_first_epoch_starts_over_in_place(reference, tmp_path, monkeypatch):
    from dlcli.training import checkpoint as ckpt

    def save(*a, **k):
        raise Killed

    monkeypatch.setattr(ckpt, "save", save)
    with pytest.raises(Killed):
        _train(config=IRIS, overrides=STATEFUL, epochs=4, output=tmp_path)
    monkeypatch.undo()
    run_dir = tmp_path / "mlp_iris" / "1"
    assert not (run_dir / "checkpoints" / "state.json").exists()

    resumed = _train(resume=run_dir)
    _same_history(resumed.history, reference.history)
    assert not (tmp_path / "mlp_iris" / "2").exists()


def test_finished_run_extended_with_more_epochs_matches_a_longer_run(tmp_path):
    # No callbacks: extending starts them afresh, so only a run without
    # them can match bit for bit.
    longer = _train(config=IRIS, epochs=4, output=tmp_path / "a")
    short = _train(config=IRIS, epochs=2, output=tmp_path / "b")
    first_model = (short.run_dir / "model.keras").stat().st_mtime_ns

    extended = _train(resume=short.run_dir, epochs=4)

    _same_history(extended.history, longer.history)
    assert [int(r["epoch"]) for r in _history(short.run_dir)] == [1, 2, 3, 4]
    assert extended.metrics["epochs_completed"] == 4
    assert (short.run_dir / "model.keras").stat().st_mtime_ns != first_model
    import yaml

    assert yaml.safe_load((short.run_dir / "config.yaml").read_text())["train"]["epochs"] == 4
    # It is finished again: resuming without more epochs is refused.
    from dlcli.errors import RunError

    with pytest.raises(RunError, match="already finished"):
        _train(resume=short.run_dir)


def test_failed_resume_leaves_the_run_as_it_was(tmp_path):
    from dlcli.errors import DlcliError

    run = _train(config=IRIS, epochs=1, output=tmp_path)
    state = json.loads((run.run_dir / "checkpoints" / "state.json").read_text())
    state["finished"] = False
    (run.run_dir / "checkpoints" / "state.json").write_text(json.dumps(state))
    before = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}

    with pytest.raises(DlcliError):
        _train(resume=run.run_dir, epochs=3, overrides=["compile.metrics=[accuracy, AUC]",
                                                        "compile.loss=sparse_categorical_crossentropy"])

    after = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_resumed_run_copies_nothing_and_keeps_its_folder(tmp_path):
    run = _train(config=IRIS, epochs=1, output=tmp_path)
    _train(resume=run.run_dir, epochs=2)
    assert sorted(p.name for p in (tmp_path / "mlp_iris").iterdir()) == ["1"]
    names = sorted(p.name for p in (run.run_dir / "checkpoints").iterdir())
    assert names[-1] == "state.json" and "epoch-0002.weights.h5" in names
    assert not any(n.startswith("epoch-0001") for n in names)


def test_resume_cli_prints_and_exits_zero(runner, app, tmp_path):
    run = _train(config=IRIS, epochs=1, output=tmp_path)
    result = runner.invoke(app, ["train", "--resume", str(run.run_dir), "--epochs", "2", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["epochs_completed"] == 2 and out["run_dir"] == str(run.run_dir)
    shutil.rmtree(tmp_path)
