"""Fit a model described by a config and write its run folder.

The order of work keeps two promises of the run-folder contract:

* Bad input writes nothing. The data is loaded, the model built, compiled
  and checked against the data before the run folder is created, and a
  model that fails on its very first batch (a loss that does not fit the
  labels) removes the folder again and is reported as a config error.
* Nothing is lost. After every epoch a checkpoint (weights, optimizer
  state, RNG and callback state, history) is committed atomically; a run
  killed at any moment continues with `dlcli train --resume RUN` and sees
  the same batches in the same order as a run that was never stopped.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli import __version__
from dlcli.errors import DlcliError, Interrupted, RunError, TrainingError
from dlcli.runs import (
    CONFIG_FILE,
    DATA_SPEC_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PLOTS_DIR,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_run_name,
    new_run_dir,
)
from dlcli.training import checkpoint as ckpt
from dlcli.training import preflight


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run folder.
        metrics: what metrics.json holds.
        history: history.csv's columns.
        resumed: the run continued an earlier one.
    """

    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    resumed: bool = False


def train(
    cfg: Any,
    *,
    output: str | Path = "runs",
    name: Optional[str] = None,
    resume: Optional[str | Path] = None,
    progress: str = "auto",
    console: Any = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train the model of `cfg` and write a run folder.

    Args:
        cfg: a validated `dlcli.config.Config`.
        output: the root holding run folders (`<output>/<name>/<N>/`).
        name: the run name (default: the config's name).
        resume: a run folder to continue in place from its last checkpoint;
            `cfg` must then be that run's config (epochs may be raised).
        progress: auto | progress | lines | none (where progress goes, on
            stderr).
        console: a Rich console for progress bars.
        callbacks: extra Keras callbacks, called after the run's own each
            epoch (`dlcli tune` reports to Optuna and prunes with one).

    Returns:
        A TrainResult with the run folder, final metrics and history.

    Raises:
        ConfigError, DataError: bad config or data (exit 2, nothing written).
        RunError: a run folder that cannot be resumed or written (exit 2).
        TrainingError: the loss diverged, the data failed mid-run or a file
            could not be written (exit 1; the last good checkpoint is kept).
        Interrupted: SIGINT/SIGTERM (exit 130; resumable checkpoint kept).
    """
    t_start = time.perf_counter()
    resume_dir = Path(resume) if resume is not None else None
    state = _resume_state(resume_dir, cfg) if resume_dir is not None else None
    if resume_dir is None:
        _check_output_root(output)
        # A run name never leaves --output (dlcli.runs.check_run_name).
        check_run_name(name or cfg.name or "run", cfg=cfg, key="--name" if name else "name")

    import keras

    from dlcli.data import load_data
    from dlcli.model import build_callbacks, build_model, compile_model
    from dlcli.model.adapt import adapt_model
    from dlcli.training.callbacks import RunRecorder, SignalGuard
    from dlcli.training.progress import Progress, describe_data, loading
    from dlcli.training import tracking
    from dlcli.training.record import early_stopping_monitor, restored_epoch
    from dlcli.training.distribute import get_strategy, run_fit, scale_learning_rate, steps_per_epoch

    # A fresh Keras state makes a run in a long-lived process (the Python
    # API, tests) start exactly like one in a new process.
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    policy = cfg.train.mixed_precision
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)

    strategy, is_chief = get_strategy(cfg)
    t0 = time.perf_counter()
    shown = _progress_mode(progress, cfg) if is_chief else "none"
    with loading(shown, console):
        bundle = load_data(cfg)
    t_data = time.perf_counter() - t0
    preflight.check_data(cfg, bundle, resume_dir)  # a single class; data changed since a resumed run started
    if shown != "none":
        # What was found and what the data check skipped, before training
        # starts (also kept in metrics.json's data section).
        for line in [describe_data(bundle), *(f"data: {n}" for n in bundle.notes)]:
            print(line, file=sys.stderr, flush=True)
    phases = _phases(cfg)
    total = phases[-1][1]

    with strategy.scope():
        model = build_model(cfg, bundle.input_shape, num_classes=bundle.num_classes)
        model = bundle.attach(model)  # raw-row preprocessing in front (CSV / Parquet)
        check_output_matches_data(model, cfg, bundle.spec)
        adapt_model(model, bundle)  # preprocessing layers learn their state before fit
        compile_model(model, cfg, steps_per_epoch=steps_per_epoch(bundle.train, strategy))
        scale_learning_rate(model, strategy, cfg)
        if state is not None and state.phase > 1:
            _enter_fine_tune_phase(model, cfg)
        if state is not None:
            ckpt.restore(resume_dir, model, state, data_rng=_data_rng(bundle))
        user_callbacks = build_callbacks(cfg)
    tracking.check(cfg, user_callbacks)  # a missing package: exit 2, nothing written
    # Iterates the training data once: done before the data order is
    # positioned for a resumed epoch, identically in every run.
    class_weight = _class_weight(cfg, bundle)
    monitor = _monitor(cfg, bundle)
    preflight.check(cfg, model, bundle, user_callbacks)  # what would fail mid-run: a config error now

    # Everything the user could have got wrong is checked: now write.
    resuming_unfinished = state is not None and not state.finished
    if state is None:
        state = ckpt.TrainState()
    run_dir, created, old_files = _open_run_folder(cfg, bundle, output, name, resume_dir, is_chief, state)
    state.total_epochs = total
    state.finished = False
    if len(phases) > 1 and state.history.get("epoch") and "phase" not in state.history:
        # A one-phase run extended into fine-tuning: its rows were phase 1.
        epochs_done = state.history["epoch"]
        state.history = {
            "epoch": epochs_done,
            "phase": [_phase_of(phases, int(e) - 1) for e in epochs_done],
            **{k: v for k, v in state.history.items() if k != "epoch"},
        }

    _position_training_data(bundle.train, model, state, phases, strategy)

    recorder = RunRecorder(
        run_dir,
        state,
        monitor=monitor,
        keep_best=bool(cfg.train.monitor),
        checkpoint_every=cfg.train.checkpoint_every,
        last_epoch=total,
        user_callbacks=user_callbacks,
        # Extending a finished run starts its callbacks afresh: an
        # EarlyStopping that stopped it would otherwise stop it at once.
        restore_callbacks=(state.callbacks, ckpt.load_callback_arrays(run_dir, state))
        if resuming_unfinished and state.callbacks
        else None,
        extra_columns=(lambda e: {"phase": _phase_of(phases, e)}) if len(phases) > 1 else None,
        has_validation=bundle.val is not None,
        data_rng=_data_rng(bundle),
    )
    trackers = tracking.callbacks(cfg, run_dir, user_callbacks)
    progress_cb = Progress(_progress_mode(progress, cfg), total, steps_per_epoch(bundle.train, strategy), console, recorder)
    failure: Optional[BaseException] = None

    with SignalGuard(recorder):
        for phase_no, (start, end) in enumerate(phases, start=1):
            if state.epoch >= end:
                continue
            if recorder.stop_reason:
                break
            if phase_no > 1 and state.phase < phase_no:
                with strategy.scope():
                    _enter_fine_tune_phase(model, cfg)
                state.phase = phase_no
            try:
                with warnings.catch_warnings():
                    # Keras warns that fit's default shuffle=True is ignored
                    # for a tf.data dataset: dlcli's pipeline shuffles.
                    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
                    run_fit(
                        model,
                        strategy,
                        bundle.train,
                        validation_data=bundle.val,
                        epochs=end,
                        initial_epoch=max(state.epoch, start),
                        callbacks=[*user_callbacks, *trackers, recorder, progress_cb, *callbacks],
                        class_weight=class_weight,
                        verbose=0,
                        per_replica_batch=cfg.data.batch_size,
                    )
            except KeyboardInterrupt:
                recorder.interrupted = recorder.interrupted or "SIGINT"
            except Exception as exc:  # noqa: BLE001 - sorted out just below
                failure = exc
                break
            if recorder.stop_reason:
                break
            if model.stop_training and state.epoch < end:
                if phase_no == len(phases):
                    break
                model.stop_training = False  # early stopping ends this phase, not the fine-tune

    if failure is not None or recorder.stop_reason:
        tracking.finish(trackers, ok=False)
    if failure is not None:
        _raise_failure(failure, cfg, bundle.spec, run_dir, recorder, state, created, old_files)
    if recorder.stop_reason:
        _raise_stop(recorder, cfg, model, run_dir, state, monitor, created, old_files)
    try:
        metrics = _finish(
            model, cfg, bundle, run_dir, state, monitor, phases, strategy, (t_start, t_data),
            restored=(restored_epoch(user_callbacks), early_stopping_monitor(user_callbacks)),
        )
    except OSError as exc:
        tracking.finish(trackers, ok=False)
        raise _write_error(exc, run_dir) from None
    if is_chief:  # model.keras must reload as trained (exit 1 and metrics.json's reload if not)
        from dlcli.model.reload import check_reload

        check_reload(run_dir, model, bundle.val if bundle.val is not None else bundle.train)
    tracking.finish(trackers, ok=True)
    if not is_chief and resume_dir is None:
        # A non-chief worker's folder was scratch space: the chief's run
        # folder is the run's record.
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return TrainResult(run_dir=run_dir, metrics=metrics, history=state.history, resumed=resume_dir is not None)


def _finish(
    model: Any,
    cfg: Any,
    bundle: Any,
    run_dir: Path,
    state: ckpt.TrainState,
    monitor: Optional[str],
    phases: list[tuple[int, int]],
    strategy: Any,
    times: tuple[float, float],
    restored: tuple[Optional[int], Optional[str]] = (None, None),
) -> dict[str, Any]:
    """Write model.keras, metrics.json, history and plots of a completed run;
    mark the checkpoint finished last, so a run killed in here is resumed
    (and finished) rather than taken as done."""
    from dlcli.training.callbacks import write_history
    from dlcli.training.distribute import describe_strategy, run_evaluate
    from dlcli.training.record import model_record

    total = phases[-1][1]
    # The last epoch's checkpoint (not the best epoch's weights) stays the
    # one to extend from; model.keras gets the best weights where the
    # config names a monitor.
    best = ckpt.best_weights_path(run_dir, state) if cfg.train.monitor else None
    # The weights in memory: the last epoch's, or those an EarlyStopping
    # with restore_best_weights put back when fit ended.
    held = restored[0] or state.epoch
    if best is not None and state.best_epoch and state.best_epoch != held:
        model.load_weights(best)
    record = model_record(
        last_epoch=state.epoch, monitor_key=cfg.train.monitor if best is not None else None,
        best_epoch=state.best_epoch, best_value=state.best_value,
        restored=restored[0], restored_monitor=restored[1], history=state.history,
    )
    model_epoch = record["epoch"]
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        model.save(tmp)

    test_metrics: dict[str, float] = {}
    if bundle.test is not None:
        test_metrics = run_evaluate(model, strategy, bundle.test, per_replica_batch=cfg.data.batch_size)
    write_history(run_dir, state.history)
    epochs_run = len(state.history.get("epoch", []))
    metrics = {
        "name": cfg.name,
        "run_dir": str(run_dir),
        "epochs_completed": state.epoch,
        "stopped_early": state.epoch < total,
        "test": test_metrics,
        "final": {k: _num(v[-1]) for k, v in state.history.items() if k not in ("epoch", "phase") and v},
        "best": {"monitor": monitor, "value": state.best_value, "epoch": state.best_epoch} if monitor else None,
        "model_epoch": model_epoch,
        "model": record,
        "class_names": bundle.class_names,
        "task": bundle.task,
        "data": {
            "source": cfg.data.source,
            "num_train": bundle.num_train,
            "num_val": bundle.num_val,
            "num_test": bundle.num_test,
            "input_shape": list(bundle.input_shape),
            "notes": bundle.notes,
        },
        "params": {
            "total": int(model.count_params()),
            "trainable": int(sum(_size(w) for w in model.trainable_weights)),
        },
        "distribution": describe_strategy(strategy, cfg),
        "timings": {
            "total_s": round(time.perf_counter() - times[0], 3),
            "load_data_s": round(times[1], 3),
            "train_s": round(state.elapsed_s, 3),
            "epoch_s": round(state.elapsed_s / max(1, epochs_run), 3),
            "checkpoint_s_per_epoch": round(state.checkpoint_s / max(1, epochs_run), 4),
        },
        "versions": versions(),
    }
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    try:
        from dlcli.report import plot_history

        boundary = phases[0][1] if len(phases) > 1 else None
        plot_history(state.history, run_dir / PLOTS_DIR / "history.png", title=cfg.name, phase_boundary=boundary,
                     model_epoch=model_epoch)
    except ImportError:
        pass
    state.finished = True
    ckpt.write_state(run_dir, state)
    return metrics


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _size(w: Any) -> int:
    n = 1
    for d in w.shape:
        n *= int(d)
    return n


def versions() -> dict[str, str]:
    """Library versions recorded in metrics.json."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "dlcli": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _open_run_folder(
    cfg: Any,
    bundle: Any,
    output: str | Path,
    name: Optional[str],
    resume_dir: Optional[Path],
    is_chief: bool,
    state: ckpt.TrainState,
) -> tuple[Path, list[Path], dict[str, Optional[bytes]]]:
    """Create (or reopen, to resume) the run folder and write config.yaml
    and data_spec.json.

    Returns:
        (run folder, folders created for it, files a resumed run had
        before: put back if it fails at its first step).

    Raises:
        RunError: the folder cannot be created or written.
    """
    created: list[Path] = []
    old_files: dict[str, Optional[bytes]] = {}
    if resume_dir is not None:
        run_dir = resume_dir
        old_files = {f: _read_bytes(run_dir / f) for f in (CONFIG_FILE, DATA_SPEC_FILE)}
    elif is_chief:
        run_dir, created = _create_run_dir(output, name or cfg.name or "run")
    else:
        import tempfile

        run_dir = Path(tempfile.mkdtemp(prefix="dlcli-worker-"))
    try:
        text = cfg.to_yaml()
        atomic_write_text(run_dir / CONFIG_FILE, text)
        spec = bundle.spec.copy_with(fingerprint=preflight.fingerprint(cfg, text))  # --resume compares it
        atomic_write_json(run_dir / DATA_SPEC_FILE, spec.to_json())
        if resume_dir is not None:
            _tidy_resumed_folder(run_dir, state)
    except OSError as exc:
        _remove_created(created)
        raise RunError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}", hint="choose another --output") from None
    return run_dir, created, old_files


def _raise_stop(
    recorder: Any,
    cfg: Any,
    model: Any,
    run_dir: Path,
    state: ckpt.TrainState,
    monitor: Optional[str],
    created: list[Path],
    old_files: dict[str, Optional[bytes]],
) -> None:
    """Raise the error for a fit that the recorder stopped: a misspelt
    monitor (exit 2, nothing kept), a signal (exit 130) or a non-finite
    loss (exit 1)."""
    if recorder.bad_monitor is not None:
        _undo_start(run_dir, created, old_files)
        import difflib

        close = difflib.get_close_matches(monitor or "", recorder.bad_monitor, n=1)
        raise cfg.error(
            "train.monitor",
            f"{monitor!r} is not a metric of this run",
            hint=(f"did you mean {close[0]!r}? " if close else "") + f"the metrics are {', '.join(recorder.bad_monitor)}",
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
    kept = _keep_last_good_model(model, run_dir, state, recorder.checkpointed_epoch)
    raise TrainingError(
        f"training diverged: the loss became {loss} at {where}; {kept}",
        hint="lower the learning rate (--set compile.optimizer.config.learning_rate=...) or check the data for NaN/inf",
    )


# -- resume ----------------------------------------------------------------


def _resume_state(run_dir: Path, cfg: Any) -> ckpt.TrainState:
    """The state to continue `run_dir` from (checked before any work).

    A run folder killed before its first checkpoint has config.yaml and
    data_spec.json but no state: it starts over in place.

    Raises:
        RunError: not a run folder, unreadable, or nothing left to train.
    """
    if not run_dir.is_dir():
        raise RunError(f"cannot resume {run_dir}: no such run folder", hint="pass a run folder such as runs/cnn_digits/1")
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / DATA_SPEC_FILE).is_file():
        raise RunError(
            f"cannot resume {run_dir}: not a dlcli run folder (no {CONFIG_FILE} and {DATA_SPEC_FILE})",
            hint="pass a run folder such as runs/cnn_digits/1",
        )
    preflight.check_config_unedited(run_dir)
    state = ckpt.read_state(run_dir)
    if state is None:
        if (run_dir / MODEL_FILE).exists():
            raise RunError(f"cannot resume {run_dir}: it has a {MODEL_FILE} but no checkpoints/", hint="train a new run")
        return ckpt.TrainState()
    total = _total_epochs(cfg)
    if state.finished and total <= max(state.total_epochs, state.epoch):
        planned = max(state.total_epochs, state.epoch)
        raise RunError(
            f"cannot resume {run_dir}: it already finished ({state.epoch} of {planned} epochs)",
            hint=f"pass --epochs larger than {planned} to train it further",
        )
    if state.epoch > total:
        raise RunError(
            f"cannot resume {run_dir} for {total} epochs: it has completed {state.epoch}",
            hint=f"pass --epochs larger than {state.epoch}",
        )
    return state


def _tidy_resumed_folder(run_dir: Path, state: ckpt.TrainState) -> None:
    """Remove what a killed process left half-done: temporary files of
    interrupted writes, checkpoint files state.json does not name, history
    rows past the checkpoint."""
    ckpt.prune(run_dir, state)
    stems = {Path(f).name.split(".")[0] for f in (CONFIG_FILE, MODEL_FILE, HISTORY_FILE, METRICS_FILE, DATA_SPEC_FILE)}
    for folder in (run_dir, run_dir / PLOTS_DIR):
        if folder.is_dir():
            for p in folder.iterdir():
                # atomic_path's temporaries: ".<stem>.<random><suffix>"
                if p.is_file() and p.name.startswith(".") and (folder != run_dir or p.name[1:].split(".")[0] in stems):
                    p.unlink(missing_ok=True)
    from dlcli.training.callbacks import write_history

    if state.history:
        write_history(run_dir, state.history)
    else:
        (run_dir / HISTORY_FILE).unlink(missing_ok=True)


def _position_training_data(
    ds: Any, model: Any, state: ckpt.TrainState, phases: list[tuple[int, int]], strategy: Any = None
) -> None:
    """Make the next epoch see the batches, in the order, that it would
    have seen had the run never stopped.

    A shuffled tf.data pipeline draws a new order each time an iterator is
    created from it, so epoch k's order is that of the n-th iterator, n
    counted from the start of the run. Keras 3's fit creates two per epoch
    when the epoch length is known (one as the epoch starts, one when it
    ends; keras/src/trainers/epoch_iterator.py), one otherwise, plus one
    per fit call to build the model under a distribution strategy.
    Creating the same number of iterators without reading them moves the
    order on at no cost (no batch is produced).
    """
    if state.epoch == 0:
        return
    per_epoch = 2 if _cardinality(ds) is not None else 1
    # Keras records the strategy a model was built under; fit then peeks
    # at one batch per call (`_maybe_symbolic_build`).
    # dlcli's multi-worker loop (distribute.run_fit) builds without a peek.
    import tensorflow as tf

    own_loop = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    per_fit = 1 if getattr(model, "_distribute_strategy", None) is not None and not own_loop else 0
    n = state.epoch * per_epoch + (_phase_of(phases, state.epoch) - 1) * per_fit
    for _ in range(n):
        iter(ds)


# -- failures --------------------------------------------------------------


def _raise_failure(
    exc: BaseException,
    cfg: Any,
    spec: Any,
    run_dir: Path,
    recorder: Any,
    state: ckpt.TrainState,
    created: list[Path],
    old_files: dict[str, Optional[bytes]],
) -> None:
    """Turn an exception out of fit into the right dlcli error.

    Before the first batch completed, a Keras or TensorFlow error means the
    model, loss and data do not fit together: a config error (exit 2), and
    the run folder just created is removed again. Later, it is a failure
    while running (exit 1) and the last checkpoint stays.
    """
    import tensorflow as tf

    if isinstance(exc, OSError):
        raise _write_error(exc, run_dir) from None
    keras_error = isinstance(exc, (ValueError, TypeError, tf.errors.OpError))
    if recorder.batches_done == 0 and (keras_error or isinstance(exc, DlcliError)):
        _undo_start(run_dir, created, old_files)
        if isinstance(exc, DlcliError):
            raise exc
        key, what = _blame(exc)
        labels = _describe_labels(spec)
        raise cfg.error(
            key,
            f"{what} does not fit the data{labels}: {keras_message(exc)}",
            hint={
                "compile.metrics": "choose metrics that take these labels",
                "compile.loss": "choose a loss that takes these labels, or change the last layer",
            }.get(key, "check the last layer's units and activation, the loss, and the input shape"),
        ) from None
    if keras_error or isinstance(exc, DlcliError):
        done = recorder.checkpointed_epoch
        raise TrainingError(
            f"training failed in epoch {state.epoch + 1}: {keras_message(exc) if keras_error else exc}; "
            f"the checkpoint of epoch {done} is kept in {run_dir}",
            hint=f"fix the cause, then: dlcli train --resume {run_dir}",
        ) from None
    raise exc


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


def _undo_start(run_dir: Path, created: list[Path], old_files: dict[str, Optional[bytes]]) -> None:
    """A run that failed at its first step leaves nothing behind: a new
    run folder is removed, a resumed run's config.yaml and data_spec.json
    are put back."""
    if created:
        _remove_created(created)
    for name, data in old_files.items():
        if data is not None:
            atomic_write_bytes(run_dir / name, data)


def _write_error(exc: OSError, run_dir: Path) -> TrainingError:
    where = exc.filename or run_dir
    return TrainingError(
        f"cannot write {where}: {exc.strerror or exc}; the files written before are intact",
        hint=f"free space or fix permissions, then: dlcli train --resume {run_dir}",
    )


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


def _keep_last_good_model(model: Any, run_dir: Path, state: ckpt.TrainState, checkpointed: int) -> str:
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
        raise _write_error(exc, run_dir) from None
    return f"the last good checkpoint (epoch {checkpointed}) and its model.keras are kept in {run_dir}"


# -- run folder ------------------------------------------------------------


def _check_output_root(output: str | Path) -> None:
    """Fail before any work when run folders cannot be created under
    `output` (a path below a regular file, a read-only folder).

    Raises:
        RunError: naming the path that blocks it.
    """
    p = Path(output).absolute()
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise RunError(f"cannot create run folders under {output}: {anc} is not a folder", hint="choose another --output")
    if not os.access(anc, os.W_OK):
        raise RunError(f"cannot create run folders under {output}: {anc} is not writable", hint="choose another --output")


def _create_run_dir(output: str | Path, name: str) -> tuple[Path, list[Path]]:
    """Create `<output>/<name>/<N>/`; return it and every folder created
    (deepest first), so a run that fails at once can remove them."""
    root = Path(output)
    missing = [p for p in (root / name, root, *root.parents) if not p.exists()]
    run_dir = new_run_dir(output, name)
    return run_dir, [run_dir, *missing]


def _remove_created(created: list[Path]) -> None:
    if not created:
        return
    shutil.rmtree(created[0], ignore_errors=True)
    for p in created[1:]:
        try:
            p.rmdir()  # only while empty: another run may have started
        except OSError:
            break


def _read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


# -- phases, progress, data ------------------------------------------------


def _total_epochs(cfg: Any) -> int:
    return _phases(cfg)[-1][1]


def _phases(cfg: Any) -> list[tuple[int, int]]:
    """Epoch ranges [start, end) of each training phase."""
    phases = [(0, cfg.train.epochs)]
    ft = getattr(cfg, "finetune", None)
    if ft is not None and ft.fine_tune_epochs > 0:
        phases.append((cfg.train.epochs, cfg.train.epochs + ft.fine_tune_epochs))
    return phases


def _phase_of(phases: list[tuple[int, int]], epoch: int) -> int:
    for i, (s, e) in enumerate(phases, start=1):
        if s <= epoch < e:
            return i
    return len(phases)


def _data_rng(bundle: Any) -> list[Any]:
    """The data pipeline's RNG state variables (its augmentation layers'
    SeedGenerator states), where the DataBundle exposes them as
    `rng_variables`; they belong in checkpoints like the model's own."""
    return list(getattr(bundle, "rng_variables", None) or [])


def _monitor(cfg: Any, bundle: Any) -> Optional[str]:
    """The metric whose best epoch metrics.json reports: train.monitor,
    else val_loss when there is validation data. Only a monitor the config
    names makes model.keras the best epoch's model (else: the last)."""
    if cfg.train.monitor:
        return cfg.train.monitor
    return "val_loss" if bundle.val is not None else None


def _progress_mode(progress: str, cfg: Any) -> str:
    if progress == "auto":
        progress = cfg.train.verbose
    if progress == "auto":
        tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        return "progress" if tty else "lines"
    return progress


def _cardinality(ds: Any) -> Optional[int]:
    try:
        n = int(ds.cardinality())
    except Exception:  # noqa: BLE001 - not a tf.data dataset
        return None
    return n if n > 0 else None


def _class_weight(cfg: Any, bundle: Any) -> Optional[dict[int, float]]:
    cw = cfg.train.class_weight
    if cw is None:
        return None
    names = bundle.class_names or []
    if cw == "balanced":
        import numpy as np

        counts = np.zeros(max(1, bundle.num_classes or 1))
        for _, y in bundle.train.unbatch().as_numpy_iterator():
            idx = int(np.argmax(y)) if np.ndim(y) and np.size(y) > 1 else int(np.ravel(y)[0])
            counts[idx] += 1
        total = counts.sum()
        return {i: float(total / (len(counts) * c)) if c else 1.0 for i, c in enumerate(counts)}
    out: dict[int, float] = {}
    for k, v in cw.items():
        if isinstance(k, str) and not k.isdigit():
            if k not in names:
                raise cfg.error("train.class_weight", f"unknown class {k!r}", hint=f"classes are {names}")
            out[names.index(k)] = float(v)
        else:
            out[int(k)] = float(v)
    return out


def check_output_matches_data(model: Any, cfg: Any, spec: Any) -> None:
    """The last layer's width must fit the labels and the loss.

    Raises:
        ConfigError: located at the last layer, saying what to change.
    """
    if len(model.outputs) != 1:
        return
    width = model.output_shape[-1]
    mode = spec.label_mode
    n = spec.num_classes
    last = f"model.layers.{len(cfg.model.layers) - 1}"
    loss = _loss_name(cfg.compile.loss)
    src = spec.source
    if mode in ("int", "onehot") and n and width != n:
        raise cfg.error(
            last,
            f"the last layer outputs {width} values but {src} has {n} classes",
            hint=f"set units: {n} on the last layer",
        )
    if mode == "binary" and width != 1:
        raise cfg.error(
            last,
            f"binary_crossentropy needs one output per sample, but the last layer outputs {width}",
            hint="use Dense: {units: 1, activation: sigmoid}, or loss sparse_categorical_crossentropy with softmax",
        )
    if mode == "float":
        target_width = int(spec.target_width or 1)
        if width != target_width:
            raise cfg.error(
                last,
                f"the regression target has {target_width} value(s) per sample but the last layer outputs {width}",
                hint=f"set units: {target_width} with no activation on the last layer",
            )
    if mode == "int" and loss in ("categorical_crossentropy",):
        raise cfg.error("compile.loss", "categorical_crossentropy needs one-hot labels", hint="use sparse_categorical_crossentropy")


def _loss_name(loss: Any) -> str:
    if isinstance(loss, dict):
        loss = loss.get("class_name", "")
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", str(loss)).lower()


def _enter_fine_tune_phase(model: Any, cfg: Any) -> None:
    """Phase 2: unfreeze the backbone's top layers, lower the learning rate."""
    import keras

    from dlcli.model import compile_model, find_backbone

    backbone = find_backbone(model)
    if backbone is None:
        raise cfg.error("finetune", "fine-tuning needs a Backbone layer in model.layers")
    ft = cfg.finetune
    layers = backbone.layers
    n = ft.unfreeze if isinstance(ft.unfreeze, int) and not isinstance(ft.unfreeze, bool) else int(round(len(layers) * float(ft.unfreeze)))
    n = max(1, min(len(layers), n))
    backbone.trainable = True
    for layer in layers[: len(layers) - n]:
        layer.trainable = False
    pretrained = _backbone_pretrained(cfg)
    for layer in layers[len(layers) - n :]:
        # Pretrained BatchNormalization stays in inference mode (Keras
        # transfer guide); random statistics must train with the rest.
        if pretrained and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) * ft.learning_rate_factor
    opt = keras.optimizers.serialize(model.optimizer)
    opt_cfg = dict(opt.get("config", {}))
    opt_cfg["learning_rate"] = lr
    new_cfg = cfg.model_copy(deep=True)
    opt_cfg.pop("name", None)
    new_cfg.compile.optimizer = {"class_name": opt.get("class_name", "Adam"), "config": opt_cfg}
    compile_model(model, new_cfg)


def _backbone_pretrained(cfg: Any) -> bool:
    """False when the config's Backbone starts from random weights."""
    for entry in cfg.model.layers:
        if isinstance(entry, dict) and isinstance(entry.get("Backbone"), dict):
            return entry["Backbone"].get("weights", "imagenet") is not None
    return True
