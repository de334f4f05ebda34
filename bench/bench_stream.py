"""Streaming a table from disk: peak memory of one training epoch must not
grow with the row count when `data.cache: false`.

For each size (default 1,000,000 and 10,000,000 rows; --quick: 200,000
and 1,000,000), a Parquet file of 10 float32 columns and a 0/1 target is
written with pyarrow (row groups of 100,000 rows), and `dlcli train`
trains a small MLP on it for one epoch (batch 1024, default splits and
shuffle buffer) in its own process with `data.cache: false`; its peak
resident memory (ru_maxrss from wait4) is the figure, wall and CPU time
beside it. The sizes alternate over rounds; the ratio is the median of the
per-round ratios (never a best-of), printed with the load average. With
--in-memory the smaller size also trains with the default `cache: auto`
(the whole table in memory), for scale.

    python bench/bench_stream.py [--quick] [--sizes SMALL LARGE] [--rounds K] [--in-memory]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dlcli_command, machine, measured, table, verdict, write_result  # noqa: E402
from bench_memory import load_range, medians, rounds_of  # noqa: E402

TARGET_RATIO = 1.2
COLS = 10
CONFIG = """\
seed: 0
data: {{source: parquet, path: {path}, target: target, batch_size: 1024, cache: {cache}}}
model: {{layers: [{{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{epochs: 1}}
"""


def write_parquet(path: Path, rows: int) -> Path:
    """ROWS x 10 float32 normals and a target of the first two's sum, in row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([pa.field(f"f{i}", pa.float32()) for i in range(COLS)] + [pa.field("target", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            x = rng.normal(size=(n, COLS)).astype(np.float32)
            cols = [pa.array(x[:, i]) for i in range(COLS)] + [pa.array((x[:, 0] + x[:, 1] > 0).astype(np.int64))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    return path


def run(sizes: tuple[int, int], rounds: int, in_memory: bool, work: Path) -> dict[str, Any]:
    def measure(rows: int, cache: str = "false") -> dict[str, Any]:
        path = work / f"t_{rows}.parquet"
        if not path.exists():
            write_parquet(path, rows)
        config = work / f"stream_{rows}_{cache}.yaml"
        config.write_text(CONFIG.format(path=json.dumps(str(path)), cache=cache), encoding="utf-8")
        usage = measured([*dlcli_command(), "train", str(config), "--output", str(work / "runs"), "--quiet"], cwd=work)[0]
        return {**usage, "file_mb": path.stat().st_size / 2**20}

    out: dict[str, Any] = {"machine": machine(), "rounds": rounds, **rounds_of(sizes, rounds, measure)}
    out["sizes"] = {n: medians(v) for n, v in out["runs"].items()}
    if in_memory:
        out["in_memory"] = medians([measure(sizes[0], "auto") for _ in range(rounds)])
    out["verdict"] = verdict(out["ratio"], TARGET_RATIO, higher_is_better=False)
    return out


def report(r: dict[str, Any]) -> str:
    rows = [[f"{int(n):,}", "false", f"{x['file_mb']:.0f}", f"{x['peak_rss_mb']:.0f}", f"{x['wall_s']:.0f}",
             f"{x['cpu_s']:.0f}"] for n, x in r["sizes"].items()]
    if "in_memory" in r:
        x = r["in_memory"]
        rows.append([f"{int(min(r['sizes'], key=int)):,}", "auto", f"{x['file_mb']:.0f}", f"{x['peak_rss_mb']:.0f}",
                     f"{x['wall_s']:.0f}", f"{x['cpu_s']:.0f}"])
    text = table(rows, ["rows", "data.cache", "file MiB", "peak RSS MiB", "dlcli train wall s", "CPU s"])
    return (f"streamed table epoch, {r['rounds']} interleaved rounds (medians), {load_range(r['runs'])}\n{text}\n\n"
            f"peak memory ratio {r['ratio']:.3f} (largest / smallest, cache false, median of per-round ratios "
            f"{', '.join(f'{x:.3f}' for x in r['ratios'])}), target <= {TARGET_RATIO}: {r['verdict']}")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200,000 and 1,000,000 rows")
    p.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--in-memory", action="store_true", help="also train the smaller file with cache: auto")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    sizes = tuple(a.sizes) if a.sizes else ((200_000, 1_000_000) if a.quick else (1_000_000, 10_000_000))
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-stream-") as tmp:
        result = run(sizes, a.rounds, a.in_memory, Path(tmp))
    result["seconds"] = time.perf_counter() - t
    print(report(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
