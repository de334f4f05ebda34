"""What a finished run writes besides its checkpoints: model.keras,
metrics.json, history.csv and the training-curve plot (which epoch
model.keras holds is `record`'s decision)."""

from __future__ import annotations

import math
import time
from concurrent import futures
from typing import Any

from dlcli.runs import METRICS_FILE, MODEL_FILE, PLOTS_DIR, atomic_path, atomic_write_json
from dlcli.training import checkpoint as ckpt


def write_results(trainer: Any) -> dict[str, Any]:
    """Write a finished `Trainer`'s model, history, metrics and plot.

    The last epoch's checkpoint (not the best epoch's weights) stays the
    one to extend from; model.keras gets the best weights where the config
    names a monitor.

    Returns:
        What metrics.json holds.
    """
    from dlcli.training.callbacks import write_history
    from dlcli.training.distribute import run_evaluate
    from dlcli.training.record import early_stopping_monitor, model_record, restored_epoch

    model, cfg, state, run_dir = trainer.model, trainer.cfg, trainer.state, trainer.folder.path
    best = ckpt.best_weights_path(run_dir, state) if cfg.train.monitor else None
    # The weights in memory: the last epoch's, or those an EarlyStopping
    # with restore_best_weights put back when fit ended.
    restored = restored_epoch(trainer.user_callbacks)
    held = restored or state.epoch
    if best is not None and state.best_epoch and state.best_epoch != held:
        model.load_weights(best)
    record = model_record(
        last_epoch=state.epoch, monitor_key=cfg.train.monitor if best is not None else None,
        best_epoch=state.best_epoch, best_value=state.best_value,
        restored=restored, restored_monitor=early_stopping_monitor(trainer.user_callbacks), history=state.history,
    )
    plot = start_history_plot(trainer, record["epoch"])
    try:
        with atomic_path(run_dir / MODEL_FILE) as tmp:
            model.save(tmp)
        test_metrics: dict[str, float] = {}
        if trainer.bundle.test is not None:
            test_metrics = run_evaluate(model, trainer.strategy, trainer.bundle.test, per_replica_batch=cfg.data.batch_size)
        write_history(run_dir, state.history)
        metrics = run_metrics(trainer, test_metrics, record)
        atomic_write_json(run_dir / METRICS_FILE, metrics)
    except BaseException:
        futures.wait([plot])  # nothing keeps writing into the folder once the run has failed
        raise
    plot.result()  # history.png is written (or its OSError raised) before the run is marked finished
    return metrics


def start_history_plot(trainer: Any, model_epoch: int) -> futures.Future:
    """Draw plots/history.png in a thread of its own while the model is
    saved and evaluated (off the run's critical path where a core is
    free); the PNG is written atomically.

    Returns:
        A Future whose `result()` is None once the PNG is written (also
        without matplotlib, when there is none), or raises the OSError
        that stopped it.
    """
    history = {k: list(v) for k, v in trainer.state.history.items()}
    ranges = trainer.phases
    path = trainer.folder.path / PLOTS_DIR / "history.png"

    def draw() -> None:
        try:
            from dlcli.report import plot_history

            plot_history(history, path, title=trainer.cfg.name, phase_boundary=ranges[0][1] if len(ranges) > 1 else None,
                         model_epoch=model_epoch)
        except ImportError:  # no matplotlib: no plot
            pass

    pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlcli-plot")
    try:
        return pool.submit(draw)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


def run_metrics(trainer: Any, test_metrics: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's content for a finished `Trainer`; `record` says
    which epoch model.keras holds (`record.model_record`)."""
    from dlcli.training.distribute import describe_strategy
    from dlcli.versions import versions

    cfg, bundle, state, model = trainer.cfg, trainer.bundle, trainer.state, trainer.model
    epochs_run = len(state.history.get("epoch", []))
    monitor = trainer.monitor
    return {
        "name": cfg.name,
        "run_dir": str(trainer.folder.path),
        "epochs_completed": state.epoch,
        "stopped_early": state.epoch < trainer.phases[-1][1],
        "test": test_metrics,
        "final": {k: _num(v[-1]) for k, v in state.history.items() if k not in ("epoch", "phase") and v},
        "best": {"monitor": monitor, "value": state.best_value, "epoch": state.best_epoch} if monitor else None,
        "model_epoch": record["epoch"],
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
            "trainable": int(sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights)),
        },
        "distribution": describe_strategy(trainer.strategy, cfg),
        "timings": {
            "total_s": round(time.perf_counter() - trainer.timings["start"], 3),
            "load_data_s": round(trainer.timings["load_data_s"], 3),
            "train_s": round(state.elapsed_s, 3),
            "epoch_s": round(state.elapsed_s / max(1, epochs_run), 3),
            "checkpoint_s_per_epoch": round(state.checkpoint_s / max(1, epochs_run), 4),
        },
        "versions": versions(),
    }


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
