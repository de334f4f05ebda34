"""CLI latency: `dlcli --help` and `dlcli validate CONFIG` against
`python -c pass` (the floor: starting the interpreter).

Neither command may import TensorFlow (DESIGN.md), so both should cost
little more than Python itself. Each command runs many times, in turns;
the median wall time counts (the minimum is printed too).

Usage:
    python bench/bench_cli.py            # 15 runs of each
    python bench/bench_cli.py --quick    # 5 runs of each
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, child_env, dlcli_command, machine, median, table, verdict, write_result  # noqa: E402

HELP_TARGET_S = 0.5


def wall_time(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed


def run(runs: int, workdir: Path) -> dict[str, Any]:
    config = ROOT / "configs" / "cnn_digits.yaml"
    if not config.exists():  # a copy outside the repository: validate a small config of our own
        config = workdir / "mlp.yaml"
        config.write_text("data: {source: iris}\nmodel:\n  layers:\n    - Dense: {units: 3, activation: softmax}\n", encoding="utf-8")
    dlcli = dlcli_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dlcli --help": [*dlcli, "--help"],
        f"dlcli validate {config.name}": [*dlcli, "validate", str(config)],
    }
    for cmd in commands.values():  # warm the file cache once
        wall_time(cmd, workdir)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(wall_time(cmd, workdir))
    floor = median(times["python -c pass"])
    out: dict[str, Any] = {"machine": machine(), "runs": runs, "commands": {}}
    for name, ts in times.items():
        out["commands"][name] = {"median_s": median(ts), "min_s": min(ts), "vs_python": median(ts) / floor}
    help_s = out["commands"]["dlcli --help"]["median_s"]
    out["help_target_s"] = HELP_TARGET_S
    out["verdict"] = verdict(help_s, HELP_TARGET_S, higher_is_better=False)
    return out


def report(r: dict[str, Any]) -> str:
    rows = [[name, f"{c['median_s']:.3f}", f"{c['min_s']:.3f}", f"{c['vs_python']:.1f}x"] for name, c in r["commands"].items()]
    text = table(rows, ["command", "median s", "min s", "vs python -c pass"])
    help_s = r["commands"]["dlcli --help"]["median_s"]
    return text + f"\n\ndlcli --help {help_s:.3f}s, target <= {r['help_target_s']}s: {r['verdict']}"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 runs of each command instead of 15")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    runs = a.runs or (5 if a.quick else 15)
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-cli-") as tmp:
        result = run(runs, Path(tmp))
    print(report(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
