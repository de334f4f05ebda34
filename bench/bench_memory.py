"""Peak memory of an image-folder training epoch, at 2,000 and at 20,000
images: it must not grow with the folder.

For each size, a folder of small JPEGs (96x96, 4 classes) is trained on
for one epoch by `dlcli train` (a small convnet, batch 32, validation and
test splits as by default) in its own process; the process's peak resident
memory (ru_maxrss from wait4) is the figure, its wall and CPU time beside
it. The sizes alternate over rounds; the ratio is the median of the
per-round ratios (never a best-of), printed with the load average. dlcli
streams image folders (file names are shuffled, images are decoded batch
by batch), so only the list of file names should grow, by well under a
megabyte per 10,000 files.

Usage:
    python bench/bench_memory.py            # 2,000 and 20,000 images
    python bench/bench_memory.py --quick    # 200 and 2,000 images
    python bench/bench_memory.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dlcli_command, machine, measured, median, table, verdict, write_result  # noqa: E402
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


def rounds_of(sizes: tuple, rounds: int, measure: Callable[[Any], dict[str, float]]) -> dict[str, Any]:
    """`measure` each size once a round, the sizes alternating, for
    `rounds` rounds; the peak memory ratio (largest / smallest) of each
    round and their median, so load that changes between rounds cancels
    within each pair.

    Returns:
        {"runs": {size: [measurement, ...]}, "ratios": [...], "ratio": median}.
    """
    runs: dict[str, list[dict[str, float]]] = {str(n): [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            runs[str(n)].append(measure(n))
    small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
    ratios = [b["peak_rss_mb"] / a["peak_rss_mb"] for a, b in zip(small, large)]
    return {"runs": runs, "ratios": ratios, "ratio": median(ratios)}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over a size's rounds."""
    return {k: median(r[k] for r in runs) for k in runs[0]}


def run(sizes: tuple[int, int], rounds: int, workdir: Path) -> dict[str, Any]:
    configs: dict[int, Path] = {}
    written: dict[int, float] = {}
    for n in sizes:
        t = time.perf_counter()
        folder = make_folder(workdir / f"images_{n}", n, size=(96, 96))
        written[n] = time.perf_counter() - t
        configs[n] = workdir / f"memory_{n}.yaml"
        configs[n].write_text(CONFIG.format(path=json.dumps(str(folder))), encoding="utf-8")

    def measure(n: int) -> dict[str, float]:
        cmd = [*dlcli_command(), "train", str(configs[n]), "--output", str(workdir / "runs"), "--quiet"]
        return measured(cmd, cwd=workdir)[0]

    out: dict[str, Any] = {"machine": machine(), "rounds": rounds, **rounds_of(sizes, rounds, measure)}
    out["sizes"] = {str(n): {**medians(out["runs"][str(n)]), "folder_written_s": written[n]} for n in sizes}
    out["target"] = TARGET_RATIO
    out["verdict"] = verdict(out["ratio"], TARGET_RATIO, higher_is_better=False)
    return out


def load_range(runs: dict[str, list[dict[str, float]]]) -> str:
    loads = [r["load_average_1m"] for v in runs.values() for r in v]
    return f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"


def report(r: dict[str, Any]) -> str:
    rows = [[f"{int(n):,}", f"{v['peak_rss_mb']:.0f}", f"{v['wall_s']:.1f}", f"{v['cpu_s']:.1f}"] for n, v in r["sizes"].items()]
    text = table(rows, ["images", "peak RSS MiB", "dlcli train wall s", "CPU s"])
    return (f"image-folder epoch, {r['rounds']} interleaved rounds (medians), {load_range(r['runs'])}\n{text}\n\n"
            f"peak memory ratio {r['ratio']:.3f} (largest / smallest, median of per-round ratios "
            f"{', '.join(f'{x:.3f}' for x in r['ratios'])}), target <= {r['target']}: {r['verdict']}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 and 2,000 images instead of 2,000 and 20,000")
    p.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), help="the two folder sizes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--workdir", help="where the folders go (default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    sizes = tuple(a.sizes) if a.sizes else ((200, 2000) if a.quick else (2000, 20000))
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-memory-") as tmp:
        workdir = Path(a.workdir) if a.workdir else Path(tmp)
        result = run(sizes, a.rounds, workdir)
    print(report(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
