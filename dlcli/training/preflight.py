"""Checks made before a run folder exists: what would only fail mid-run.

Keras accepts some configs and fails (or silently does nothing) once
training runs: a CSVLogger writing into a folder that does not exist, an
EarlyStopping watching a metric the model never logs, `patience: "3"`, a
NaN learning rate or class weight, a target with one class. `check` finds
them after the model is compiled and before anything is written, and
reports each as a config error at its file, line and key (exit 2). Where
only Keras knows the answer (the names of the metrics the compiled model
logs) Keras is asked, on one batch of zeros: the data is not touched, so
the run and its resume see exactly the batches they would have.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli.errors import RunError
from dlcli.runs import CONFIG_FILE, DATA_SPEC_FILE

# Keras's own callbacks add these to the epoch logs.
_EXTRA_LOGS = {"learning_rate", "lr"}
_CLASSIFICATION = ("classification", "binary")


def check_data(cfg: Any, bundle: Any, resume: Optional[Path] = None) -> None:
    """What the loaded data alone shows, before the model is built; for a
    resumed run, data files that changed since it started are reported
    (in `bundle.notes`: shown before training, kept in metrics.json).

    Raises:
        ConfigError: a classification target with a single class.
    """
    if resume is not None:
        bundle.notes.extend(changed_data(resume, cfg))
    n = bundle.num_classes
    if bundle.task in _CLASSIFICATION and n is not None and n < 2:
        names = ", ".join(map(str, bundle.class_names or [])) or "one value"
        raise cfg.error("data.target", f"the target has a single class ({names}): there is nothing to tell apart",
                        hint="check data.target and the data's labels")


def check(cfg: Any, model: Any, bundle: Any, callbacks: Sequence[Any]) -> None:
    """Everything else that would fail after the run folder is created.

    Args:
        cfg: the validated Config.
        model: the compiled model.
        bundle: the loaded data (DataBundle).
        callbacks: the callbacks built from `train.callbacks`, in order.

    Raises:
        ConfigError: at the key to change.
    """
    _check_learning_rate(cfg, model)
    _check_class_weight(cfg)
    entries = _callback_entries(cfg)
    for (key, name, kwargs), callback in zip(entries, callbacks):
        _check_arguments(cfg, key, name, kwargs, type(callback))
        _check_log_file(cfg, key, name, kwargs)
    monitors = [(f"{key}.{name}.monitor", kw["monitor"]) for key, name, kw in entries if isinstance(kw.get("monitor"), str)]
    if cfg.train.monitor:
        monitors.append(("train.monitor", cfg.train.monitor))
    if monitors:
        _check_monitors(cfg, model, bundle, monitors)


def _callback_entries(cfg: Any) -> list[tuple[str, str, dict[str, Any]]]:
    from dlcli.config.graph import parse_entry

    out = []
    for i, raw in enumerate(cfg.train.callbacks or []):
        key = f"train.callbacks.{i}"
        entry = parse_entry(raw, key, cfg=cfg, what="callback", graph=False)
        out.append((key, entry.class_name, dict(entry.kwargs)))
    return out


def _check_learning_rate(cfg: Any, model: Any) -> None:
    """A NaN, infinite or negative learning rate, or one that stays 0.

    A schedule is asked at its first step and at the steps its config
    names (warmup, decay): 0 at the start is legitimate when it rises
    later (a warmup from 0), refused when it never leaves 0. A schedule
    that grows past float range later on is left to the divergence guard,
    which names the epoch and batch where the loss stops being finite (a
    short run may never reach that step).
    """
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return
    schedule = getattr(optimizer, "_learning_rate", None)
    try:
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in _schedule_steps(schedule)]
        else:
            rates = [float(keras.ops.convert_to_numpy(optimizer.learning_rate))]
    except Exception:  # noqa: BLE001 - a schedule that cannot be asked ahead: fit reports what it does
        return
    bad = next((lr for lr in rates if math.isnan(lr) or lr < 0), None)
    if bad is None and math.isinf(rates[0]):
        bad = rates[0]
    if bad is None and max(rates) > 0:
        return
    lr = rates[0] if bad is None else bad
    where = "" if len(rates) == 1 else (" and stays 0" if bad is None else " in the schedule")
    raise cfg.error("compile.optimizer", f"the learning rate is {lr}{where}; it must be a finite number above 0",
                    hint="e.g. {class_name: adam, config: {learning_rate: 0.001}}; a schedule may start at 0 "
                    "only to warm up (CosineDecay's warmup_target)")


def _schedule_steps(schedule: Any) -> list[int]:
    """Steps at which to ask a schedule: its start, the steps its config
    names (warmup_steps, decay_steps, boundaries) and a few beyond."""
    steps = {0, 1, 10, 100, 1000, 10000}
    try:
        config = schedule.get_config()
    except (NotImplementedError, AttributeError, TypeError):
        config = {}
    for key in ("warmup_steps", "decay_steps", "first_decay_steps", "boundaries"):
        values = config.get(key)
        for v in values if isinstance(values, (list, tuple)) else [values]:
            if isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1e12:
                steps |= {int(v), int(v) + 1}
    return sorted(steps)


def _check_class_weight(cfg: Any) -> None:
    weights = cfg.train.class_weight
    if not isinstance(weights, dict):
        return
    for cls, w in weights.items():
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise cfg.error(f"train.class_weight.{cls}", f"class weight {w!r} is not a finite number of at least 0")


def _check_arguments(cfg: Any, key: str, name: str, kwargs: dict[str, Any], cls: type) -> None:
    """A value of the wrong kind where the callback's default says which
    (`patience: "3"` for an int): Keras only fails on it mid-run."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    for arg, value in kwargs.items():
        default = params[arg].default if arg in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or default is None or value is None:
            continue
        number = isinstance(default, (int, float)) and not isinstance(default, bool)
        if number and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise cfg.error(f"{key}.{name}.{arg}", f"{arg} must be a number, got {value!r}",
                            hint=f"write it without quotes, e.g. {arg}: {default}")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise cfg.error(f"{key}.{name}.{arg}", f"{arg} must be true or false, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise cfg.error(f"{key}.{name}.{arg}", f"{arg} must be a finite number, got {value!r}")


def _check_log_file(cfg: Any, key: str, name: str, kwargs: dict[str, Any]) -> None:
    """A callback that writes a file (CSVLogger's filename) needs its folder."""
    for arg in ("filename", "filepath"):
        value = kwargs.get(arg)
        if not isinstance(value, str):
            continue
        folder = Path(value).expanduser().parent
        if not folder.is_dir():
            raise cfg.error(f"{key}.{name}.{arg}", f"the folder {str(folder)!r} of {value!r} does not exist",
                            hint="create it first, or write the file into an existing folder")


def _check_monitors(cfg: Any, model: Any, bundle: Any, monitors: list[tuple[str, str]]) -> None:
    logged = logged_metric_names(model, bundle)
    if logged is None:
        return  # Keras could not say: the first epoch's check reports it
    import difflib

    for key, monitor in monitors:
        if monitor in logged or monitor in _EXTRA_LOGS:
            continue
        close = difflib.get_close_matches(monitor, sorted(logged), n=1)
        raise cfg.error(key, f"{monitor!r} is not a metric of this run",
                        hint=(f"did you mean {close[0]!r}? " if close else "") + f"the metrics are {', '.join(sorted(logged))}")


def logged_metric_names(model: Any, bundle: Any) -> Optional[set[str]]:
    """The names fit will log for `model` (and `val_` ones with validation
    data), asked of Keras on one batch of zeros; None where that fails."""
    import tensorflow as tf

    if "MultiWorker" in type(getattr(model, "distribute_strategy", None)).__name__:
        return None  # one worker alone must not run a collective step
    spec = bundle.train.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        return None

    def zeros(s: Any) -> Any:
        shape = [1] + [d if d is not None else 1 for d in s.shape[1:]]
        return tf.fill(shape, "") if s.dtype == tf.string else tf.zeros(shape, s.dtype)

    x, y = (tf.nest.map_structure(zeros, s) for s in spec[:2])
    try:
        names = set(model.test_on_batch(x, y, return_dict=True))
    except Exception:  # noqa: BLE001 - any model Keras cannot run on zeros: fit reports it
        return None
    finally:
        model.reset_metrics()
    if bundle.val is not None:
        names |= {f"val_{n}" for n in names}
    return names


# -- resume: what changed since the run started -------------------------------

_DATA_KEYS = ("path", "validation_path", "test_path", "masks")


def fingerprint(cfg: Any, config_text: str) -> dict[str, str]:
    """sha256 of the config.yaml text written and of each data path."""
    out = {CONFIG_FILE: hashlib.sha256(config_text.encode("utf-8")).hexdigest()}
    for key in _DATA_KEYS:
        value = getattr(cfg.data, key, None)
        if isinstance(value, str) and Path(value).expanduser().exists():
            out[f"data.{key}"] = _digest(Path(value).expanduser())
    return out


def _digest(path: Path) -> str:
    """A file's content hash; a folder's hash over its files' names, sizes
    and modification times (reading every image would cost a pass)."""
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            st = p.stat()
            h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _recorded(run_dir: Path) -> dict[str, str]:
    try:
        spec = json.loads((run_dir / DATA_SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = spec.get("fingerprint") if isinstance(spec, dict) else None
    return found if isinstance(found, dict) else {}


def check_config_unedited(run_dir: Path) -> None:
    """--resume continues a run with the config it was trained with: a
    config.yaml edited since is refused (runs older than fingerprints pass).

    Raises:
        RunError: config.yaml is not the file dlcli wrote.
    """
    want = _recorded(run_dir).get(CONFIG_FILE)
    if want is None:
        return
    try:
        text = (run_dir / CONFIG_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != want:
        raise RunError(
            f"cannot resume {run_dir}: its {CONFIG_FILE} was edited after the run started, and a resumed run "
            "trains on the config it was started with",
            hint=f"undo the edit; change epochs with --epochs, or train the edited config as a new run: "
            f"dlcli train {run_dir / CONFIG_FILE}",
        )


def changed_data(run_dir: Path, cfg: Any) -> list[str]:
    """Notes naming each data path whose content changed since the run started."""
    recorded = _recorded(run_dir)
    now = fingerprint(cfg, "")
    return [f"{getattr(cfg.data, key.split('.', 1)[1])} ({key}) changed since the run started; "
            "training continues on it as it is now"
            for key, digest in recorded.items() if key != CONFIG_FILE and now.get(key, digest) != digest]
