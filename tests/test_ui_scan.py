"""What a person sees while an image folder is listed and checked: a
transient status line on a terminal (only once the wait lasts), the
"found" line after it, and nothing of it in a pipe, with --json or --quiet.

The pre-flight check of a few hundred small files is faster than the
status line's delay, so the runs below slow each file's check down (as a
slow disk would) from a wrapper that then starts the real CLI.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dlcli.data import scanning
from dlcli.statusline import StatusLine, waiting

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
# The real CLI, with every file's pre-flight check taking 10 ms longer.
SLOW_CLI = (
    "import time, dlcli.data.image_check as c; f = c.check_image; "
    "c.check_image = lambda *a, **k: (time.sleep(0.01), f(*a, **k))[1]; "
    "from dlcli.cli import main; main()"
)
CONFIG = """\
name: scan
data: {source: image_dir, path: images, image_size: [8, 8], batch_size: 64, test_split: 0.0}
model:
  layers:
    - Flatten
    - Dense: {units: 2, activation: softmax}
train: {epochs: 1}
"""


def _folder(tmp_path: Path, n: int = 640) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        d = tmp_path / "images" / ("a" if k % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{k}.png")
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "scan.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def _terminal(wide: int) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=wide, color_system="truecolor"), out


def test_a_short_wait_draws_nothing():
    console, out = _terminal(80)
    with waiting("progress", console):
        scanning.report("checking images", 10, 20)
        time.sleep(0.1)
    assert out.getvalue() == ""


@pytest.mark.parametrize("mode", ["lines", "none"])
def test_no_line_in_a_pipe_or_when_quiet(mode):
    console, out = _terminal(80)
    with waiting(mode, console) as line:
        assert line is None
        scanning.report("checking images", 1, 2)  # nobody listens: a no-op
        time.sleep(0.7)
    assert out.getvalue() == ""


def test_a_long_wait_shows_the_count_at_most_ten_times_a_second_then_erases_it():
    console, out = _terminal(60)
    t0 = time.perf_counter()
    with waiting("progress", console):
        for k in range(0, 2001, 40):  # 51 reports in ~1.5 s
            scanning.report("checking images", k, 2000)
            time.sleep(0.03)
    seconds = time.perf_counter() - t0
    raw = out.getvalue()
    frames = [ANSI.sub("", f) for f in raw.split("\r") if "checking images" in f]
    assert frames, raw
    # Drawn after half a second, about ten times a second (plus the last).
    assert len(frames) <= 10 * (seconds - 0.5) + 3
    counts = [int(m.group(1).replace(",", "")) for f in frames if (m := re.search(r"([\d,]+)/2,000", f))]
    assert counts == sorted(counts) and counts[-1] > 1000
    assert all(len(f.rstrip()) <= 59 for f in frames)
    assert raw.endswith("\x1b[2K") or "\x1b[2K" in raw[-40:]  # transient: the line is erased


def test_a_step_without_a_count_shows_a_spinner():
    line = StatusLine(_terminal(60)[0], "starting TensorFlow")
    line.update("building the input pipeline")
    console, out = _terminal(60)
    console.print(line)
    assert "building the input pipeline…" in out.getvalue()


def test_the_check_reports_its_count_in_blocks(tmp_path):
    from dlcli.data.image_check import check_images

    _folder(tmp_path, 200)
    files = sorted(str(p) for p in (tmp_path / "images").rglob("*.png"))
    seen = []
    with scanning.listening(lambda what, done, total: seen.append((what, done, total))):
        codes, bad = check_images(files)
    assert len(bad) == 1 and seen[0] == ("checking images", 0, 201) and seen[-1] == ("checking images", 201, 201)
    assert len(seen) == 1 + -(-201 // 64)  # one report a block of 64 files, not one a file


def _pty(tmp_path: Path, columns: int, *args: str) -> tuple[int, str, list[str]]:
    pexpect = pytest.importorskip("pexpect")
    pyte = pytest.importorskip("pyte")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "TERM": "xterm-256color",
           "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-c", SLOW_CLI, *args], cwd=str(tmp_path), env=env,
                          dimensions=(40, columns), encoding="utf-8", timeout=300)
    raw = child.read()
    child.close()
    screen = pyte.Screen(columns, 40)
    pyte.Stream(screen).feed(raw)
    return child.exitstatus, raw, [ln.rstrip() for ln in screen.display if ln.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("columns", [160, 60])
def test_scan_line_in_a_real_terminal(tmp_path, columns):
    _folder(tmp_path)
    code, raw, screen = _pty(tmp_path, columns, "train", "scan.yaml", "-o", "runs")
    assert code == 0, raw[-2000:]
    frames = [ANSI.sub("", f).strip() for f in re.split(r"[\r\n]", raw)]
    checking = [f for f in frames if f.startswith("checking images")]
    assert checking, frames
    assert all(len(f) <= columns - 1 and re.search(r"━ [\d,]+/641", f) for f in checking)
    # The status lines are gone: the "found" line took their place.
    assert not any("checking images" in ln or "starting TensorFlow" in ln for ln in screen), screen
    found = screen.index("found 640 images in 2 classes, 1 skipped")
    assert screen[found + 1] == "data: 576 train, 64 val; 2 classes"
    assert any(ln.startswith("epoch 1/1 ━") for ln in screen[found:])


@pytest.mark.slow
def test_piped_and_json_and_quiet_runs_have_no_status_line(tmp_path):
    _folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "TERM": "xterm-256color"}
    run = subprocess.run([sys.executable, "-c", SLOW_CLI, "train", "scan.yaml", "-o", "runs", "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["epochs_completed"] == 1  # stdout: the JSON object only
    assert "\x1b" not in run.stderr and "\r" not in run.stderr
    assert "checking images" not in run.stderr and "starting TensorFlow" not in run.stderr
    assert "found 640 images in 2 classes, 1 skipped" in run.stderr.splitlines()
    # --quiet on a terminal: nothing but the closing lines.
    code, raw, screen = _pty(tmp_path, 80, "train", "scan.yaml", "-o", "runs", "-q")
    assert code == 0, raw[-2000:]
    assert not any(w in raw for w in ("checking images", "starting TensorFlow", "found 640", "epoch 1/1"))
