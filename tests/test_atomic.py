"""Atomic files and a full disk: every run file appears complete or not at
all, and a failed write leaves the files before it intact."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
IRIS = str(ROOT / "configs" / "mlp_iris.yaml")


def _disk_full(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history.csv", newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def _error_line(result) -> str:
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def _no_temporaries(run_dir: Path) -> None:
    assert [str(p) for p in run_dir.rglob(".*")] == []


def test_every_run_file_is_renamed_into_place(tmp_path, monkeypatch):
    from dlcli import api

    renamed: set[Path] = set()
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        assert Path(src).parent == Path(dst).parent  # same folder: atomic
        renamed.add(Path(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    result = api.train(IRIS, epochs=2, output=tmp_path, progress="none")

    files = {p for p in result.run_dir.rglob("*") if p.is_file()}
    assert {p.name for p in files} >= {
        "config.yaml", "data_spec.json", "model.keras", "history.csv", "metrics.json", "history.png", "state.json"
    }
    # TensorBoard's event files are logs appended while training runs (a
    # killed run leaves a shorter log that TensorBoard still reads), not
    # results written once: everything else is renamed into place.
    results = {p for p in files if "tensorboard" not in p.relative_to(result.run_dir).parts}
    assert results <= renamed, sorted(str(p) for p in results - renamed)


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(runner, app, tmp_path, monkeypatch):
    import builtins

    import dlcli.hdf5

    class FullDisk:
        """The checkpoint's file: half of it reaches the disk, then ENOSPC."""

        def __init__(self, path, mode):
            self.fh = builtins.open(path, mode)
            self.path = path

        def __enter__(self):
            return self

        def write(self, data):
            self.fh.write(bytes(data)[: len(data) // 2])
            self.fh.flush()
            raise _disk_full(self.path)

        def __exit__(self, *exc):
            self.fh.close()

    def open_(path, mode="r", *a, **k):
        if "epoch-0002" in Path(path).name and "w" in mode:
            return FullDisk(path, mode)
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(dlcli.hdf5, "open", open_, raising=False)
    result = runner.invoke(app, ["train", IRIS, "--epochs", "3", "--output", str(tmp_path)])
    monkeypatch.undo()

    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert "No space left on device" in line and "--resume" in line
    run_dir = tmp_path / "mlp_iris" / "1"
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and (run_dir / "checkpoints" / state["weights_file"]).is_file()
    assert _epochs(run_dir) == [1]
    _no_temporaries(run_dir)

    from dlcli import api

    resumed = api.train(resume=run_dir, progress="none")
    assert resumed.metrics["epochs_completed"] == 3 and _epochs(run_dir) == [1, 2, 3]


def test_disk_full_writing_history_keeps_the_old_history(runner, app, tmp_path, monkeypatch):
    real = Path.write_text
    calls = {"n": 0}

    def write_text(self, text, *a, **k):
        if self.name.startswith(".history."):
            calls["n"] += 1
            if calls["n"] == 2:  # epoch 2's history
                real(self, text[: len(text) // 2], *a, **k)
                raise _disk_full(self)
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    result = runner.invoke(app, ["train", IRIS, "--epochs", "3", "--output", str(tmp_path)])
    monkeypatch.undo()

    assert result.exit_code == 1, result.output
    assert "No space left on device" in _error_line(result)
    run_dir = tmp_path / "mlp_iris" / "1"
    assert _epochs(run_dir) == [1]  # the complete old file, not half a new one
    _no_temporaries(run_dir)


@pytest.mark.slow
def test_disk_full_writing_the_final_model_leaves_a_resumable_run(runner, app, tmp_path, monkeypatch):
    import keras

    real = keras.Model.save

    def save(self, path, *a, **k):
        if Path(path).name.startswith(".model."):
            Path(path).write_bytes(b"PK\x03\x04 half")
            raise _disk_full(path)
        return real(self, path, *a, **k)

    monkeypatch.setattr(keras.Model, "save", save)
    result = runner.invoke(app, ["train", IRIS, "--epochs", "2", "--output", str(tmp_path)])
    monkeypatch.undo()

    assert result.exit_code == 1, result.output
    assert "No space left on device" in _error_line(result)
    run_dir = tmp_path / "mlp_iris" / "1"
    assert not (run_dir / "model.keras").exists()
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and not state["finished"]
    _no_temporaries(run_dir)

    # Resuming only finishes the run: no epoch is trained again.
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_completed"] == 2
    assert _epochs(run_dir) == [1, 2]
    assert (run_dir / "model.keras").is_file()


def test_run_folder_that_cannot_be_written_is_removed_again(runner, app, tmp_path, monkeypatch):
    import dlcli.runs as runs

    def atomic_write_text(path, text):
        raise _disk_full(path)

    monkeypatch.setattr(runs, "atomic_write_text", atomic_write_text)
    root = tmp_path / "new" / "runs"
    result = runner.invoke(app, ["train", IRIS, "--epochs", "1", "--output", str(root)])

    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "cannot write the run folder" in line and "No space left on device" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "proc"])
def test_output_that_cannot_hold_folders_fails_before_training(runner, app, tmp_path, where):
    if where == "file":
        (tmp_path / "plain").write_text("x")
        root = tmp_path / "plain" / "runs"
    else:
        root = Path("/proc/dlcli-test-runs")
    result = runner.invoke(app, ["train", IRIS, "--epochs", "1", "--output", str(root)])
    assert result.exit_code == 2, result.output
    assert "run folder" in _error_line(result)
    assert "epoch 1" not in result.stderr  # nothing was trained
    assert not root.exists()
