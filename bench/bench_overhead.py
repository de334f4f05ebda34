"""Per-run fixed overhead: the CPU seconds a one-epoch `dlcli train` of a
tiny model costs beyond `import tensorflow, keras` in a fresh process.

What is left once TensorFlow is imported is dlcli's own work around a fit
that takes almost nothing (150 iris samples, one Dense layer): config
loading, data, model building, compiling/tracing, the run folder, the
checkpoint, model.keras and the plots. Both sides run in turns (A B A B);
per-pair differences are taken and their median reported, with wall time
and the load average beside the CPU time.

Usage:
    python bench/bench_overhead.py            # 5 rounds
    python bench/bench_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env, dlcli_command, machine, median, table  # noqa: E402

TINY = """\
name: tiny
data: {source: iris, batch_size: 32}
model:
  layers:
    - Dense: {units: 3, activation: softmax}
compile: {loss: categorical_crossentropy}
train: {epochs: 1}
"""


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tiny.yaml").write_text(TINY, encoding="utf-8")
        sides = {
            "import tensorflow": [sys.executable, "-c", "import tensorflow, keras"],
            "dlcli train (1 epoch)": [*dlcli_command(), "train", "tiny.yaml", "--output", "runs", "-q"],
            "... train.tensorboard=false": [*dlcli_command(), "train", "tiny.yaml", "--output", "runs", "-q",
                                            "--set", "train.tensorboard=false"],
        }
        measure(sides["import tensorflow"], work)  # warm the file cache
        cpu: dict[str, list[float]] = {k: [] for k in sides}
        wall: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for name, cmd in sides.items():
                c, w = measure(cmd, work)
                cpu[name].append(c)
                wall[name].append(w)
    names = list(sides)
    rows = [[n, median(cpu[n]), median(wall[n])] for n in names]
    for other in names[1:]:
        d_cpu = [b - a for a, b in zip(cpu[names[0]], cpu[other])]
        d_wall = [b - a for a, b in zip(wall[names[0]], wall[other])]
        rows.append([f"overhead of {other.split(' (')[0].strip('. ')} (per-pair median)", median(d_cpu), median(d_wall)])
    print(table(rows, ["command", "CPU s", "wall s"]))
    info = machine()
    print(f"rounds {args.rounds}; load average {os.getloadavg()[0]:.2f} (at start {info.get('load_average_1m')})")


if __name__ == "__main__":
    main()
