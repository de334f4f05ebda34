"""What a person sees while a run trains: the progress line's layout, the
bar in a real pseudo-terminal at 160 and 60 columns, and the closing line
naming the epoch model.keras holds."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from dlcli.training.progress import progress_line

ROOT = Path(__file__).resolve().parent.parent
METRICS = "accuracy=0.9123 loss=0.3012 val_accuracy=0.8977 val_loss=0.3301"

CONFIG = """\
name: pty
data: {source: digits, batch_size: 16, limit: 640}
model:
  layers:
    - Flatten
    - Dense: {units: 16, activation: relu}
    - Dense: {units: 10, activation: softmax}
train: {epochs: 2}
"""


@pytest.mark.parametrize("width", [160, 80, 60, 40])
def test_line_keeps_epoch_bar_and_count_and_drops_metrics_first(width):
    text, bar, filled = progress_line(width, "epoch 3/10", 20, 41, 2.0, METRICS)
    line = text.replace("\0", "━" * bar)
    assert len(line) <= width - 1
    assert line.startswith("epoch 3/10 ━")
    assert "20/41" in line
    assert bar == max(8, min(40, width // 4)) and filled == int(bar * 20 / 41)
    if width >= 160:
        assert METRICS in line and "eta" in line
    if width == 60:
        # Whole metrics only, never a cut-off `accur…`.
        shown = line.split("eta ")[1].split(" ", 1)[1] if " " in line.split("eta ")[1] else ""
        assert all(re.fullmatch(r"[a-z_]+=[0-9.e+-]+", item) for item in shown.split())
        assert len(shown) < len(METRICS)


def test_count_never_passes_the_epoch():
    # Keras names the last batch of a steps_per_execution span, which may
    # lie past the epoch's end (batch 63 of 41).
    from dlcli.training.progress import Progress

    p = Progress("progress", 2, 41)
    p.set_params({"steps": 41, "epochs": 2})
    seen = []

    class Fake:
        tasks = []

        def add_task(self, *a, **k):
            return 0

        def update(self, task, completed=None, **k):
            seen.append(completed)

    p._progress = Fake()
    p.on_epoch_begin(0)
    for end in (31, 63):
        p.on_train_batch_end(end, {"loss": 1.0})
    assert seen == [32, 41]


def _pty_run(tmp_path: Path, columns: int) -> tuple[str, list[str]]:
    """Run `dlcli train` in a pseudo-terminal `columns` wide; return the raw
    output and the final screen as a terminal emulator shows it."""
    pexpect = pytest.importorskip("pexpect")
    pyte = pytest.importorskip("pyte")
    (tmp_path / "pty.yaml").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "TERM": "xterm-256color",
           "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "dlcli", "train", "pty.yaml", "-o", "runs"], cwd=str(tmp_path),
                          env=env, dimensions=(40, columns), encoding="utf-8", timeout=300)
    raw = child.read()
    child.close()
    assert child.exitstatus == 0, raw[-2000:]
    screen = pyte.Screen(columns, 40)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n"))
    return raw, [ln.rstrip() for ln in screen.display if ln.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("columns", [160, 60])
def test_progress_in_a_real_terminal(tmp_path, columns):
    raw, screen = _pty_run(tmp_path, columns)
    steps = 40  # data.limit 640 training samples / batch 16
    epochs = [ln for ln in screen if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"], screen
    for ln in epochs:
        assert f"━ {steps}/{steps}" in ln and len(ln) <= columns
    if columns == 160:
        assert "val_loss=" in epochs[-1]
    # Every count drawn along the way was a real one.
    counts = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) \d+:\d\d", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", raw))]
    assert counts and all(b == steps and a <= steps for a, b in counts)
    assert any(ln.startswith("data: 640 train") for ln in screen)
    assert any(ln.startswith("model.keras: epoch 2 of 2 (the last epoch)") for ln in screen)


def test_model_epoch_is_the_restored_one(tmp_path):
    """EarlyStopping(restore_best_weights) puts back an earlier epoch: the
    record says so, and model.keras really holds that epoch's weights."""
    import json

    import keras

    from dlcli import api
    from dlcli.data import load_data

    cfg_text = CONFIG.replace("train: {epochs: 2}", (
        "compile: {optimizer: {class_name: adam, config: {learning_rate: 0.08}}}\n"
        "train:\n  epochs: 8\n  callbacks:\n"
        "    - EarlyStopping: {monitor: val_loss, patience: 2, restore_best_weights: true}\n"))
    (tmp_path / "es.yaml").write_text(cfg_text, encoding="utf-8")
    result = api.train(tmp_path / "es.yaml", output=tmp_path / "runs", progress="none")
    m = json.loads((result.run_dir / "metrics.json").read_text())
    hist = result.history
    best = min(range(len(hist["val_loss"])), key=lambda i: (hist["val_loss"][i], i)) + 1
    assert m["model_epoch"] == m["model"]["epoch"] == best
    assert m["model"]["reason"] == "restore_best_weights"
    model = keras.saving.load_model(result.run_dir / "model.keras")
    bundle = load_data(api.load(result.run_dir / "config.yaml"))
    val_loss = model.evaluate(bundle.val, verbose=0, return_dict=True)["loss"]
    assert val_loss == pytest.approx(hist["val_loss"][best - 1], rel=1e-4)
    assert m["model"]["metrics"]["val_loss"] == pytest.approx(hist["val_loss"][best - 1])
