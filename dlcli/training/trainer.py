"""Fit a model described by a config and write its run folder."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dlcli import __version__
from dlcli.errors import ConfigError, Interrupted, RunError, TrainingError
from dlcli.runs import (
    CONFIG_FILE,
    DATA_SPEC_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PLOTS_DIR,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    new_run_dir,
)
from dlcli.training import checkpoint as ckpt


@dataclass
class TrainResult:
    """What a finished run produced."""

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
) -> TrainResult:
    """Train the model of `cfg` and write a run folder.

    Args:
        cfg: a validated `dlcli.config.Config`.
        output: the root holding run folders (`<output>/<name>/<N>/`).
        name: the run name (default: the config's name).
        resume: an interrupted run folder to continue in place; `cfg` must
            then be that run's config (epochs may be raised).
        progress: auto | progress | lines | none (where progress goes, on
            stderr).
        console: a Rich console for progress bars.

    Returns:
        A TrainResult with the run folder, final metrics and history.

    Raises:
        ConfigError, DataError: bad config or data (nothing written).
        TrainingError: the loss diverged (exit 1; last good checkpoint kept).
        Interrupted: SIGINT/SIGTERM (exit 130; resumable checkpoint kept).
    """
    t_start = time.perf_counter()
    import keras

    from dlcli.data import load_data
    from dlcli.model import build_callbacks, build_model, compile_model
    from dlcli.training.callbacks import Progress, RunRecorder, SignalGuard, write_history
    from dlcli.training.distribute import describe_strategy, get_strategy, run_fit

    keras.utils.set_random_seed(cfg.seed)
    if cfg.train.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(cfg.train.mixed_precision)

    strategy, is_chief = get_strategy(cfg)
    t0 = time.perf_counter()
    bundle = load_data(cfg)
    t_data = time.perf_counter() - t0

    resume_dir = Path(resume) if resume else None
    state: Optional[ckpt.TrainState] = ckpt.read_state(resume_dir) if resume_dir else None
    if resume_dir and state is None:
        raise RunError(f"{resume_dir} has no checkpoint to resume from", hint="start a new run with `dlcli train CONFIG`")
    if state is not None and state.finished and state.epoch >= _total_epochs(cfg):
        raise RunError(
            f"{resume_dir} already finished {state.epoch} epochs",
            hint=f"pass --epochs larger than {state.epoch} to train further",
        )

    with strategy.scope():
        if state is not None and state.epoch > 0:
            model = ckpt.load_model(resume_dir, state)
        else:
            model = build_model(cfg, bundle.input_shape, num_classes=bundle.num_classes)
            check_output_matches_data(model, cfg, bundle.spec)
            compile_model(model, cfg)
        user_callbacks = build_callbacks(cfg)

    # Everything the user could have got wrong is checked: now write.
    if resume_dir is not None:
        run_dir = resume_dir
    elif is_chief:
        run_dir = new_run_dir(output, name or cfg.name or "run")
    else:
        import tempfile

        run_dir = Path(tempfile.mkdtemp(prefix="dlcli-worker-"))
    atomic_write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
    atomic_write_json(run_dir / DATA_SPEC_FILE, bundle.spec)

    if state is None:
        state = ckpt.TrainState()
        ckpt.save(run_dir, model, state)  # resumable from the first batch on
    else:
        ckpt.restore_rng(state.rng)
        state.finished = False

    mode = _progress_mode(progress, cfg)
    steps = _cardinality(bundle.train)
    phases = _phases(cfg)
    recorder = RunRecorder(
        run_dir,
        state,
        monitor=cfg.train.monitor,
        checkpoint_every=cfg.train.checkpoint_every,
        extra_columns=(lambda e: {"phase": _phase_of(phases, e)}) if len(phases) > 1 else None,
    )
    total = phases[-1][1]

    with SignalGuard(recorder):
        for phase_no, (start, end) in enumerate(phases, start=1):
            if state.epoch >= end:
                continue
            if phase_no > 1 and state.phase < phase_no:
                with strategy.scope():
                    _enter_fine_tune_phase(model, cfg)
                state.phase = phase_no
                ckpt.save(run_dir, model, state)
            callbacks = [
                recorder,
                *user_callbacks,
                Progress(mode, total, steps, console),
            ]
            try:
                run_fit(
                    model,
                    strategy,
                    bundle.train,
                    validation_data=bundle.val,
                    epochs=end,
                    initial_epoch=max(state.epoch, start),
                    callbacks=callbacks,
                    class_weight=_class_weight(cfg, bundle),
                    verbose=0,
                )
            except KeyboardInterrupt:
                recorder.interrupted = recorder.interrupted or "SIGINT"
            if recorder.diverged or recorder.interrupted or model.stop_training and state.epoch < end:
                break

    if recorder.interrupted:
        raise Interrupted(
            f"training interrupted ({recorder.interrupted}) after {state.epoch} completed epoch(s); checkpoint kept in {run_dir}",
            hint=f"continue with: dlcli train --resume {run_dir}",
        )
    if recorder.diverged:
        ep, batch, loss = recorder.diverged
        where = f"epoch {ep}, batch {batch}" if batch else f"epoch {ep}"
        _save_final_model_from_checkpoint(run_dir, state)
        raise TrainingError(
            f"training diverged: loss became {loss} at {where}; the last good checkpoint (epoch {state.epoch}) is kept in {run_dir}",
            hint="lower the learning rate (--set compile.optimizer.config.learning_rate=...) or check the data for NaN/inf",
        )

    # The final model: the best epoch's weights where a monitor says so.
    best = ckpt.best_weights_path(run_dir) if cfg.train.monitor else None
    if best is not None:
        model.load_weights(best)
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        model.save(tmp)

    test_metrics: dict[str, float] = {}
    if bundle.test is not None:
        test_metrics = {
            k: float(v) for k, v in model.evaluate(bundle.test, verbose=0, return_dict=True).items()
        }
    state.finished = True
    ckpt.save(run_dir, model, state)
    write_history(run_dir, state.history)

    metrics = {
        "name": cfg.name,
        "run_dir": str(run_dir),
        "epochs_completed": state.epoch,
        "stopped_early": state.epoch < total,
        "test": test_metrics,
        "final": {k: v[-1] for k, v in state.history.items() if k not in ("epoch", "phase") and v},
        "best": {"monitor": cfg.train.monitor, "value": state.best_value, "epoch": state.best_epoch}
        if cfg.train.monitor
        else None,
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
            "trainable": int(sum(int(_size(w)) for w in model.trainable_weights)),
        },
        "distribution": describe_strategy(strategy, cfg),
        "timings": {
            "total_s": round(time.perf_counter() - t_start, 3),
            "load_data_s": round(t_data, 3),
            "train_s": round(state.elapsed_s, 3),
            "epoch_s": round(state.elapsed_s / max(1, len(state.history.get("epoch", []))), 3),
        },
        "versions": versions(),
    }
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    try:
        from dlcli.report import plot_history

        boundary = phases[0][1] if len(phases) > 1 else None
        plot_history(state.history, run_dir / PLOTS_DIR / "history.png", title=cfg.name, phase_boundary=boundary)
    except ImportError:
        pass
    return TrainResult(run_dir=run_dir, metrics=metrics, history=state.history, resumed=resume_dir is not None)


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
    except Exception:  # noqa: BLE001
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


def check_output_matches_data(model: Any, cfg: Any, spec: dict[str, Any]) -> None:
    """The last layer's width must fit the labels and the loss.

    Raises:
        ConfigError: located at the last layer, saying what to change.
    """
    if len(model.outputs) != 1:
        return
    width = model.output_shape[-1]
    mode = spec.get("label_mode")
    n = spec.get("num_classes")
    last = f"model.layers.{len(cfg.model.layers) - 1}"
    loss = _loss_name(cfg.compile.loss)
    src = spec.get("source", cfg.data.source)
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
        target_width = int(spec.get("target_width", 1))
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
    for layer in layers[len(layers) - n :]:
        # BatchNormalization stays in inference mode (Keras transfer guide).
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) * ft.learning_rate_factor
    opt = keras.optimizers.serialize(model.optimizer)
    opt_cfg = dict(opt.get("config", {}))
    opt_cfg["learning_rate"] = lr
    new_cfg = cfg.model_copy(deep=True)
    opt_cfg.pop("name", None)
    new_cfg.compile.optimizer = {"class_name": opt.get("class_name", "Adam"), "config": opt_cfg}
    compile_model(model, new_cfg)


def _save_final_model_from_checkpoint(run_dir: Path, state: ckpt.TrainState) -> None:
    """After divergence: model.keras is the last good checkpoint's model."""
    if state.epoch == 0 or not state.model_file:
        return
    import shutil

    src = ckpt.checkpoint_dir(run_dir) / state.model_file
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        shutil.copyfile(src, tmp)
