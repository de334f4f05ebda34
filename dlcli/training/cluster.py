"""The multi-worker cluster: who this process is, and its strategy.

The cluster comes from TF_CONFIG (set on every worker) or, inside a Slurm
job step (`srun`), from Slurm's environment. The chief (or worker 0) writes
the run folder; `MultiWorkerMirroredStrategy` must be created before
TensorFlow runs its first operation. The training loop that runs under it
is `dlcli.training.multiworker`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Optional

from dlcli.errors import ConfigError

TF_CONFIG = "TF_CONFIG"
SLURM_PORT_BASE = 8888  # TensorFlow's SlurmClusterResolver default


def in_slurm_step() -> bool:
    """True inside a Slurm job step (`srun`), where the cluster can be read
    from Slurm's environment."""
    return "SLURM_PROCID" in os.environ and "SLURM_STEP_NODELIST" in os.environ


def cluster_resolver(cfg: Any = None) -> Any:
    """The cluster this process belongs to: TF_CONFIG, else Slurm.

    Args:
        cfg: the config, to locate errors at `train.distribute`.

    Returns:
        A `tf.distribute.cluster_resolver.ClusterResolver` with the cluster
        spec, task type and task id resolved.

    Raises:
        ConfigError: no cluster is described, TF_CONFIG is malformed, or the
            task is not a chief/worker.
    """
    import tensorflow as tf

    def fail(message: str, hint: Optional[str] = None) -> ConfigError:
        return _error(cfg, message, hint or "see docs/distributed.md")

    raw = os.environ.get(TF_CONFIG, "").strip()
    if raw:
        try:
            tf_config = json.loads(raw)
        except ValueError as exc:
            raise fail(f"TF_CONFIG is not valid JSON ({exc})") from None
        if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict):
            raise fail('TF_CONFIG has no "cluster" mapping', hint='expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
        task = tf_config.get("task") or {}
        kind, index = task.get("type"), task.get("index")
        if kind not in ("chief", "worker"):
            raise fail(
                f"TF_CONFIG task type {kind!r} is not supported",
                hint="MultiWorkerMirroredStrategy runs chief and worker tasks only",
            )
        addresses = tf_config["cluster"].get(kind)
        if not isinstance(addresses, list) or not isinstance(index, int) or not 0 <= index < len(addresses):
            raise fail(f"TF_CONFIG task {kind}:{index} is not in the cluster {tf_config['cluster']}")
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        resolver.cluster_spec()
        return resolver

    if in_slurm_step():
        kwargs: dict[str, Any] = {"port_base": SLURM_PORT_BASE}
        if "CUDA_VISIBLE_DEVICES" not in os.environ and shutil.which("nvidia-smi") is None:
            # A CPU-only node: TensorFlow's resolver would run nvidia-smi and,
            # with zero GPUs, allocate no task at all. One pretend GPU per
            # task (not exported to CUDA) makes it lay out the tasks.
            kwargs.update(
                gpus_per_node=int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")),
                gpus_per_task=1,
                auto_set_gpu=False,
            )
        try:
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(**kwargs)
            resolver.cluster_spec()  # also sets task_type / task_id
        except (RuntimeError, ValueError) as exc:
            raise fail(f"cannot read the Slurm job step: {exc}", hint="launch one task per worker with srun") from None
        return resolver

    raise fail(
        "multi_worker needs a cluster: set TF_CONFIG on every worker, or launch the workers with srun under Slurm",
    )


def is_chief(resolver: Any) -> bool:
    """The chief (or worker 0 when the cluster has no chief) writes the run
    folder; every other worker writes nothing the user sees."""
    spec = resolver.cluster_spec().as_dict()
    if "chief" in spec:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and int(resolver.task_id or 0) == 0


def get_multi_worker_strategy(cfg: Any = None) -> tuple[Any, bool]:
    """Create the MultiWorkerMirroredStrategy for this process.

    Must run before TensorFlow executes its first operation (collective ops
    are configured at startup).

    Returns:
        (strategy, is_chief).

    Raises:
        ConfigError: see `cluster_resolver`; or TensorFlow already ran in
            this process.
    """
    import tensorflow as tf

    resolver = cluster_resolver(cfg)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as exc:
        # A Python caller that ran TensorFlow before asking for multi_worker.
        raise _error(
            cfg, f"MultiWorkerMirroredStrategy cannot start in this process: {exc}",
            "start multi-worker training in a new process (dlcli train ... --distribute multi_worker)",
        ) from None
    return strategy, is_chief(resolver)


def _error(cfg: Any, message: str, hint: str) -> ConfigError:
    """A ConfigError at `train.distribute` (located in the config file when
    there is one)."""
    if cfg is not None and hasattr(cfg, "error"):
        return cfg.error("train.distribute", message, hint=hint)
    return ConfigError(message, key="train.distribute", hint=hint)
