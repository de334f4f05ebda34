"""Run folders as users leave them: a stray folder in a run name's folder,
a read-only run folder, a bare .keras file predicted on a CSV."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_bad_inputs import IRIS, trained_run  # noqa: F401 - trained_run is a fixture


def _read_only(run: Path, monkeypatch) -> None:
    """Make `run` unwritable: permissions, and (as root, whom they do not
    stop) the probe every writer asks."""
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    if os.geteuid() == 0:
        probe = lambda folder: "Read-only file system" if run in Path(folder).resolve().parents or Path(folder).resolve() == run else None  # noqa: E731
        monkeypatch.setattr("dlcli.evaluation.unwritable", probe)
        monkeypatch.setattr("dlcli.export.core.unwritable", probe)


def test_read_only_run_folder(runner, app, tmp_path, monkeypatch, trained_run):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    run = run.resolve()
    before = sorted(p.name for p in run.rglob("*"))
    _read_only(run, monkeypatch)
    try:
        res = runner.invoke(app, ["evaluate", str(run), "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["metrics"]["accuracy"] > 0 and "not writable" in out["not_saved"]
        res = runner.invoke(app, ["export", str(run), "--format", "saved_model"])
        assert res.exit_code == 2, res.output
        assert [ln for ln in res.stderr.splitlines() if ln.startswith("error:")] == [res.stderr.strip()]
        assert "cannot write the export" in res.stderr and "Traceback" not in res.output
        elsewhere = tmp_path / "elsewhere"  # predict from another directory, on the read-only folder
        elsewhere.mkdir()
        names = ",".join(f"{p} {d} (cm)" for p in ("sepal", "petal") for d in ("length", "width"))
        (elsewhere / "flower.csv").write_text(f"{names}\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
        monkeypatch.chdir(elsewhere)
        res = runner.invoke(app, ["predict", str(run), "flower.csv", "--json"])
        assert res.exit_code == 0, res.output
        rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
        assert [r["class"] for r in rows] == ["setosa", "virginica"]
        assert sorted(p.name for p in run.rglob("*")) == before
    finally:
        for p in [run, *run.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_stray_folder_in_a_run_name_folder(runner, app, tmp_path, monkeypatch, trained_run):  # noqa: F811
    """`²` is a digit to str.isdigit but not a run number."""
    monkeypatch.chdir(tmp_path)
    name_dir = tmp_path / "runs" / "mlp_iris"
    shutil.copytree(trained_run, name_dir / "1")
    (name_dir / "²").mkdir()
    (name_dir / "²" / "model.keras").write_bytes(b"stray")
    res = runner.invoke(app, ["evaluate", str(name_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["run"].endswith("mlp_iris/1")
    res = runner.invoke(app, ["train", str(IRIS), "--epochs", "1", "--quiet", "--output", "runs"])
    assert res.exit_code == 0, res.output
    assert (name_dir / "2" / "model.keras").is_file()


def test_bare_keras_file_predicts_a_csv(runner, app, tmp_path, monkeypatch):
    import keras
    import numpy as np

    i = keras.Input((4,))
    model = keras.Model(i, keras.layers.Dense(3, activation="softmax")(i))
    model.save(tmp_path / "vec.keras")
    (tmp_path / "x.csv").write_text("a,b,c,d\n1,2,3,4\n5,6,7,8\n", encoding="utf-8")
    res = runner.invoke(app, ["predict", str(tmp_path / "vec.keras"), str(tmp_path / "x.csv"), "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines()]
    want = model.predict(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32), verbose=0)
    assert [r["class"] for r in rows] == [str(int(k)) for k in want.argmax(1)]
    assert [r["probability"] for r in rows] == pytest.approx(want.max(1).tolist(), rel=1e-5)


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_exits_1(tmp_path):
    """A full disk while HDF5 writes a checkpoint: dlcli's one error line and
    exit 1 (HDF5 used to crash the process at exit: exit 139). Needs a
    small tmpfs, so it runs where mounting one is allowed (root)."""
    import subprocess
    import sys

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cfg = Path(__file__).resolve().parent.parent / "configs" / "cnn_digits.yaml"
        res = subprocess.run([sys.executable, "-m", "dlcli", "train", str(cfg), "--epochs", "2", "--quiet", "--output", "runs"],
                             cwd=small, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 1, res.stderr[-2000:]
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "cannot write" in errors[0] and "No space left" in errors[0]
        assert "Traceback" not in res.stderr and "h5py" not in res.stderr
        run = small / "runs" / "cnn_digits" / "1"
        assert list((run / "checkpoints").iterdir()) == [] and not (run / "model.keras").exists()
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
