"""CSV load: dlcli (pyarrow) vs pandas.read_csv + to_numpy.

Each side runs in its own subprocess (peak RSS measured by the OS, minus
the RSS after its imports), interleaved over rounds; per-pair medians of
wall and CPU time are printed with the load average.

    python bench/bench_csv.py --rows 1000000 --rounds 3

Not covered yet (see the dtab report): predict on a 100k-row CSV and the
10M-row streaming (data.cache: false) run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, resource, sys, time
side, path = sys.argv[1], sys.argv[2]
if side == "pandas":
    import pandas as pd
else:
    import pyarrow, pyarrow.csv
    from dlcli.data.table import read_table
    from pathlib import Path
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
if side == "pandas":
    df = pd.read_csv(path)
    x = df.drop(columns=["target"]).to_numpy(dtype="float32"); y = df["target"].to_numpy()
else:
    t = read_table(Path(path))
    x = {c: t.column(c).to_numpy().astype("float32") for c in t.column_names if c != "target"}
    y = t.column("target").to_numpy()
out = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
       "rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        rng = np.random.default_rng(0)
        data = np.column_stack([rng.normal(size=(args.rows, args.cols)), rng.integers(0, 2, args.rows)])
        header = ",".join([f"f{i}" for i in range(args.cols)] + ["target"])
        np.savetxt(path, data, delimiter=",", header=header, comments="", fmt=["%.6f"] * args.cols + ["%d"])
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs: dict[str, list[dict]] = {"dlcli": [], "pandas": []}
        for _ in range(args.rounds):
            for side in ("dlcli", "pandas"):
                out = subprocess.run([sys.executable, "-c", CHILD, side, str(path)], env=env, capture_output=True, text=True, check=True)
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ratio = [p["wall"] / d["wall"] for d, p in zip(runs["dlcli"], runs["pandas"])]
    rss = [d["rss_mb"] / p["rss_mb"] for d, p in zip(runs["dlcli"], runs["pandas"])]
    med = lambda side, k: statistics.median(r[k] for r in runs[side])  # noqa: E731
    print(f"csv load {args.rows} rows x {args.cols} cols, {args.rounds} interleaved rounds, load average {os.getloadavg()}")
    for side in runs:
        print(f"  {side:7s} wall {med(side, 'wall'):.3f}s  cpu {med(side, 'cpu'):.3f}s  peak rss +{med(side, 'rss_mb'):.0f} MB")
    print(f"  speed pandas/dlcli (median of pairs): {statistics.median(ratio):.2f}x   rss dlcli/pandas: {statistics.median(rss):.2f}x")


if __name__ == "__main__":
    main()
