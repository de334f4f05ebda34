"""Resumable checkpoints: one consistent state per completed epoch.

Layout inside `<run>/checkpoints/`:

    epoch-0007.weights.h5       model weights and optimizer state (Adam
                                moments, iteration count, learning rate)
    best-epoch-0005.weights.h5  weights of the best epoch so far (when a
                                monitor is set)
    callbacks-epoch-0007.npz    arrays held by user callbacks (EarlyStopping's
                                best weights), when there are any
    state.json                  which files are current, the epoch, history
                                so far, the best monitor value, the phase,
                                the state of every RNG and of user callbacks

Every file is written under a temporary name and renamed into place, and
`state.json` is switched to the new files only once they are complete;
files it no longer names are removed after that. A process killed at any
moment therefore leaves a `state.json` naming complete files (unlike
keras-team/keras#20463, where BackupAndRestore could leave a truncated
checkpoint as the only copy).

Nothing here unpickles or runs code from the run folder: the state is
JSON, weights are HDF5 and callback arrays load with `allow_pickle=False`,
so resuming a run folder from elsewhere is as safe as reading it.
"""

from __future__ import annotations

import base64
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from dlcli.errors import RunError
from dlcli.hdf5 import save_weights
from dlcli.runs import CHECKPOINT_DIR, atomic_path, atomic_write_json

STATE_FILE = "state.json"
FORMAT = 1
_WEIGHTS = "epoch-{:04d}.weights.h5"
_BEST = "best-epoch-{:04d}.weights.h5"
_CALLBACK_ARRAYS = "callbacks-epoch-{:04d}.npz"


@dataclass
class TrainState:
    """Everything besides the weights needed to continue a run.

    Attributes:
        epoch: completed epochs (global, across phases).
        phase: the training phase the checkpoint belongs to (1, or 2 while
            fine-tuning).
        total_epochs: the epochs the run was asked for when last saved.
        history: history.csv's columns so far.
        best_value / best_epoch: the monitor's best value and its epoch.
        weights_file / best_file / callbacks_file: current file names in
            `checkpoints/`.
        callbacks: per user callback, the scalar attributes that changed
            since `on_train_begin` (EarlyStopping's `wait`, `best`, ...).
        seed_states: Keras SeedGenerator states (dropout masks); `.keras`
            and `.weights.h5` files do not hold them.
        data_seed_states: states of the data pipeline's random layers
            (augmentation), where the DataBundle exposes them.
        rng: Python's and NumPy's global RNG states.
        elapsed_s: training time so far, across resumes.
        checkpoint_s: time spent writing checkpoints, across resumes.
        finished: the run completed (or stopped early) and wrote model.keras.
    """

    epoch: int = 0
    phase: int = 1
    total_epochs: int = 0
    history: dict[str, list[Any]] = field(default_factory=dict)
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    weights_file: Optional[str] = None
    best_file: Optional[str] = None
    callbacks_file: Optional[str] = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    seed_states: list[list[int]] = field(default_factory=list)
    data_seed_states: list[list[int]] = field(default_factory=list)
    rng: Optional[dict[str, Any]] = None
    elapsed_s: float = 0.0
    checkpoint_s: float = 0.0
    finished: bool = False
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (NaN history cells become null)."""
        d = dict(self.__dict__)
        d["history"] = {k: [_json_num(v) for v in col] for k, col in self.history.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainState":
        """Read a state written by `to_json` (unknown keys ignored)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        state = cls(**known)
        state.history = {k: [float("nan") if v is None else v for v in col] for k, col in state.history.items()}
        return state


def _json_num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# -- paths -----------------------------------------------------------------


def checkpoint_dir(run_dir: Path) -> Path:
    """`<run>/checkpoints/`."""
    return Path(run_dir) / CHECKPOINT_DIR


def weights_path(run_dir: Path, state: TrainState) -> Optional[Path]:
    """The current epoch's weights file, or None before the first epoch."""
    return checkpoint_dir(run_dir) / state.weights_file if state.weights_file else None


def best_weights_path(run_dir: Path, state: TrainState) -> Optional[Path]:
    """The best epoch's weights file, where one was recorded and exists."""
    if not state.best_file:
        return None
    p = checkpoint_dir(run_dir) / state.best_file
    return p if p.exists() else None


# -- RNG state -------------------------------------------------------------


def _pack(values: Any) -> str:
    # Compact, pickle-free: the raw little-endian uint64 words, base64.
    return base64.b64encode(np.asarray(values, dtype="<u8").tobytes()).decode("ascii")


def _unpack(text: str) -> list[int]:
    return np.frombuffer(base64.b64decode(text), dtype="<u8").tolist()


def capture_rng() -> dict[str, Any]:
    """Python's and NumPy's global RNG states as plain JSON data."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, _pack(internal), gauss],
        "numpy": [kind, _pack(keys), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(rng: Optional[dict[str, Any]]) -> None:
    """Set the global RNGs back to a `capture_rng()` state."""
    if not rng:
        return
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(_unpack(internal)), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(_unpack(keys), dtype=np.uint32), pos, has_gauss, cached))


def _extra_variables(model: Any) -> list[Any]:
    """Model state that weight files leave out: Keras SeedGenerator states
    (the dropout and random-layer RNGs), in a stable order."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def capture_seed_states(model: Any) -> list[list[int]]:
    """The SeedGenerator states of `model` as lists of ints."""
    return [np.asarray(v.numpy()).astype(np.int64).tolist() for v in _extra_variables(model)]


def restore_seed_states(model: Any, states: Sequence[Sequence[int]]) -> None:
    """Assign states captured by `capture_seed_states` back to `model`.

    Raises:
        RunError: the model has a different number of seed states.
    """
    variables = _extra_variables(model)
    if len(variables) != len(states):
        raise RunError(
            f"the checkpoint holds {len(states)} random-generator states but the model has {len(variables)}",
            hint="the model in config.yaml no longer matches the checkpoint",
        )
    for v, s in zip(variables, states):
        v.assign(np.asarray(s, dtype=v.dtype))


# -- user callback state ---------------------------------------------------


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, np.number))


def _is_array_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(a, np.ndarray) for a in v)


def callback_baseline(cb: Any) -> dict[str, Any]:
    """A callback's public scalar attributes right after `on_train_begin`."""
    return {k: v for k, v in vars(cb).items() if not k.startswith("_") and _is_scalar(v)}


def capture_callback_state(cb: Any, baseline: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """What a callback learnt during training.

    Kept: public attributes that are not constructor arguments (those come
    from the config again on resume, and a callback may rewrite them from
    its options, as MonitorCallback negates `min_delta`) and that changed
    since `on_train_begin`: `wait`, `best`, `cooldown_counter`,
    `best_epoch`, ... Lists of arrays (EarlyStopping's `best_weights`) are
    returned separately.
    """
    options = _constructor_arguments(cb)
    scalars: dict[str, Any] = {}
    arrays: dict[str, list[np.ndarray]] = {}
    for k, v in vars(cb).items():
        if k.startswith("_") or k in options:
            continue
        if _is_scalar(v) and (k not in baseline or not _same(baseline[k], v)):
            scalars[k] = v.item() if isinstance(v, np.number) else v
        elif _is_array_list(v):
            arrays[k] = v
    return scalars, arrays


def _constructor_arguments(cb: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(type(cb).__init__).parameters) - {"self"}
    except (TypeError, ValueError):
        return set()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _json_scalar(v: Any) -> Any:
    # JSON has no inf/nan: EarlyStopping's initial `best` can be inf.
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    return v


def _from_json_scalar(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"float"}:
        return float(v["float"])
    return v


def restore_callback_state(
    callbacks: Sequence[Any], saved: Sequence[dict[str, Any]], arrays: dict[str, np.ndarray]
) -> None:
    """Set user callbacks back to a captured state (matched by position and
    class name; a callback added or removed since is left as it is)."""
    for i, (cb, entry) in enumerate(zip(callbacks, saved)):
        if entry.get("class_name") != type(cb).__name__:
            continue
        for k, v in entry.get("scalars", {}).items():
            setattr(cb, k, _from_json_scalar(v))
        for k, n in entry.get("arrays", {}).items():
            setattr(cb, k, [arrays[f"cb{i}.{k}.{j}"] for j in range(n)])


# -- save / load -----------------------------------------------------------


def save(
    run_dir: Path,
    model: Any,
    state: TrainState,
    *,
    callbacks: Iterable[tuple[Any, dict[str, Any]]] = (),
    data_rng: Sequence[Any] = (),
) -> None:
    """Write the checkpoint for `state.epoch` and switch state.json to it.

    Args:
        run_dir: the run folder.
        model: the model, with its compiled optimizer.
        state: the state to save; its file names and RNG fields are updated.
        callbacks: (callback, baseline) pairs whose state to keep.
        data_rng: the data pipeline's RNG state variables (augmentation).
    """
    ckdir = checkpoint_dir(run_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    name = _WEIGHTS.format(state.epoch)
    save_weights(model, ckdir / name)

    entries: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for i, (cb, baseline) in enumerate(callbacks):
        scalars, cb_arrays = capture_callback_state(cb, baseline)
        entry: dict[str, Any] = {
            "class_name": type(cb).__name__,
            "scalars": {k: _json_scalar(v) for k, v in scalars.items()},
            "arrays": {k: len(v) for k, v in cb_arrays.items()},
        }
        for k, v in cb_arrays.items():
            for j, a in enumerate(v):
                arrays[f"cb{i}.{k}.{j}"] = a
        entries.append(entry)
    callbacks_file = None
    if arrays:
        callbacks_file = _CALLBACK_ARRAYS.format(state.epoch)
        with atomic_path(ckdir / callbacks_file, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    state.weights_file = name
    state.callbacks_file = callbacks_file
    state.callbacks = entries
    state.seed_states = capture_seed_states(model)
    state.data_seed_states = [np.asarray(v.numpy()).astype(np.int64).tolist() for v in data_rng]
    state.rng = capture_rng()
    write_state(run_dir, state)
    # Only now are older files redundant.
    prune(run_dir, state)


def write_state(run_dir: Path, state: TrainState) -> None:
    """Write state.json atomically (the commit point of a checkpoint)."""
    atomic_write_json(checkpoint_dir(run_dir) / STATE_FILE, state.to_json())


def save_best(run_dir: Path, model: Any, epoch: int) -> str:
    """Write the weights of a new best epoch; return the file name.

    The file becomes current when the next checkpoint's state.json names it.
    """
    name = _BEST.format(epoch)
    save_weights(model, checkpoint_dir(run_dir) / name)
    return name


def prune(run_dir: Path, state: TrainState, keep: Iterable[str] = ()) -> None:
    """Remove files in checkpoints/ that state.json does not name: older
    epochs, and temporary files of writes a killed process left behind."""
    ckdir = checkpoint_dir(run_dir)
    if not ckdir.is_dir():
        return
    wanted = {STATE_FILE, *(f for f in (state.weights_file, state.best_file, state.callbacks_file) if f), *keep}
    for p in ckdir.iterdir():
        if p.name not in wanted and p.is_file():
            p.unlink(missing_ok=True)


def read_state(run_dir: Path) -> Optional[TrainState]:
    """The run's checkpoint state, or None when it has none yet.

    Raises:
        RunError: state.json exists but cannot be read.
    """
    p = checkpoint_dir(run_dir) / STATE_FILE
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return TrainState.from_json(data)
    except (OSError, ValueError, TypeError) as exc:
        raise RunError(f"{p}: unreadable checkpoint state ({exc})", hint="the run cannot be resumed; start a new one") from None


def restore(run_dir: Path, model: Any, state: TrainState, *, data_rng: Sequence[Any] = ()) -> None:
    """Load the checkpoint's weights, optimizer state and RNG states into
    `model` (built and compiled from the run's config) and into the data
    pipeline's RNG variables `data_rng`.

    Raises:
        RunError: the checkpoint is missing, unreadable, or does not fit
            the model.
    """
    path = weights_path(run_dir, state)
    if path is None:
        return
    if not path.is_file():
        raise RunError(f"{run_dir}: checkpoint {path.name} is missing", hint="the run cannot be resumed; start a new one")
    if model.optimizer is not None and not model.optimizer.built:
        # An unbuilt optimizer silently skips its saved moments.
        model.optimizer.build(model.trainable_variables)
    _refuse_model_file(path)
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"{path}: the checkpoint does not fit the model of {run_dir}/config.yaml ({msg})",
            hint="resume with the run's own config; --set may not change the model",
        ) from None
    restore_seed_states(model, state.seed_states)
    if len(data_rng) == len(state.data_seed_states):
        for v, s in zip(data_rng, state.data_seed_states):
            v.assign(np.asarray(s, dtype=v.dtype))
    restore_rng(state.rng)


def _refuse_model_file(path: Path) -> None:
    """A legacy Keras model file where dlcli's weights checkpoint belongs:
    its config is never deserialized (a Lambda in it would be code), and a
    resume reads only the weights checkpoints dlcli writes.

    Raises:
        RunError: `path` holds a legacy HDF5 model, not a checkpoint.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except (OSError, ValueError):
        return  # unreadable: load_weights says so
    if config is None:
        return
    from dlcli.model.trust import current

    text = config.decode("utf-8", "replace") if isinstance(config, bytes) else str(config)
    code = "whose Lambda layer carries code" if '"Lambda"' in text else "that may carry code"
    if current().unsafe:
        raise RunError(f"{path}: a legacy Keras model file, not a checkpoint dlcli wrote: --resume cannot continue from it",
                       hint="train a new run; a legacy model is opened with dlcli evaluate/predict --unsafe")
    raise RunError(f"{path}: a legacy Keras model file {code}, not a checkpoint dlcli wrote; it is not opened "
                   "without --unsafe", hint="resume only run folders you trust; with --unsafe, --resume still "
                   "reads only dlcli's own weights checkpoints")


def load_callback_arrays(run_dir: Path, state: TrainState) -> dict[str, np.ndarray]:
    """The arrays user callbacks held at the checkpoint ({} if none)."""
    if not state.callbacks_file:
        return {}
    p = checkpoint_dir(run_dir) / state.callbacks_file
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise RunError(f"{p}: unreadable ({exc})") from None
