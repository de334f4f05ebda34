"""Shared helpers of the benchmark scripts: child processes, timing of the
lines they print, machine description, result tables.

Every figure is measured in fresh processes (no warm TensorFlow state
carried from one measurement to the next), and each comparison runs both
sides on the same machine in the same invocation, alternating, so a
change in machine load hits both.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parent.parent
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\b")


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a benchmark child: quiet TensorFlow, CPU-only unless
    the user has chosen devices, no distribution config leaking in."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def dlcli_command() -> list[str]:
    """How to start the `dlcli` CLI of this Python environment."""
    exe = Path(sys.executable).with_name("dlcli")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dlcli")
    return [found] if found else [sys.executable, "-m", "dlcli"]


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of a running process so far (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def epoch_end_times(
    cmd: list[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None, timeout: float = 3600
) -> tuple[dict[int, tuple[float, Optional[float]]], str]:
    """Run `cmd`, time-stamping each `epoch k/E` line it prints on stderr.

    Both dlcli (its progress lines) and the plain-Keras children print one
    such line at the end of every epoch, after validation, so the stamps
    measure the same thing for both. Each stamp holds the wall time and
    the process's CPU time: on a machine shared with other work, the CPU
    time a run needed varies much less than its wall time.

    Returns:
        ({epoch number: (wall seconds since start, CPU seconds)}, stdout).

    Raises:
        RuntimeError: the command failed (its stderr tail attached).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    stamps: dict[int, tuple[float, Optional[float]]] = {}
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        m = EPOCH_LINE.match(line)
        if m:
            stamps[int(m.group(1))] = (time.perf_counter() - t0, cpu_seconds(proc.pid))
        tail = (tail + [line])[-40:]
    out = proc.stdout.read() if proc.stdout else ""
    if proc.wait(timeout=timeout) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{''.join(tail)}")
    return stamps, out


def steady_rate(stamps: dict[int, tuple[float, Optional[float]]], samples_per_epoch: int) -> tuple[float, Optional[float]]:
    """Samples per second from the end of epoch 1 to the end of the last
    epoch: tracing, compilation and start-up are left out, everything
    done per epoch (validation, checkpoints, history) is counted.

    Returns:
        (samples per wall second, samples per CPU second or None).
    """
    last = max(stamps)
    if last < 2:
        raise ValueError("need at least two epochs to measure a steady rate")
    samples = samples_per_epoch * (last - 1)
    (w1, c1), (wn, cn) = stamps[1], stamps[last]
    cpu = samples / (cn - c1) if c1 is not None and cn is not None and cn > c1 else None
    return samples / (wn - w1), cpu


def run_json(cmd: list[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None, timeout: float = 3600) -> dict[str, Any]:
    """Run a child that prints one JSON object as its last stdout line."""
    proc = subprocess.run(cmd, cwd=cwd, env=env or child_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measured(cmd: list[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None) -> tuple[dict[str, float], str]:
    """Run `cmd` to its end; its wall time, CPU time (user + system) and
    peak resident memory as the OS counts them (wait4), the 1-minute load
    average as it ended, and its stdout.

    Raises:
        RuntimeError: the command failed (its stderr tail attached).
    """
    import tempfile

    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    # Linux counts ru_maxrss in KiB, macOS in bytes.
    kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": kib / 1024,
            "load_average_1m": os.getloadavg()[0]}, stdout


def alternate(repeats: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Measure each side `repeats` times, alternating A B A B ..."""
    out: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, measure in sides.items():
            out[name].append(measure())
    return out


def best(values: Iterable[float], higher_is_better: bool = True) -> float:
    """The best of repeated measurements (a secondary figure only: the
    headline is `pair_ratio`'s per-pair median)."""
    values = list(values)
    return max(values) if higher_is_better else min(values)


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    """The median of the measured values (None ones, not measured, left out)."""
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def pair_ratio(numerators: Iterable[Optional[float]], denominators: Iterable[Optional[float]]) -> Optional[float]:
    """The median over rounds of numerator / denominator, round i of one
    side paired with round i of the other (measured back to back by
    `alternate`), so load that changes between rounds cancels within each
    pair. Pairs with a side not measured (None) are left out."""
    return median(a / b for a, b in zip(numerators, denominators) if a is not None and b)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, with the CPU count, to print
    beside every figure."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import importlib.metadata as md

        info["tensorflow"] = md.version("tensorflow")
        info["keras"] = md.version("keras")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain-text table (what the scripts print and bench/README.md
    records)."""
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def write_result(path: Optional[str], result: dict[str, Any]) -> None:
    """Save the figures as JSON (for bench/README.md) when asked to."""
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
