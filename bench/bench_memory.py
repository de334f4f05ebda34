"""Peak memory of an image-folder training epoch, at 2,000 and at 20,000
images: it must not grow with the folder.

For each size, a folder of small JPEGs (96x96, 4 classes) is trained on
for one epoch by `dlcli train` (a small convnet, batch 32, validation and
test splits as by default) in its own process; the process's peak resident
memory (ru_maxrss from wait4) is the figure. dlcli streams image folders
(file names are shuffled, images are decoded batch by batch), so only the
list of file names should grow, by well under a megabyte per 10,000 files.

Usage:
    python bench/bench_memory.py            # 2,000 and 20,000 images
    python bench/bench_memory.py --quick    # 200 and 2,000 images
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env, dlcli_command, machine, table, verdict, write_result  # noqa: E402
from bench_pipeline import make_folder  # noqa: E402

TARGET_RATIO = 1.2
CONFIG = """\
name: bench_memory
seed: 0
data: {{source: image_dir, path: {path}, image_size: [96, 96], batch_size: 32}}
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 16, kernel_size: 3, strides: 2, activation: relu}}
    - Conv2D: {{filters: 32, kernel_size: 3, strides: 2, activation: relu}}
    - GlobalAveragePooling2D
    - Dense: {{units: 4, activation: softmax}}
train: {{epochs: 1}}
"""


def peak_rss_mb(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run `cmd`; return (its peak resident memory in MiB, seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return kib / 1024, time.perf_counter() - t


def run(sizes: tuple[int, int], workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "sizes": {}}
    for n in sizes:
        t = time.perf_counter()
        folder = make_folder(workdir / f"images_{n}", n, size=(96, 96))
        written = time.perf_counter() - t
        config = workdir / f"memory_{n}.yaml"
        config.write_text(CONFIG.format(path=json.dumps(str(folder))), encoding="utf-8")
        mb, seconds = peak_rss_mb([*dlcli_command(), "train", str(config), "--output", str(workdir / "runs"), "--quiet"], workdir)
        out["sizes"][str(n)] = {"peak_rss_mb": mb, "train_s": seconds, "folder_written_s": written}
    small, large = (out["sizes"][str(n)]["peak_rss_mb"] for n in sizes)
    out["ratio"] = large / small
    out["target"] = TARGET_RATIO
    out["verdict"] = verdict(out["ratio"], TARGET_RATIO, higher_is_better=False)
    return out


def report(r: dict[str, Any]) -> str:
    rows = [[f"{int(n):,}", f"{v['peak_rss_mb']:.0f}", f"{v['train_s']:.1f}"] for n, v in r["sizes"].items()]
    text = table(rows, ["images", "peak RSS MiB", "dlcli train s"])
    return text + f"\n\npeak memory ratio {r['ratio']:.3f} (largest / smallest), target <= {r['target']}: {r['verdict']}"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 and 2,000 images instead of 2,000 and 20,000")
    p.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="the two folder sizes")
    p.add_argument("--workdir", help="where the folders go (default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    sizes = tuple(a.sizes) if a.sizes else ((200, 2000) if a.quick else (2000, 20000))
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-memory-") as tmp:
        workdir = Path(a.workdir) if a.workdir else Path(tmp)
        result = run(sizes, workdir)
    print(report(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
