"""`dlcli tune` end to end on tiny digits studies (real training, 1-2 epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CNN = REPO / "configs" / "cnn_digits.yaml"

pytestmark = pytest.mark.slow


def tiny_study(write_file, space: str, trials: int = 3, epochs: int = 1, extra: str = "") -> Path:
    """cnn_digits on 200 samples, no augmentation, a small search space."""
    text = f"""\
extends: {CNN}
name: tiny
data: {{limit: 200, augment: []}}
train: {{epochs: {epochs}, callbacks: []}}
{extra}tune:
  metric: val_accuracy
  trials: {trials}
  space:
{space}"""
    return write_file("tiny.yaml", text)


LR_SPACE = "    compile.optimizer.config.learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"


def test_study_writes_trials_best_yaml_plots_and_resumes(runner, app, write_file, tmp_path):
    cfg = tiny_study(write_file, LR_SPACE + "    model.layers.6.Dense.units: {type: int, low: 16, high: 64, step: 16}\n")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["tune", str(cfg), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    study = out / "tiny" / "tune"
    assert summary["study_dir"] == str(study) and summary["trials_done"] == 3
    assert [t["state"] for t in summary["trials"]] == ["complete"] * 3
    for t in summary["trials"]:
        run = Path(t["run_dir"])
        assert run == study / f"trial-{t['number']:03d}" / "1"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["final"]["val_accuracy"] == pytest.approx(t["value"])
        assert "tune" not in yaml.safe_load((run / "config.yaml").read_text())
    assert (study / "study.db").is_file() and (study / "trials.json").is_file()
    for plot in ("history", "importance"):
        assert Path(summary["plots"][plot]).stat().st_size > 5000
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    assert best["config"] == str(study / "best.yaml")

    # dlcli train best.yaml repeats the best trial: same seed, same metric.
    again = runner.invoke(app, ["train", best["config"], "-o", str(tmp_path / "again"), "--json", "-q"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["final"]["val_accuracy"] == pytest.approx(best["value"], abs=1e-6)

    # The same command resumes: nothing is missing, nothing runs; one more is one run.
    same = runner.invoke(app, ["tune", str(cfg), "-o", str(out), "--json"])
    assert same.exit_code == 0 and len(json.loads(same.stdout)["trials"]) == 3
    more = runner.invoke(app, ["tune", str(cfg), "-o", str(out), "--trials", "4"])
    assert more.exit_code == 0, more.output
    assert "trial 3:" in more.stderr and "study tiny: 4/4 trials" in more.stdout
    assert sorted(p.name for p in study.glob("trial-*")) == [f"trial-{i:03d}" for i in range(4)]

    # `dlcli runs STUDY_FOLDER` lists the trials' runs.
    listed = runner.invoke(app, ["runs", str(study), "--json"])
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)["runs"]
    assert [r["name"] for r in runs] == [f"trial-{i:03d}" for i in range(4)]
    assert {r["status"] for r in runs} == {"finished"}
    trial = json.loads((study / "trial-002" / "1" / "trial.json").read_text())
    assert trial["number"] == 2 and trial["state"] == "complete" and trial["study"] == "tiny"


def test_failed_trial_is_recorded_and_the_study_goes_on(runner, app, write_file, tmp_path):
    # A 16x16 pool on 8x8 images cannot be built: that trial fails, alone.
    space = "    model.layers.3.MaxPooling2D.pool_size: {type: categorical, choices: [2, 16]}\n"
    cfg = tiny_study(write_file, space, trials=4, extra="")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["tune", str(cfg), "-o", str(out), "--json", "--set", "tune.sampler=grid"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    by_pool = {t["params"]["model.layers.3.MaxPooling2D.pool_size"]: t for t in summary["trials"]}
    assert summary["trials_planned"] == 2  # the grid has two points
    assert by_pool[2]["state"] == "complete"
    assert by_pool[16]["state"] == "failed" and "pool" in by_pool[16]["error"].lower()
    assert "failed:" in result.stderr


def test_pruned_trials_are_marked_and_their_runs_complete(runner, app, write_file, tmp_path, monkeypatch):
    import optuna

    from dlcli.tune import study as tstudy
    from dlcli.tune import tune

    # A pruner that stops every trial after its first epoch.
    monkeypatch.setattr(tstudy, "make_pruner", lambda spec: optuna.pruners.ThresholdPruner(lower=2.0))
    cfg = tiny_study(write_file, LR_SPACE, trials=2, epochs=3)
    summary = tune(cfg, output=tmp_path / "runs").summary
    assert [(t["state"], t["pruned_at"]) for t in summary["trials"]] == [("pruned", 1), ("pruned", 1)]
    for t in summary["trials"]:
        metrics = json.loads((Path(t["run_dir"]) / "metrics.json").read_text())
        assert metrics["epochs_completed"] == 1 and metrics["stopped_early"]
    assert summary["best"] is None
    listed = runner.invoke(app, ["runs", summary["study_dir"], "--json"])
    assert [r["status"] for r in json.loads(listed.stdout)["runs"]] == ["pruned", "pruned"]


def test_a_metric_the_run_lacks_is_a_config_error_leaving_nothing(runner, app, write_file, tmp_path):
    cfg = tiny_study(write_file, LR_SPACE, trials=2)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["tune", str(cfg), "-o", str(out), "--set", "tune.metric=val_acc"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tune.metric: 'val_acc' is not a metric of this run (did you mean 'val_accuracy'?" in lines[0]
    assert not (out / "tiny" / "tune").exists()
