"""Choosing a tf.distribute strategy from the config, and fitting under it.

`train.distribute`:

- none: TensorFlow's default strategy (one device).
- mirrored: `MirroredStrategy` over all local GPUs (the CPU when there is
  none).
- auto: mirrored when more than one GPU is visible, else none.
- multi_worker: `MultiWorkerMirroredStrategy` over the cluster described
  by TF_CONFIG, or by Slurm (`srun`); see `dlcli.training.cluster` and
  `dlcli.training.multiworker`.

`data.batch_size` is per replica: with R replicas a step sees R times as
many samples, and `train.scale_learning_rate` multiplies the learning rate
by R (the linear scaling rule). Both are recorded in metrics.json under
"distribution".
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from dlcli.training import cluster, multiworker


def get_strategy(cfg: Any) -> tuple[Any, bool]:
    """Return (strategy, is_chief) for `cfg.train.distribute`.

    Call it before TensorFlow runs any operation: a multi-worker strategy
    configures collective ops at startup.

    Raises:
        ConfigError: multi_worker without a cluster (TF_CONFIG or Slurm), or
            with a malformed TF_CONFIG.
    """
    kind = cfg.train.distribute
    if kind == "multi_worker":
        return cluster.get_multi_worker_strategy(cfg)

    import tensorflow as tf

    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    return tf.distribute.get_strategy(), True


def num_workers(strategy: Any) -> int:
    """How many processes train together (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(v) for k, v in spec.items() if k in ("chief", "worker")))


def learning_rate_factor(strategy: Any, cfg: Any) -> float:
    """The factor `train.scale_learning_rate` applies: the replica count."""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    return float(replicas) if cfg.train.scale_learning_rate else 1.0


def strategy_name(strategy: Any) -> str:
    """The public name of a strategy (TensorFlow's classes have internal
    names such as CollectiveAllReduceStrategy)."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    name = type(strategy).__name__
    return "none" if name.startswith("_Default") else name


def describe_strategy(strategy: Any, cfg: Any) -> dict[str, Any]:
    """What metrics.json records about distribution."""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    return {
        "strategy": strategy_name(strategy),
        "requested": cfg.train.distribute,
        "workers": num_workers(strategy),
        "replicas": replicas,
        "batch_size_per_replica": cfg.data.batch_size,
        "global_batch_size": cfg.data.batch_size * replicas,
        "scale_learning_rate": bool(cfg.train.scale_learning_rate),
        "learning_rate_factor": learning_rate_factor(strategy, cfg),
    }


def scale_learning_rate(model: Any, strategy: Any, cfg: Any) -> float:
    """Apply `train.scale_learning_rate` to a compiled model's optimizer.

    A constant learning rate is multiplied by the number of replicas; a
    Keras schedule is rebuilt from its config with its learning rates
    (every `*learning_rate` value, `warmup_target`, and the `values` of a
    piecewise-constant schedule) multiplied. Call it once, right after
    compiling and before restoring a checkpoint (which holds the scaled
    rate already).

    Returns:
        The factor applied (1.0 when scaling is off or there is one replica).
    """
    factor = learning_rate_factor(strategy, cfg)
    optimizer = getattr(model, "optimizer", None)
    if factor == 1.0 or optimizer is None:
        return 1.0
    import keras

    current = optimizer.learning_rate
    with strategy.scope():
        if isinstance(current, keras.optimizers.schedules.LearningRateSchedule):
            optimizer.learning_rate = _scaled_schedule(current, factor)
        else:
            # A schedule already evaluated (Keras returns its value) cannot be
            # told apart here, so look at the optimizer's own config.
            lr = optimizer.get_config().get("learning_rate")
            if isinstance(lr, dict):
                schedule = keras.optimizers.schedules.deserialize(lr)
                optimizer.learning_rate = _scaled_schedule(schedule, factor)
            else:
                optimizer.learning_rate = float(keras.ops.convert_to_numpy(current)) * factor
    return factor


def _scaled_schedule(schedule: Any, factor: float) -> Any:
    config = copy.deepcopy(schedule.get_config())
    for key, value in config.items():
        if key.endswith("learning_rate") or key == "warmup_target":
            if isinstance(value, (int, float)):
                config[key] = float(value) * factor
        elif key == "values" and isinstance(value, (list, tuple)):
            config[key] = [float(v) * factor for v in value]
    return type(schedule).from_config(config)


def steps_per_epoch(dataset: Any, strategy: Any) -> Optional[int]:
    """Steps per epoch once per-replica batches are grouped into global
    batches (None when the dataset's length is unknown)."""
    return multiworker.global_steps(dataset, int(getattr(strategy, "num_replicas_in_sync", 1)))


def _global_batches(dataset: Any, strategy: Any, per_replica_batch: Optional[int]) -> Any:
    """Regroup per-replica batches into global ones for `model.fit`, which
    splits each batch it is given over the replicas."""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    if dataset is None or not per_replica_batch or replicas == 1:
        return dataset
    import tensorflow as tf

    steps = steps_per_epoch(dataset, strategy)
    dataset = dataset.rebatch(per_replica_batch * replicas)
    if steps is not None:
        # rebatch forgets the length; Keras needs it for its progress and
        # its per-epoch iterators (a full batch but the last, as batch()
        # makes them, gives exactly this many).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset


def run_fit(model: Any, strategy: Any, x: Any, *, per_replica_batch: Optional[int] = None, **kwargs: Any) -> Any:
    """Fit `model` on the dataset `x` under `strategy` (the one place the
    trainer fits).

    Under a MultiWorkerMirroredStrategy, `model.fit` does not work with
    Keras 3 (keras-team/keras#20585); `multiworker.fit` runs the same model,
    optimizer, metrics and callbacks in a loop of its own.

    Args:
        model: built and compiled under `strategy.scope()`.
        strategy: from `get_strategy`.
        x: a batched `tf.data.Dataset` of `(x, y[, sample_weight])`.
        per_replica_batch: the batch size `x` (and `validation_data`) were
            batched with, meant per replica; with several replicas the
            batches are regrouped into global batches. None: `x`'s batches
            are global already.
        **kwargs: `model.fit` arguments (validation_data, epochs,
            initial_epoch, callbacks, class_weight, verbose).

    Returns:
        The `keras.callbacks.History`.
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return multiworker.fit(model, strategy, x, per_replica_batch=per_replica_batch, **kwargs)
    x = _global_batches(x, strategy, per_replica_batch)
    if kwargs.get("validation_data") is not None:
        kwargs["validation_data"] = _global_batches(kwargs["validation_data"], strategy, per_replica_batch)
    return model.fit(x, **kwargs)


def run_evaluate(model: Any, strategy: Any, x: Any, *, per_replica_batch: Optional[int] = None) -> dict[str, float]:
    """`model.evaluate(x, return_dict=True)` under `strategy`, multi-worker
    included (where Keras 3's evaluate fails like its fit).

    Returns:
        {metric name: value} (the same on every worker).
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        logs = multiworker.evaluate(model, strategy, x, per_replica_batch=per_replica_batch)
    else:
        logs = model.evaluate(_global_batches(x, strategy, per_replica_batch), verbose=0, return_dict=True)
    return {k: _number(v) for k, v in logs.items()}


def _number(v: Any) -> Any:
    import numpy as np

    a = np.asarray(v)
    return float(a) if a.ndim == 0 else a.tolist()
