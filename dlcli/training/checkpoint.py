"""Resumable checkpoints: one consistent state per completed epoch.

Layout inside `<run>/checkpoints/`:

    epoch-0007.keras   the full model (weights and optimizer state)
    best.weights.h5    weights of the best epoch so far (when monitored)
    state.json         which epoch file is current, history so far, the
                       best-so-far monitor value, phase and RNG state

A new epoch file is written completely (temporary name, then rename)
before `state.json` is switched to it, and only then is the previous
epoch file removed. A process killed at any moment therefore leaves a
`state.json` that names a complete model file (the problem of
keras-team/keras#20463, where BackupAndRestore could leave a truncated
checkpoint as the only copy).
"""

from __future__ import annotations

import base64
import json
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dlcli.errors import RunError
from dlcli.runs import CHECKPOINT_DIR, atomic_path, atomic_write_json

STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"


@dataclass
class TrainState:
    """Everything besides the model needed to continue a run."""

    epoch: int = 0  # completed epochs (global, across phases)
    phase: int = 1
    history: dict[str, list[float]] = field(default_factory=dict)
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    model_file: Optional[str] = None
    rng: Optional[str] = None  # pickled python+numpy RNG state, base64
    elapsed_s: float = 0.0
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainState":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def capture_rng() -> str:
    """Python's and NumPy's global RNG state, serialised."""
    blob = pickle.dumps((random.getstate(), np.random.get_state()))
    return base64.b64encode(blob).decode("ascii")


def restore_rng(blob: Optional[str]) -> None:
    if not blob:
        return
    py_state, np_state = pickle.loads(base64.b64decode(blob))  # our own file
    random.setstate(py_state)
    np.random.set_state(np_state)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def save(run_dir: Path, model: Any, state: TrainState) -> None:
    """Write the model for `state.epoch`, then switch state.json to it."""
    ckdir = checkpoint_dir(run_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}.keras"
    with atomic_path(ckdir / name) as tmp:
        model.save(tmp)
    previous = read_state(run_dir)
    state.model_file = name
    state.rng = capture_rng()
    atomic_write_json(ckdir / STATE_FILE, state.to_json())
    # Only now is the older checkpoint redundant.
    if previous and previous.model_file and previous.model_file != name:
        (ckdir / previous.model_file).unlink(missing_ok=True)
    for stale in ckdir.glob("epoch-*.keras"):
        if stale.name != name:
            stale.unlink(missing_ok=True)


def save_best(run_dir: Path, model: Any) -> None:
    with atomic_path(checkpoint_dir(run_dir) / BEST_WEIGHTS, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def best_weights_path(run_dir: Path) -> Optional[Path]:
    p = checkpoint_dir(run_dir) / BEST_WEIGHTS
    return p if p.exists() else None


def read_state(run_dir: Path) -> Optional[TrainState]:
    p = checkpoint_dir(run_dir) / STATE_FILE
    if not p.exists():
        return None
    try:
        return TrainState.from_json(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise RunError(f"{p}: unreadable checkpoint state ({exc})") from None


def load_model(run_dir: Path, state: TrainState) -> Any:
    """Load the checkpointed model (weights and optimizer state)."""
    import keras

    path = checkpoint_dir(run_dir) / (state.model_file or "")
    if not state.model_file or not path.exists():
        raise RunError(f"{run_dir}: checkpoint {path.name} is missing", hint="the run cannot be resumed; start a new one")
    return keras.saving.load_model(path, safe_mode=True)
