"""CSV load and CSV predict: dlcli against pandas (+ `model.predict`).

Load (default): a CSV of ROWS rows x 20 float columns + an integer
target. pandas is `pandas.read_csv` + `to_numpy(float32)` of the features
and the target; dlcli is its csv source's read: `read_table` (pyarrow's
multithreaded reader with the column types of the first rows, float
features as float32) and the column arrays the model takes, three ways:
with the parsed-CSV cache off (the parse alone); a first read (a fresh
cache: the parse, and the cache file written before the clock stops); and
a repeat read (the same file again: the cached table mapped, as a second
run, an evaluate or a tune trial reads it). Every side sums its arrays
inside the clock, so each value is in memory (a mapped table's pages
too). A last line, not a ratio, times dlcli's whole `load_data` (splits,
stratification) on a repeat read, and another compares the parse with pandas reading with one thread (as it
did before 3.1, when the issue's figures were taken): a reference only.

Predict (--predict): a model trained by `dlcli train` on a 100k-row CSV
(raw columns in, FeatureSpace inside the saved model) predicts that CSV.
pandas is a script that loads the same model.keras, `pandas.read_csv`s
the file and calls `model.predict` on its columns; dlcli is
`dlcli predict RUN FILE --output preds.csv`. Both are timed as whole
processes (start-up, TensorFlow import, model load included).

Each measurement runs in a fresh process; the sides alternate over
rounds; the figures are per-pair medians of the ratios (never best-of),
with CPU time beside wall time, peak RSS (load: the growth after imports)
and the 1-minute load average.

    python bench/bench_csv.py [--quick] [--rows N] [--rounds K]
    python bench/bench_csv.py --predict [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, child_env, dlcli_command, machine, measured, median, table, verdict, write_result  # noqa: E402

COLS = 20
LOAD_CHILD = r"""
import json, resource, sys, time
side, path = sys.argv[1], sys.argv[2]
if side.startswith("pandas"):
    import pandas as pd
    if side == "pandas1":  # one thread, as pandas read before 3.1
        try:
            pd.set_option("mode.max_threads", 1)
        except (KeyError, pd.errors.OptionError):
            pass  # a pandas without the option reads with one thread already
elif side == "dlcli":
    from pathlib import Path
    from dlcli.data import table_cache
    from dlcli.data.table import read_table, to_numpy
    from dlcli.data.columns import Column
    from dlcli.data.tables import column_arrays
    import pyarrow.compute, pyarrow.csv
else:
    from dlcli.config import config_from_dict
    from dlcli.data import load_data
    import tensorflow, keras
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
if side.startswith("pandas"):
    df = pd.read_csv(path)
    x = df.drop(columns=["target"]).to_numpy(dtype="float32"); y = df["target"].to_numpy()
    total = float(x.sum()) + float(y.sum())  # every value read once (as on the dlcli side)
elif side == "dlcli":
    names = [f"f{i}" for i in range(int(sys.argv[3]))]
    t = read_table(Path(path), float32=names)
    x = column_arrays(t, [Column(n, "float_normalized", "float32", {}, 0.0, "features") for n in names])
    y = to_numpy(t.column("target"))
    total = sum(float(a.sum()) for a in x.values()) + float(y.sum())  # mapped pages read, not only mapped
    table_cache.flush()  # a first read's cache file is written before the clock stops
else:
    cfg = config_from_dict({"data": {"source": "csv", "path": path, "target": "target"},
                            "model": {"layers": [{"Dense": {"units": 2, "activation": "softmax"}}]}})
    bundle = load_data(cfg)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""
PREDICT_CHILD = r"""
import sys
model_path, path = sys.argv[1], sys.argv[2]
import keras, pandas as pd
model = keras.saving.load_model(model_path)
df = pd.read_csv(path)
names = [t.name for t in model.inputs]
p = model.predict({n: df[n].to_numpy("float32").reshape(-1, 1) for n in names}, batch_size=int(sys.argv[3]), verbose=0)
pd.DataFrame({"class": p.argmax(1), "probability": p.max(1)}).to_csv(sys.argv[4], index=False)
"""
CONFIG = """\
seed: 0
data: {{source: csv, path: {path}, target: target, batch_size: 256}}
model: {{layers: [{{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{epochs: 1}}
"""


def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """ROWS x 20 normal floats (6 decimals) and a 0/1 target, with a header."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, COLS))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    header = ",".join([f"f{i}" for i in range(COLS)] + ["target"])
    with open(path, "w", encoding="ascii") as f:
        f.write(header + "\n")
        for start in range(0, rows, 100_000):
            block = np.column_stack([x[start:start + 100_000], y[start:start + 100_000]])
            np.savetxt(f, block, delimiter=",", fmt=["%.6f"] * COLS + ["%d"])
    return path


def child(cmd: list[str], cwd: Optional[Path] = None, **env: str) -> dict[str, float]:
    """A child's wall, CPU and peak RSS, measured by the OS (wait4), and
    the figures it prints as its last line (in_*)."""
    usage, out = measured(cmd, cwd=cwd, env=child_env(PYTHONPATH=str(ROOT), **env))
    res = {"wall": usage["wall_s"], "cpu": usage["cpu_s"], "rss_mb": usage["peak_rss_mb"]}
    lines = out.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        res.update({f"in_{k}": v for k, v in json.loads(lines[-1]).items()})
    return res


def pairs(runs: dict[str, list[dict]], a: str, b: str, key: str) -> float:
    """Median over rounds of runs[a][i][key] / runs[b][i][key]."""
    return median(x[key] / y[key] for x, y in zip(runs[a], runs[b]))


# name: (child side, parsed-CSV cache: off / fresh (emptied first) / warm)
LOAD_SIDES = {"pandas": ("pandas", "off"), "pandas, one thread": ("pandas1", "off"), "dlcli parse (cache off)": ("dlcli", "off"),
              "dlcli first read": ("dlcli", "fresh"), "dlcli repeat read": ("dlcli", "warm"),
              "dlcli load_data (repeat)": ("load_data", "warm")}


def run_load(rows: int, rounds: int, work: Path) -> dict[str, Any]:
    path = write_csv(work / "load.csv", rows)
    # The reads' cache (emptied for each first read) and load_data's own
    # (it reads fewer columns: another key), warmed once before the rounds.
    caches = {"dlcli": work / "table-cache", "load_data": work / "table-cache-load-data"}
    child([sys.executable, "-c", LOAD_CHILD, "load_data", str(path), str(COLS)], DLCLI_TABLE_CACHE=str(caches["load_data"]))
    runs: dict[str, list[dict]] = {k: [] for k in LOAD_SIDES}
    loads = []
    for _ in range(rounds):
        for name, (side, state) in LOAD_SIDES.items():
            cache = caches.get(side)
            if state == "fresh":
                shutil.rmtree(cache, ignore_errors=True)
            runs[name].append(child([sys.executable, "-c", LOAD_CHILD, side, str(path), str(COLS)],
                                    DLCLI_TABLE_CACHE="off" if state == "off" else str(cache)))
            loads.append(os.getloadavg()[0])
    speed = {name: {k: pairs(runs, "pandas", name, f"in_{k}") for k in ("wall", "cpu")} for name in LOAD_SIDES}
    return {"machine": machine(), "rows": rows, "rounds": rounds, "load_average_1m": loads, "runs": runs,
            "speed": speed, "rss_ratio": pairs(runs, "dlcli parse (cache off)", "pandas", "in_rss_mb")}


def report_load(r: dict[str, Any]) -> str:
    rows = [[side, f"{median(x['in_wall'] for x in v):.3f}", f"{median(x['in_cpu'] for x in v):.3f}",
             f"{median(x['in_rss_mb'] for x in v):.0f}"] for side, v in r["runs"].items()]
    lines = [f"CSV load, {r['rows']:,} rows x {COLS} floats + target, {r['rounds']} interleaved rounds, "
             f"1-min load average {min(r['load_average_1m']):.1f}-{max(r['load_average_1m']):.1f} on {r['machine']['cpus']} CPUs",
             table(rows, ["side", "wall s", "CPU s", "peak RSS growth MiB"]), "",
             "speed dlcli / pandas (median of per-round ratios):"]
    for name in list(LOAD_SIDES)[2:5]:
        s = r["speed"][name]
        lines.append(f"  {name}: wall {s['wall']:.2f}x, CPU {s['cpu']:.2f}x (target >= 1.0: {verdict(s['wall'], 1.0)})")
    one = pairs(r["runs"], "pandas, one thread", "dlcli parse (cache off)", "in_wall")
    s = r["speed"]["dlcli load_data (repeat)"]
    lines += [f"peak RSS dlcli / pandas: {r['rss_ratio']:.2f}x (target <= 1.3: {verdict(r['rss_ratio'], 1.3, False)})",
              f"(dlcli's whole load_data on a repeat read, splits and stratification included: {s['wall']:.2f}x pandas' read)",
              f"(a reference, not the target: dlcli's parse against pandas reading with one thread, as pandas did "
              f"before 3.1 and when the issue was filed: {one:.2f}x wall)"]
    return "\n".join(lines)


def run_predict(rows: int, rounds: int, work: Path) -> dict[str, Any]:
    path = write_csv(work / "predict.csv", rows, seed=1)
    config = work / "predict.yaml"
    config.write_text(CONFIG.format(path=json.dumps(str(path))), encoding="utf-8")
    subprocess.run([*dlcli_command(), "train", str(config), "--output", str(work / "runs"), "--quiet"],
                   env=child_env(PYTHONPATH=str(ROOT)), check=True, capture_output=True)
    run = next((work / "runs").rglob("model.keras")).parent
    cmds = {"pandas + model.predict": [sys.executable, "-c", PREDICT_CHILD, str(run / "model.keras"), str(path), "256",
                                        str(work / "pandas.csv")],
            "dlcli predict": [*dlcli_command(), "predict", str(run), str(path), "--batch-size", "256",
                              "--output", str(work / "dlcli.csv")]}
    runs: dict[str, list[dict]] = {k: [] for k in cmds}
    loads = []
    for i in range(rounds):
        for name, cmd in cmds.items():
            (work / "dlcli.csv").unlink(missing_ok=True)
            runs[name].append(child(cmd))
            loads.append(os.getloadavg()[0])
    with open(work / "dlcli.csv", encoding="utf-8") as f:
        predicted = sum(1 for _ in f) - 1
    if predicted != rows:
        raise RuntimeError(f"dlcli predicted {predicted} rows of {rows}")
    a, b = "pandas + model.predict", "dlcli predict"
    return {"machine": machine(), "rows": rows, "rounds": rounds, "load_average_1m": loads, "runs": runs,
            "speed_wall": pairs(runs, a, b, "wall"), "speed_cpu": pairs(runs, a, b, "cpu")}


def report_predict(r: dict[str, Any]) -> str:
    rows = [[side, f"{median(x['wall'] for x in v):.2f}", f"{median(x['cpu'] for x in v):.2f}",
             f"{r['rows'] / median(x['wall'] for x in v):,.0f}", f"{median(x['rss_mb'] for x in v):.0f}"]
            for side, v in r["runs"].items()]
    return "\n".join([
        f"CSV predict, {r['rows']:,} rows x {COLS} floats, whole processes, {r['rounds']} interleaved rounds, "
        f"1-min load average {min(r['load_average_1m']):.1f}-{max(r['load_average_1m']):.1f} on {r['machine']['cpus']} CPUs",
        table(rows, ["side", "wall s", "CPU s", "rows/s", "peak RSS MiB"]), "",
        f"rows/s dlcli / pandas + model.predict (median of per-round ratios): wall {r['speed_wall']:.2f}x, "
        f"CPU {r['speed_cpu']:.2f}x (target >= 1.0: {verdict(r['speed_wall'], 1.0)})"])


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--predict", action="store_true", help="CSV predict instead of CSV load")
    p.add_argument("--quick", action="store_true", help="a tenth of the rows, 2 rounds")
    p.add_argument("--rows", type=int, help="rows (default: load 1,000,000, predict 100,000)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    rows = a.rows or (100_000 if a.predict else 1_000_000) // (10 if a.quick else 1)
    rounds = a.rounds or (2 if a.quick else 3)
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-csv-") as tmp:
        result = (run_predict if a.predict else run_load)(rows, rounds, Path(tmp))
    print((report_predict if a.predict else report_load)(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
