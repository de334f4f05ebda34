"""`dlcli runs`: list run folders with their status and results, and
compare runs side by side.

A run's status is read from its files, nothing else:

* running: another process holds the folder's lock (dlcli.runs);
* finished: metrics.json is there (training completed or stopped early);
  pruned: a `dlcli tune` trial that the study's pruner stopped early
  (its trial.json says so);
* failed: metrics.json says so (model.keras did not reload as trained), or
  a model.keras without metrics.json (a diverged run keeps its
  last good model), or a folder with no checkpoint at all (it died before
  its first epoch);
* interrupted: a resumable checkpoint and no model yet
  (`dlcli train --resume RUN` continues it).

Only JSON, CSV and YAML are read (safe loaders): listing runs from
elsewhere runs no code.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from dlcli.errors import RunError
from dlcli.runs import CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE, run_number

PathLike = Union[str, Path]
_STATE_FILE = "state.json"


def is_run_folder(p: Path) -> bool:
    """A numbered folder holding a run's config.yaml."""
    return p.is_dir() and run_number(p.name) is not None and (p / CONFIG_FILE).is_file()


def find_runs(where: PathLike) -> list[Path]:
    """Run folders under `where`: a run folder itself, a NAME folder (its
    numbered runs) or a root of NAME folders; sorted by name, then number.

    Raises:
        RunError: `where` does not exist or holds no run.
    """
    p = Path(where)
    if not p.is_dir():
        raise RunError(f"no such folder: {p}", hint="pass a runs root (runs/), a NAME folder or a run folder")
    if is_run_folder(p):
        return [p]
    runs = [c for c in p.iterdir() if is_run_folder(c)]
    if not runs:
        runs = [r for c in p.iterdir() if c.is_dir() for r in c.iterdir() if is_run_folder(r)]
    if not runs:
        raise RunError(f"no run folders in {p}", hint="run folders are <root>/<name>/<N>/ with a config.yaml")
    return sorted(runs, key=lambda r: (r.parent.name, int(r.name)))


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(folder: Path) -> bool:
    """True while another process trains in `folder` (holds its flock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locks to see
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def run_status(folder: Path) -> str:
    """finished | pruned | running | interrupted | failed (see the module's doc)."""
    if is_locked(folder):
        return "running"
    if (folder / METRICS_FILE).is_file():
        if _read_json(folder / METRICS_FILE).get("status") == "failed":
            return "failed"  # model.keras did not reload as trained
        return "pruned" if _read_json(folder / "trial.json").get("state") == "pruned" else "finished"
    if (folder / MODEL_FILE).is_file() or not (folder / CHECKPOINT_DIR / _STATE_FILE).is_file():
        return "failed"
    return "interrupted"


def read_history(folder: Path) -> dict[str, list[float]]:
    """history.csv's columns (empty cells as NaN)."""
    try:
        with open(folder / HISTORY_FILE, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return {}
    cols: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            try:
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                cols.setdefault(k, []).append(math.nan)
    return cols


def describe_run(folder: Path) -> dict[str, Any]:
    """One run's row: status, epochs, best, model epoch, test metrics, time."""
    m = _read_json(folder / METRICS_FILE)
    state = _read_json(folder / CHECKPOINT_DIR / _STATE_FILE)
    history = read_history(folder)
    done = m.get("epochs_completed", state.get("epoch", len(history.get("epoch", []))))
    planned = state.get("total_epochs") or done
    best = m.get("best") or (
        {"monitor": None, "value": state.get("best_value"), "epoch": state.get("best_epoch")} if state.get("best_epoch") else None
    )
    timings = m.get("timings") or {}
    return {
        "run": str(folder),
        "name": folder.parent.name,
        "status": run_status(folder),
        "epochs": int(done or 0),
        "planned_epochs": int(planned or 0),
        "best": best,
        "model_epoch": m.get("model_epoch"),
        "final": m.get("final") or {},
        "test": m.get("test") or {},
        "duration_s": timings.get("total_s", state.get("elapsed_s")),
    }


def list_runs(where: Sequence[PathLike] = ("runs",)) -> list[dict[str, Any]]:
    """Every run under each of `where`, described (see describe_run)."""
    return [describe_run(r) for w in where for r in find_runs(w)]


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: obj}


def _config(folder: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def compare_runs(folders: Sequence[PathLike]) -> dict[str, Any]:
    """Two or more runs side by side: the config keys whose values differ
    (dotted, as --set takes them) and each run's results.

    Raises:
        RunError: fewer than two run folders, or one that is not a run.
    """
    runs = [Path(f) for f in folders]
    for r in runs:
        if not is_run_folder(r):
            raise RunError(f"{r} is not a run folder", hint="compare run folders such as runs/cnn_digits/1 runs/cnn_digits/2")
    flat = [_flatten(_config(r)) for r in runs]
    keys = sorted({k for f in flat for k in f})
    differ = {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1}
    return {"runs": [describe_run(r) for r in runs], "config_differences": differ}
