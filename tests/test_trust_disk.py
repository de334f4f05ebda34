"""A disk that fills up while a checkpoint is written: one error line,
exit 1, no traceback and no crash, and no half-written checkpoint or model.

The file-size limit (RLIMIT_FSIZE) makes every write past it fail the way
a full disk does, without needing a small file system; Python ignores
SIGXFSZ, so the write fails with an OSError instead of killing the process.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 256 * 1024  # config.yaml and data_spec.json fit; the checkpoint does not


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_checkpoint_past_the_file_size_limit_exits_1(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    # 256x512 weights and their Adam moments: about 1.5 MB of checkpoint.
    args = ["train", str(ROOT / "configs" / "mlp_iris.yaml"), "--epochs", "2", "--quiet", "--output", "runs",
            "--set", "model.layers.0.Dense.units=256", "--set", "model.layers.1.Dense.units=512"]
    res = subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300, preexec_fn=_small_files)
    assert res.returncode == 1, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING:", "I0000", "E0000", "W0000"))]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), res.stderr[-3000:]
    assert "File too large" in lines[0] and "epoch-0001.weights.h5" in lines[0]
    assert "dlcli train --resume runs/mlp_iris/1" in lines[0]
    run = tmp_path / "runs" / "mlp_iris" / "1"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == []  # no partial weights, no state.json
    assert not (run / "model.keras").exists()
    assert (run / "config.yaml").is_file()  # what was written before is intact
