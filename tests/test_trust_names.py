"""Run names never leave --output, any config file name trains, and a run
folder being trained is locked against a second --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "configs" / "mlp_iris.yaml"
QUICK = ["--epochs", "1", "--quiet"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_error(result) -> str:
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    return errors[0]


@pytest.mark.parametrize(
    "name, why",
    [
        ("../escape", "path"),
        ("..", "starts with '.'"),
        ("a/b", "path"),
        ("/tmp/dlcli-abs", "path"),
        (".hidden", "starts with '.'"),
        ("x" * 101, "101 characters"),
        ("tab\there", "control"),
    ],
    ids=["dotdot-slash", "dotdot", "slash", "absolute", "leading-dot", "too-long", "control-char"],
)
def test_bad_run_name_refused(name, why, runner, app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(IRIS), *QUICK, "--output", "out", "--name", name])
    assert result.exit_code == 2, result.output
    line = _one_error(result)
    assert "--name" in line and repr(name) in line and why in line, line
    assert _tree(tmp_path) == [] and result.stdout == ""


def test_bad_name_in_config_names_file_and_line(runner, app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"extends: {IRIS}\nname: ../../outside\n", encoding="utf-8")
    result = runner.invoke(app, ["train", str(cfg), *QUICK, "--output", "out"])
    assert result.exit_code == 2, result.output
    line = _one_error(result)
    assert "c.yaml:2: name:" in line and "'../../outside'" in line, line
    assert _tree(tmp_path) == ["c.yaml"]


@pytest.mark.slow
def test_any_config_file_name_trains(runner, app, tmp_path, monkeypatch):
    """File stems with spaces, a leading underscore, + and non-ASCII are run
    names; the Keras model gets a name TensorFlow takes."""
    monkeypatch.chdir(tmp_path)
    text = IRIS.read_text(encoding="utf-8").replace("name: mlp_iris\n", "")
    for stem, model_name in (("my iris", "my_iris"), ("_base", "m_base"),
                             ("iris-v2+extra", "iris-v2_extra"), ("train_ü", "train_u")):
        (tmp_path / f"{stem}.yaml").write_text(text, encoding="utf-8")
        result = runner.invoke(app, ["train", f"{stem}.yaml", *QUICK, "--output", "out", "--json"])
        assert result.exit_code == 0, result.output
        run_dir = Path(json.loads(result.stdout)["run_dir"])
        assert run_dir == (tmp_path / "out" / stem / "1").resolve() or run_dir == Path("out") / stem / "1"
        with __import__("zipfile").ZipFile(tmp_path / "out" / stem / "1" / "model.keras") as zf:
            assert json.loads(zf.read("config.json"))["config"]["name"] == model_name


_HOLD = """
import sys, time
from pathlib import Path
from dlcli.runs import run_locks
with run_locks(sys.argv[1]):
    Path(sys.argv[2]).write_text("locked")
    time.sleep(60)
"""


def test_second_resume_of_a_locked_folder_exits_2(runner, app, tmp_path, monkeypatch):
    """A folder another process trains in (holds its lock) cannot be
    resumed a second time: exit 2, the folder untouched."""
    from dlcli import api

    run = api.train(str(IRIS), epochs=1, output=tmp_path / "runs", progress="none").run_dir
    state_file = run / "checkpoints" / "state.json"
    state = json.loads(state_file.read_text())
    state["finished"] = False
    state_file.write_text(json.dumps(state))
    flag = tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run), str(flag)], env=env)
    try:
        deadline = time.time() + 30
        while not flag.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert flag.exists()
        before = {p: p.stat().st_mtime for p in run.rglob("*")}
        result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
        assert result.exit_code == 2, result.output
        assert "being trained by another process" in _one_error(result)
        assert {p: p.stat().st_mtime for p in run.rglob("*")} == before
    finally:
        holder.kill()
        holder.wait()
    # Once the other process is gone, the folder resumes.
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
