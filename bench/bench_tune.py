"""Per-trial overhead of `dlcli tune` against separate `dlcli train` runs.

One side is a study of N one-epoch trials of configs/cnn_digits.yaml
(learning rate and width searched, random sampler, no pruning): one
process, TensorFlow imported once. The other side trains the very same N
configs (each trial's own config.yaml) as N separate `dlcli train`
processes, as a shell loop over configs would. Both write full run folders.

Each round runs both sides, alternating which goes first; the figures are
per-side medians over rounds of the whole wall time and the CPU time of the
child processes (which load from other work disturbs less), the time per
trial beyond its own training (`metrics.json` timings.train_s), and the
ratio separate / tune of each round, as a median. The load average is
printed beside them.

Usage:
    python bench/bench_tune.py                   # 10 trials, 3 rounds, ~8 minutes on 2 idle CPUs
    python bench/bench_tune.py --trials 2 --rounds 1 --limit 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, child_env, dlcli_command, machine, median, table, write_result  # noqa: E402


def study_config(folder: Path, trials: int, limit: int) -> Path:
    text = f"""\
extends: {ROOT / 'configs' / 'cnn_digits.yaml'}
name: bench
data: {{limit: {limit}}}
train: {{epochs: 1}}
tune:
  trials: {trials}
  sampler: random
  pruner: none
  space:
    compile.optimizer.config.learning_rate: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
    model.layers.6.Dense.units: {{type: int, low: 32, high: 256, step: 32}}
"""
    path = folder / "bench_tune.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run a child; its wall seconds, CPU seconds (user + system) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def train_seconds(run_dirs: list[str]) -> float:
    return sum(json.loads((Path(r) / "metrics.json").read_text())["timings"]["train_s"] for r in run_dirs)


def one_round(work: Path, config: Path, trials: int, configs: list[Path] | None) -> tuple[dict[str, dict[str, float]], list[Path]]:
    """One round; the separate runs train `configs` (first, before the
    study), or, in the first round, the configs of the study just run."""
    cli = dlcli_command()
    out: dict[str, dict[str, float]] = {}

    def run_tune() -> list[Path]:
        wall, cpu, stdout = timed([*cli, "tune", str(config), "-o", str(work / "tune"), "--json"], work)
        runs = [t["run_dir"] for t in json.loads(stdout)["trials"]]
        out["tune"] = {"wall_s": wall, "cpu_s": cpu, "train_s": train_seconds(runs)}
        return [Path(r) / "config.yaml" for r in runs]

    def run_separate(configs: list[Path]) -> None:
        wall = cpu = 0.0
        runs = []
        for i, c in enumerate(configs):
            w, u, stdout = timed([*cli, "train", str(c), "-o", str(work / "train"), "-n", f"t{i}", "--json", "-q"], work)
            wall, cpu = wall + w, cpu + u
            runs.append(json.loads(stdout)["run_dir"])
        out["separate"] = {"wall_s": wall, "cpu_s": cpu, "train_s": train_seconds(runs)}

    if configs is None:
        configs = run_tune()
        run_separate(configs)
    else:
        run_separate(configs)
        run_tune()
    for side in out.values():
        side["overhead_per_trial_s"] = (side["wall_s"] - side["train_s"]) / trials
    return out, configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1437, help="training samples (digits has 1,437 after the test split)")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        base = Path(tmp)
        config = study_config(base, args.trials, args.limit)
        rounds = []
        configs = None  # every round trains the first round's trials again
        for r in range(args.rounds):
            work = base / f"round{r}"
            work.mkdir()
            figures, first = one_round(work, config, args.trials, configs if r % 2 else None)
            configs = configs or first
            rounds.append(figures)

    sides = {s: {k: median(rnd[s][k] for rnd in rounds) for k in rounds[0][s]} for s in ("tune", "separate")}
    ratios = {k: median(rnd["separate"][k] / rnd["tune"][k] for rnd in rounds) for k in ("wall_s", "cpu_s")}
    result: dict[str, Any] = {
        "trials": args.trials,
        "rounds": args.rounds,
        "samples": args.limit,
        "sides": sides,
        "separate_over_tune": ratios,
        "machine": machine(),
    }
    rows = [[s, v["wall_s"], v["cpu_s"], v["train_s"], v["overhead_per_trial_s"]] for s, v in sides.items()]
    print(f"{args.trials} one-epoch trials of cnn_digits ({args.limit} samples), medians of {args.rounds} round(s)")
    print(table(rows, ["side", "wall s", "CPU s", "training s", "overhead s/trial"]))
    print(f"separate runs / tune: wall x{ratios['wall_s']:.2f}, CPU x{ratios['cpu_s']:.2f}; "
          f"load average {result['machine'].get('load_average_1m')} on {result['machine']['cpus']} CPUs")
    write_result(args.json_path, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
