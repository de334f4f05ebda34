"""The end-of-training check that model.keras reloads as it was trained.

A user's layer can train perfectly and still leave a model file that
evaluate and predict cannot open (no `get_config`, an `__init__` argument
that `get_config` forgets, a class Keras cannot find). Train would exit 0
and the mistake surface days later. So, once model.keras is written, it is
loaded again the way evaluate loads it (safe mode, dlcli's loader and trust
policy) and its outputs are compared with the trained model's on one batch.
A difference is a TrainingError (exit 1) naming the layer and the fix; the
run's metrics.json records it under `reload`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from dlcli.errors import DlcliError, TrainingError
from dlcli.model._common import short_message

# Keras's and dlcli's own layers reload; user classes are what can fail.
_OWN = ("keras", "dlcli", "tensorflow", "tf_keras")
_FIX = "give {cls} a get_config() that returns every __init__ argument; see keras.io/guides/serialization_and_saving"


def check_reload(run_dir: Path, model: Any, data: Any, model_file: str = "model.keras") -> None:
    """Reload `run_dir/model_file` in safe mode and compare it with `model`.

    Args:
        run_dir: the run folder holding the saved model and metrics.json.
        model: the trained model that was saved.
        data: a tf.data dataset of batches (x, y[, w]) to compare on.
        model_file: the model's file name in the run folder.

    Raises:
        TrainingError: the file does not load, or its outputs differ;
            metrics.json says so under `reload`.
    """
    problem = _problem(run_dir / model_file, model, data)
    if problem is None:
        return
    cls, reason = problem
    message = f"{model_file} does not reload as trained: {reason}"
    hint = _FIX.format(cls=cls) if cls is not None else None
    _mark(run_dir, message, hint)
    raise TrainingError(message, hint=hint)


def _problem(path: Path, model: Any, data: Any) -> Optional[tuple[Optional[str], str]]:
    from dlcli.model import trust
    from dlcli.model.io import load_model

    import keras

    # The modules this run's config named (its dotted paths registered their
    # classes): the user trusts them, as they ran them to train.
    objects = [type(layer) for layer in _layers(model)] + list(keras.saving.get_custom_objects().values())
    modules = sorted({getattr(o, "__module__", None) or "builtins" for o in objects} - {"builtins"})
    modules = [m for m in modules if m.split(".")[0] not in _OWN]
    policy = trust.current()
    policy = trust.make_trust(policy.unsafe, [*policy.modules, *modules])
    try:
        loaded = load_model(path, compile=False, trust=policy)
    except DlcliError as exc:
        found = _culprit(model)
        return (found[0], f"{found[1]} ({short_message(exc)})") if found else (None, str(exc))
    x = _first_batch(data)
    if x is None:
        return None
    expected = [np.asarray(t) for t in _flat(model(x, training=False))]
    got = [np.asarray(t) for t in _flat(loaded(x, training=False))]
    tol = 1e-2 if any(e.dtype == np.float16 for e in expected) else 1e-4
    if len(expected) == len(got) and all(e.shape == g.shape and np.allclose(e, g, rtol=tol, atol=tol) for e, g in zip(expected, got)):
        return None
    found = _culprit(model)
    if found:
        return found[0], f"{found[1]}, so the reloaded model computes other outputs"
    return None, "the reloaded model computes other outputs on the same batch"


def _own(cls: type) -> bool:
    return str(cls.__module__).split(".")[0] in _OWN


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def _culprit(model: Any) -> Optional[tuple[str, str]]:
    """The first user layer whose config does not rebuild it: (its class, why)."""
    import keras

    for layer in _layers(model):
        cls = type(layer)
        if _own(cls):
            continue
        path = f"{cls.__module__}.{cls.__qualname__}"
        what = f"layer '{layer.name}' ({path})"
        try:
            config = keras.saving.serialize_keras_object(layer)
            clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
        except Exception as exc:  # noqa: BLE001 - why this layer cannot be rebuilt is the answer
            return path, f"{what} cannot be rebuilt from its get_config(): {short_message(exc, 200)}"
        for attr, value in vars(layer).items():
            if attr.startswith("_") or not isinstance(value, (bool, int, float, str, tuple)):
                continue
            other = getattr(clone, attr, None)
            if other != value:
                return path, f"{what} has {attr}={value!r}, but {other!r} after reloading: get_config() leaves it out"
    return None


def _first_batch(data: Any) -> Any:
    if data is None:
        return None
    for batch in data.take(1):
        return batch[0] if isinstance(batch, tuple) else batch
    return None


def _flat(outputs: Any) -> list[Any]:
    import keras

    return list(keras.tree.flatten(outputs))


def _mark(run_dir: Path, message: str, hint: Optional[str]) -> None:
    """Record the failed check in metrics.json (the run is not a good one)."""
    import json

    from dlcli.runs import atomic_write_json

    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    metrics["status"] = "failed"
    metrics["reload"] = {"ok": False, "error": message, "hint": hint}
    atomic_write_json(path, metrics)
