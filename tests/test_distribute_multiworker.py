"""Multi-worker training for real: the custom loop against `model.fit`, and
two `dlcli train` worker processes on localhost against one process.

Each case runs in fresh processes: a MultiWorkerMirroredStrategy must be
created before TensorFlow runs anything, and a test process has usually
run TensorFlow already.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
ENV.pop("TF_CONFIG", None)


def _run_script(tmp_path: Path, source: str, timeout: int = 300) -> dict:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The same model, data and callbacks trained by model.fit (no strategy) and
# by multiworker.fit under `strategy`; every callback call is recorded.
LOOP_VS_FIT = """
    import contextlib, json, os
    import numpy as np
    {setup}
    import keras, tensorflow as tf
    from dlcli.training import multiworker

    strategy = {strategy}
    B = {batch}  # per replica

    def data(batch):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(230, 6)).astype("float32")
        y = ((x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 0.7)).astype("int64")
        train = tf.data.Dataset.from_tensor_slices((x[:197], y[:197])).shuffle(197, seed=1, reshuffle_each_iteration=False).batch(batch)  # dlcli pipelines draw each epoch from (seed, epoch); a fixed order here keeps loop and fit on the same batches whatever iterators each makes
        return train, tf.data.Dataset.from_tensor_slices((x[197:], y[197:])).batch(batch)

    class Recorder(keras.callbacks.Callback):
        def __init__(self, stop_at=None):
            super().__init__()
            self.calls, self.stop_at = [], stop_at
        def _log(self, hook, arg=None, logs=None):
            self.calls.append([hook, arg, sorted(logs or {{}})])
        def on_train_begin(self, logs=None): self._log("train_begin", None, logs)
        def on_train_end(self, logs=None): self._log("train_end", None, logs)
        def on_epoch_begin(self, e, logs=None): self._log("epoch_begin", e, logs)
        def on_epoch_end(self, e, logs=None): self._log("epoch_end", e, logs)
        def on_train_batch_begin(self, b, logs=None): self._log("train_batch_begin", b)
        def on_train_batch_end(self, b, logs=None):
            self._log("train_batch_end", b, logs)
            if self.stop_at == (len([c for c in self.calls if c[0] == "epoch_begin"]) - 1, b):
                self.model.stop_training = True
        def on_test_begin(self, logs=None): self._log("test_begin", None, logs)
        def on_test_end(self, logs=None): self._log("test_end", None, logs)
        def on_test_batch_begin(self, b, logs=None): self._log("test_batch_begin", b)
        def on_test_batch_end(self, b, logs=None): self._log("test_batch_end", b, logs)

    def run(kind, case):
        keras.utils.set_random_seed(3)
        scope = strategy.scope() if kind == "loop" else contextlib.nullcontext()
        with scope:
            model = keras.Sequential([
                keras.Input((6,)),
                keras.layers.Dense(16, activation="relu", kernel_regularizer="l2"),
                keras.layers.Dense(3, activation="softmax"),
            ])
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
        rec = Recorder(stop_at=(1, 3) if case == "stop_mid_epoch" else None)
        callbacks = [rec]
        if case == "early_stopping":
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=10.0, patience=1))
        kwargs = dict(epochs=4, callbacks=callbacks,
                      class_weight={{0: 1.0, 1: 2.0, 2: 0.5}} if case == "class_weight" else None)
        if kind == "loop":
            train, val = data(B)
            h = multiworker.fit(model, strategy, train, validation_data=val, per_replica_batch=B, **kwargs)
            test = multiworker.evaluate(model, strategy, val, per_replica_batch=B)
        else:
            train, val = data(B * strategy.num_replicas_in_sync)
            h = model.fit(train, validation_data=val, verbose=0, **kwargs)
            test = model.evaluate(val, verbose=0, return_dict=True)
        return {{
            "calls": rec.calls,
            "history": {{k: [float(v) for v in vs] for k, vs in h.history.items()}},
            "is_model_history": h is model.history,
            "epochs": h.epoch,
            "stop_training": bool(model.stop_training),
            "weights": [w.tolist() for w in model.get_weights()],
            "test": {{k: float(v) for k, v in test.items()}},
        }}

    out = {{case: {{kind: run(kind, case) for kind in ("loop", "fit")}}
           for case in ("plain", "early_stopping", "stop_mid_epoch", "class_weight")}}
    out["replicas"] = strategy.num_replicas_in_sync
    print(json.dumps(out))
"""


def _assert_same_training(results: dict) -> None:
    for case in ("plain", "early_stopping", "stop_mid_epoch", "class_weight"):
        loop, fit = results[case]["loop"], results[case]["fit"]
        assert loop["calls"] == fit["calls"], case
        assert loop["epochs"] == fit["epochs"], case
        assert loop["is_model_history"] and fit["is_model_history"]
        assert loop["stop_training"] == fit["stop_training"], case
        assert loop["history"].keys() == fit["history"].keys(), case
        for key in fit["history"]:
            np.testing.assert_allclose(loop["history"][key], fit["history"][key], rtol=1e-4, atol=1e-5, err_msg=f"{case} {key}")
        for a, b in zip(loop["weights"], fit["weights"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=case)
        assert loop["test"].keys() == fit["test"].keys()
        for key in fit["test"]:
            assert loop["test"][key] == pytest.approx(fit["test"][key], rel=1e-4, abs=1e-5), (case, key)
    # The cases did what they say.
    assert results["plain"]["fit"]["epochs"] == [0, 1, 2, 3]
    assert results["early_stopping"]["fit"]["epochs"] == [0, 1]
    stopped = results["stop_mid_epoch"]["fit"]
    assert stopped["epochs"] == [0, 1]
    assert [c[1] for c in stopped["calls"] if c[0] == "train_batch_end"][-1] == 3
    assert results["plain"]["fit"]["history"]["loss"] != results["class_weight"]["fit"]["history"]["loss"]


def test_loop_drives_callbacks_like_fit_single_worker(tmp_path):
    """One local worker of MultiWorkerMirroredStrategy: the loop gives the
    callbacks the same calls, logs (val_ included), history, early stopping
    and mid-epoch stopping as model.fit, and the same weights."""
    results = _run_script(
        tmp_path,
        LOOP_VS_FIT.format(setup="", strategy="tf.distribute.MultiWorkerMirroredStrategy()", batch=32),
    )
    assert results["replicas"] == 1
    _assert_same_training(results)


def test_loop_splits_global_batches_over_local_replicas(tmp_path):
    """Two replicas in one process (the CPU split in two): per-replica
    batches of 16 train exactly like model.fit on global batches of 32,
    uneven last batches (197 = 6 * 32 + 5 samples) included."""
    setup = """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
    results = _run_script(
        tmp_path,
        LOOP_VS_FIT.format(
            setup=textwrap.dedent(setup).replace("\n", "\n    "),
            strategy='tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])',
            batch=16,
        ),
    )
    assert results["replicas"] == 2
    _assert_same_training(results)


def test_run_fit_mirrored_batch_is_per_replica(tmp_path):
    """run_fit under MirroredStrategy regroups per-replica batches into
    global ones, so two replicas at 16 train like one process at 32."""
    results = _run_script(
        tmp_path,
        """
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from dlcli.training.distribute import run_evaluate, run_fit

        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 6)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")

        def train(strategy, batch, per_replica):
            keras.utils.set_random_seed(5)
            with strategy.scope():
                model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
                model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
            h = run_fit(model, strategy, ds, epochs=2, verbose=0, per_replica_batch=per_replica)
            ev = run_evaluate(model, strategy, ds, per_replica_batch=per_replica)
            return h.params["steps"], [w.tolist() for w in model.get_weights()], ev["loss"]

        two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        print(json.dumps({"mirrored": train(two, 16, 16), "single": train(tf.distribute.get_strategy(), 32, None)}))
        """,
    )
    (steps_m, w_m, loss_m), (steps_s, w_s, loss_s) = results["mirrored"], results["single"]
    assert steps_m == steps_s == 8
    for a, b in zip(w_m, w_s):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert loss_m == pytest.approx(loss_s, rel=1e-5)


# -- two real worker processes through `dlcli train` -------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


CONFIG = """\
name: mw
seed: 7
data: {source: npz, path: data.npz, batch_size: 16, validation_split: 0.2, test_split: 0.2}
model:
  layers:
    - Dense: {units: 16, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  optimizer: {class_name: adam, config: {learning_rate: 0.01}}
  metrics: [accuracy]
train:
  epochs: 3
  monitor: val_loss
"""


def _dlcli(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", *args, "--json"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_workers_match_one_process(tmp_path):
    """Two `dlcli train --distribute multi_worker` processes (TF_CONFIG,
    localhost, CPU) finish with identical weights, equal to one process
    training on the same global batch; only the chief writes a run folder."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype("float32")
    y = ((x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 0.8)).astype("int64")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    (tmp_path / "mw.yaml").write_text(CONFIG, encoding="utf-8")

    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        # A user callback on each worker saves its final weights where the
        # test can compare them (the non-chief's run folder is private).
        ckpt = f"[{{ModelCheckpoint: {{filepath: weights-{i}.weights.h5, save_weights_only: true}}}}]"
        procs.append(_dlcli(["mw.yaml", "--distribute", "multi_worker", "--output", "multi", "--set", f"train.callbacks={ckpt}"], tmp_path, env))
    single = _dlcli(["mw.yaml", "--set", "data.batch_size=32", "--output", "single"], tmp_path, ENV)
    outs = []
    for p in [*procs, single]:
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in [*procs, single]:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out))
    chief, other, one = outs

    # Only the chief wrote a run folder under --output.
    assert sorted(str(p.relative_to(tmp_path / "multi")) for p in (tmp_path / "multi").glob("*/*")) == ["mw/1"]
    assert Path(chief["run_dir"]) == Path("multi/mw/1")
    # The other worker's scratch folder is gone once it finished.
    assert not str(other["run_dir"]).startswith("multi") and not Path(other["run_dir"]).exists()

    dist = chief["distribution"]
    assert (dist["strategy"], dist["workers"], dist["replicas"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert (dist["batch_size_per_replica"], dist["global_batch_size"]) == (16, 32)
    assert one["distribution"]["global_batch_size"] == 32

    def weights(path):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3, activation="softmax")])
        model.load_weights(path)
        return model.get_weights()

    w0, w1 = weights(tmp_path / "weights-0.weights.h5"), weights(tmp_path / "weights-1.weights.h5")
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    final = keras.saving.load_model(tmp_path / chief["run_dir"] / "model.keras")
    reference = keras.saving.load_model(tmp_path / one["run_dir"] / "model.keras")
    for a, b in zip(final.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # The same history (val_ metrics included), best epoch and test metrics.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert chief["final"][key] == pytest.approx(one["final"][key], rel=1e-4, abs=1e-5)
        assert other["final"][key] == chief["final"][key]
    assert chief["best"]["epoch"] == one["best"]["epoch"]
    for key in one["test"]:
        assert chief["test"][key] == pytest.approx(one["test"][key], rel=1e-4, abs=1e-5)
    history = (tmp_path / chief["run_dir"] / "history.csv").read_text().splitlines()
    assert len(history) == 4 and "val_accuracy" in history[0]
