"""Choosing a tf.distribute strategy from the config."""

from __future__ import annotations

from typing import Any


def get_strategy(cfg: Any) -> tuple[Any, bool]:
    """Return (strategy, is_chief) for `cfg.train.distribute`.

    none: TensorFlow's default strategy; mirrored: all local GPUs (the CPU
    when there is none); auto: mirrored when more than one GPU is visible.
    """
    import tensorflow as tf

    kind = cfg.train.distribute
    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "none"
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    if kind == "multi_worker":
        from dlcli.training.multiworker import get_multi_worker_strategy

        return get_multi_worker_strategy()
    return tf.distribute.get_strategy(), True


def describe_strategy(strategy: Any, cfg: Any) -> dict[str, Any]:
    """What metrics.json records about distribution."""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    return {
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "batch_size_per_replica": cfg.data.batch_size,
        "global_batch_size": cfg.data.batch_size * replicas,
    }


def run_fit(model: Any, strategy: Any, x: Any, **kwargs: Any) -> Any:
    """Run `model.fit` under `strategy` (the one place the trainer fits).

    Multi-worker training needs its own loop (keras-team/keras#20585); this
    is where that choice is made, so the trainer stays the same.
    """
    return model.fit(x, **kwargs)
