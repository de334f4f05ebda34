"""--resume reports data that changed since the run started, and records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _rows(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.normal(size=2)
        out.append(f"{a:.3f},{b:.3f},{'yes' if a + b > 0 else 'no'}")
    return "\n".join(out) + "\n"


def test_changed_data_is_reported_and_recorded(runner, app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("a,b,label\n" + _rows(40, 0), encoding="utf-8")
    (tmp_path / "t.yaml").write_text(
        "name: t\ndata: {source: csv, path: t.csv, target: label, batch_size: 8}\n"
        "model:\n  layers:\n    - Dense: {units: 4, activation: relu}\n    - Dense: {units: 2, activation: softmax}\n",
        encoding="utf-8",
    )
    res = runner.invoke(app, ["train", "t.yaml", "--epochs", "1", "--quiet", "--output", "runs"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "t" / "1"
    before = json.loads((run / "data_spec.json").read_text())["fingerprint"]
    assert set(before) == {"config.yaml", "data.path"}

    with open(tmp_path / "t.csv", "a", encoding="utf-8") as fh:
        fh.write(_rows(8, 1))
    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "t.csv (data.path) changed since the run started" in res.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert any("changed since the run started" in n for n in metrics["data"]["notes"])
    after = json.loads((run / "data_spec.json").read_text())["fingerprint"]
    assert after["data.path"] != before["data.path"]  # the data it now trained on
