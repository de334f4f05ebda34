"""Turn what stops a fit into the right dlcli error.

Before the first batch has completed, a Keras or TensorFlow error means the
model, loss and data do not fit together: a config error (exit 2), and the
run folder is undone. Later, a failure is one while running (exit 1) and
the last good checkpoint stays, ready for `dlcli train --resume`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

from dlcli.errors import DlcliError, Interrupted, TrainingError
from dlcli.runs import MODEL_FILE, RunFolder, atomic_path
from dlcli.training import checkpoint as ckpt


def raise_failure(exc: BaseException, cfg: Any, spec: Any, folder: RunFolder, recorder: Any) -> NoReturn:
    """Raise the dlcli error for an exception out of fit.

    Raises:
        ConfigError: the first step failed (the run folder is undone).
        TrainingError: a later step failed, or a file could not be written.
        BaseException: `exc` itself when it is none of these (a bug).
    """
    import tensorflow as tf

    from dlcli.data.pipeline import raised_error

    exc = raised_error(exc) or exc  # a data error found mid-run, not TensorFlow's wrapping of it
    if isinstance(exc, OSError):
        raise write_error(exc, folder.path) from None
    keras_error = isinstance(exc, (ValueError, TypeError, tf.errors.OpError))
    if recorder.batches_done == 0 and (keras_error or isinstance(exc, DlcliError)):
        folder.undo()
        if isinstance(exc, DlcliError):
            raise exc
        key, what = _blame(exc)
        raise cfg.error(
            key,
            f"{what} does not fit the data{_describe_labels(spec)}: {keras_message(exc)}",
            hint={
                "compile.metrics": "choose metrics that take these labels",
                "compile.loss": "choose a loss that takes these labels, or change the last layer",
            }.get(key, "check the last layer's units and activation, the loss, and the input shape"),
        ) from None
    if keras_error or isinstance(exc, DlcliError):
        done = recorder.checkpointed_epoch
        raise TrainingError(
            f"training failed in epoch {recorder.state.epoch + 1}: {keras_message(exc) if keras_error else exc}; "
            + (f"the checkpoint of epoch {done} is kept in {folder.path}" if done else
               f"no epoch had completed, so there is no checkpoint in {folder.path}"),
            hint=f"fix the cause, then: dlcli train --resume {folder.path}" if done else "fix the cause, then train again",
        ) from None
    raise exc


def raise_stop(recorder: Any, cfg: Any, model: Any, folder: RunFolder, monitor: Optional[str]) -> NoReturn:
    """Raise the error for a fit that the recorder stopped: a misspelt
    monitor (exit 2, nothing kept), a signal (exit 130) or a non-finite
    loss (exit 1)."""
    run_dir, state = folder.path, recorder.state
    if recorder.bad_monitor is not None:
        folder.undo()
        from dlcli.config.suggest import did_you_mean

        close = did_you_mean(monitor or "", recorder.bad_monitor)
        raise cfg.error(
            "train.monitor",
            f"{monitor!r} is not a metric of this run",
            hint=(f"{close} " if close else "") + f"the metrics are {', '.join(recorder.bad_monitor)}",
        )
    if recorder.interrupted:
        done = recorder.checkpointed_epoch
        kept = f"the checkpoint of epoch {done} is kept" if done else "no epoch had completed"
        raise Interrupted(
            f"training interrupted ({recorder.interrupted}) in epoch {state.epoch + 1}; {kept} in {run_dir}",
            hint=f"continue with: dlcli train --resume {run_dir}",
        )
    ep, first, last, loss = recorder.diverged
    if not last:
        where = f"the end of epoch {ep}"
    elif first == last:
        where = f"epoch {ep}, batch {last}"
    else:
        # Keras ran these batches in one call (compile.steps_per_execution).
        where = f"epoch {ep}, in batches {first}-{last}"
    kept = _keep_last_good_model(model, run_dir, recorder.checkpointed_epoch)
    raise TrainingError(
        f"training diverged: the loss became {loss} at {where}; {kept}",
        hint="lower the learning rate (--set compile.optimizer.config.learning_rate=...) or check the data for NaN/inf",
    )


def write_error(exc: OSError, run_dir: Path) -> TrainingError:
    """The error for a run file that could not be written (exit 1)."""
    where = exc.filename or run_dir
    return TrainingError(
        f"cannot write {where}: {exc.strerror or exc}; the files written before are intact",
        hint=f"free space or fix permissions, then: dlcli train --resume {run_dir}",
    )


def _blame(exc: BaseException) -> tuple[str, str]:
    """Which part of the config a first-step failure comes from: the
    innermost Keras module in the traceback (Python's, or the graph
    traceback TensorFlow puts in its message) says metric, loss or model.

    Returns:
        (config key, words for the message).
    """
    import re
    import traceback

    files = [f.filename for f in traceback.extract_tb(exc.__traceback__)]
    files += re.findall(r'File "([^"]+)"', str(exc))
    for name in reversed(files):
        path = name.replace("\\", "/")
        if "/keras/src/metrics/" in path:
            return "compile.metrics", "a metric"
        if "/keras/src/losses/" in path:
            return "compile.loss", "the loss"
        if "/keras/src/layers/" in path or "/keras/src/models/" in path:
            return "model", "the model"
    return "model", "the model, loss or metrics"


def _describe_labels(spec: Any) -> str:
    mode, n = spec.label_mode, spec.num_classes
    kinds = {"int": "class indices", "onehot": "one-hot rows", "binary": "0/1 labels", "float": "numbers"}
    if mode not in kinds:
        return ""
    return f" ({kinds[mode]}" + (f", {n} classes)" if n and mode != "float" else ")")


def keras_message(exc: BaseException) -> str:
    """The informative line of a Keras/TensorFlow error message.

    Keras wraps layer errors in "Exception encountered when calling ..."
    and argument dumps; TensorFlow runtime errors carry a traceback of the
    graph and node names. Both hide the one line a user needs.
    """
    import tensorflow as tf

    text = exc.message if isinstance(exc, tf.errors.OpError) else str(exc)
    noise = (
        "exception encountered",
        "arguments received",
        "graph execution error",
        "detected at node",
        "defined at (most recent call last)",
        "call arguments received",
        "•",
        "file ",
        "[[",
        "[op:",
    )
    lines = [ln.strip() for ln in text.splitlines()]
    useful = [ln for ln in lines if ln and not ln.lower().startswith(noise) and not ln.startswith(("<", "File"))]
    if isinstance(exc, tf.errors.OpError):
        # The runtime's own message comes last, after the node's traceback.
        useful = [ln for ln in useful if not ln.startswith(("File", "line"))] or useful
        msg = useful[-1] if useful else type(exc).__name__
    else:
        msg = useful[0] if useful else type(exc).__name__
    return msg.split("\t")[0].strip().rstrip(".")


def _keep_last_good_model(model: Any, run_dir: Path, checkpointed: int) -> str:
    """After divergence: model.keras becomes the last good checkpoint's
    model. Returns what was kept, for the message."""
    if checkpointed == 0:
        return f"no epoch had completed, so no model was kept (run folder {run_dir})"
    disk = ckpt.read_state(run_dir)
    path = ckpt.weights_path(run_dir, disk) if disk else None
    if path is None or not path.is_file():
        return f"the checkpoint of epoch {checkpointed} is kept in {run_dir}"
    try:
        model.load_weights(path)
        with atomic_path(run_dir / MODEL_FILE) as tmp:
            model.save(tmp)
    except OSError as exc:
        raise write_error(exc, run_dir) from None
    return f"the last good checkpoint (epoch {checkpointed}) and its model.keras are kept in {run_dir}"
