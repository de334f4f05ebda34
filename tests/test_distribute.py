"""Strategy choice, cluster resolution (TF_CONFIG, Slurm), per-replica
batches and learning-rate scaling. Fast: nothing here trains."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest

from dlcli.errors import ConfigError
from dlcli.training import distribute
from dlcli.training.cluster import cluster_resolver, is_chief

SLURM_VARS = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


@pytest.fixture
def no_cluster(monkeypatch):
    """No TF_CONFIG and no Slurm step in the environment."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)


def _cfg(**train):
    from dlcli.config import config_from_dict

    return config_from_dict(
        {"model": {"layers": [{"Dense": {"units": 2}}]}, "data": {"batch_size": 16}, "train": train}
    )


def _tf_config(monkeypatch, cluster, kind, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))


# -- clusters ------------------------------------------------------------


def test_multi_worker_without_a_cluster_is_a_config_error(no_cluster):
    with pytest.raises(ConfigError) as err:
        cluster_resolver(_cfg(distribute="multi_worker"))
    assert err.value.key == "train.distribute"
    assert "TF_CONFIG" in str(err.value) and "srun" in str(err.value)


@pytest.mark.parametrize(
    "raw, words",
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}', "'ps' is not supported"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "worker:3 is not in the cluster"),
    ],
)
def test_bad_tf_config_is_named(no_cluster, monkeypatch, raw, words):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ConfigError) as err:
        cluster_resolver()
    assert words in str(err.value)


@pytest.mark.parametrize(
    "cluster, kind, index, chief",
    [
        ({"worker": ["a:1", "b:2"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:2"]}, "worker", 1, False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, "chief", 0, True),
        ({"chief": ["c:0"], "worker": ["a:1"]}, "worker", 0, False),
    ],
)
def test_tf_config_task_and_chief(no_cluster, monkeypatch, cluster, kind, index, chief):
    _tf_config(monkeypatch, cluster, kind, index)
    resolver = cluster_resolver()
    assert (resolver.task_type, resolver.task_id) == (kind, index)
    assert is_chief(resolver) is chief


def test_slurm_step_on_cpu_nodes(no_cluster, monkeypatch):
    # srun -N 2 -n 4: two tasks per node; this process is task 3.
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[07-08]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "nvidia-smi" else real_which(cmd, *a, **k))

    resolver = cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {
        "worker": ["node07:8888", "node07:8889", "node08:8888", "node08:8889"]
    }
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    assert not is_chief(resolver)
    # A CPU node: no GPU list is exported to the process.
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_tf_config_wins_over_slurm(no_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "n1")
    _tf_config(monkeypatch, {"worker": ["a:1", "b:2"]}, "worker", 0)
    resolver = cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["a:1", "b:2"]}


def test_cli_multi_worker_without_cluster_exits_2_and_writes_nothing(no_cluster, runner, app, tmp_cwd, write_file):
    config = write_file(
        "c.yaml",
        "data: {source: iris}\nmodel:\n  layers:\n    - Dense: {units: 3, activation: softmax}\ntrain: {epochs: 1}\n",
    )
    result = runner.invoke(app, ["train", str(config), "--distribute", "multi_worker", "--output", "out"])
    assert result.exit_code == 2, result.output
    assert "TF_CONFIG" in result.stderr and "train.distribute" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_cwd / "out").exists() or not any((tmp_cwd / "out").rglob("*"))


# -- strategies ------------------------------------------------------------


def test_none_and_auto_on_this_machine(no_cluster):
    import tensorflow as tf

    strategy, chief = distribute.get_strategy(_cfg(distribute="none"))
    assert chief and strategy.num_replicas_in_sync == 1
    assert distribute.strategy_name(strategy) == "none"
    strategy, chief = distribute.get_strategy(_cfg(distribute="auto"))
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert distribute.strategy_name(strategy) == ("MirroredStrategy" if gpus > 1 else "none")


def test_mirrored_reports_per_replica_and_global_batch(no_cluster):
    cfg = _cfg(distribute="mirrored", scale_learning_rate=True)
    strategy, chief = distribute.get_strategy(cfg)
    replicas = strategy.num_replicas_in_sync
    assert chief
    assert distribute.describe_strategy(strategy, cfg) == {
        "strategy": "MirroredStrategy",
        "requested": "mirrored",
        "workers": 1,
        "replicas": replicas,
        "batch_size_per_replica": 16,
        "global_batch_size": 16 * replicas,
        "scale_learning_rate": True,
        "learning_rate_factor": float(replicas),
    }


class _FourReplicas:
    """Stands in for a 4-GPU MirroredStrategy (this machine has one CPU)."""

    num_replicas_in_sync = 4

    def scope(self):
        return contextlib.nullcontext()


def _compiled(optimizer):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_scale_learning_rate_constant():
    import keras

    model = _compiled(keras.optimizers.SGD(0.05))
    assert distribute.scale_learning_rate(model, _FourReplicas(), _cfg(scale_learning_rate=True)) == 4.0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.2)
    # Off by default: nothing changes.
    model = _compiled(keras.optimizers.SGD(0.05))
    assert distribute.scale_learning_rate(model, _FourReplicas(), _cfg()) == 1.0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_scale_learning_rate_schedules():
    import keras

    s = keras.optimizers.schedules
    exp = s.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model = _compiled(keras.optimizers.Adam(exp))
    distribute.scale_learning_rate(model, _FourReplicas(), _cfg(scale_learning_rate=True))
    scaled = s.deserialize(model.optimizer.get_config()["learning_rate"])
    for step in (0, 10, 25):
        assert float(scaled(step)) == pytest.approx(4 * float(exp(step)))

    steps = s.PiecewiseConstantDecay([5], [0.1, 0.01])
    model = _compiled(keras.optimizers.SGD(steps))
    distribute.scale_learning_rate(model, _FourReplicas(), _cfg(scale_learning_rate=True))
    scaled = s.deserialize(model.optimizer.get_config()["learning_rate"])
    assert [float(scaled(i)) for i in (0, 9)] == pytest.approx([0.4, 0.04])


def test_steps_per_epoch_counts_global_batches():
    import tensorflow as tf

    ds = tf.data.Dataset.range(100).batch(16)  # 7 per-replica batches
    assert distribute.steps_per_epoch(ds, _FourReplicas()) == 2
    assert distribute.steps_per_epoch(ds, tf.distribute.get_strategy()) == 7
    assert distribute.steps_per_epoch(ds.filter(lambda x: True), _FourReplicas()) is None
