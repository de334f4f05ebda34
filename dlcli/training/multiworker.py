"""Multi-worker training: a fit loop of our own (the cluster and the
strategy are `dlcli.training.cluster`).

With Keras 3 (TensorFlow >= 2.16) `model.fit` fails under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585: "Attempt to convert
a value (PerReplica...) to a Tensor"; patched past the symbolic build it
fails again in the metric reduction). The same Keras model, loss,
optimizer and metrics work when a training step of our own drives them:

- each global batch is split evenly over the replicas (every worker reads
  the same pipeline and keeps its own slice, so all workers run the same
  number of steps);
- each replica's loss is weighted by its share of the global batch, and
  the optimizer (built under the strategy) all-reduces the gradients, so a
  step equals one single-process step on the whole global batch;
- metric state (Keras metric variables are summed on read) is all-reduced
  after every step, so every worker sees the same global logs, and
  therefore makes the same callback decisions (early stopping, best epoch);
- `model.stop_training` is all-reduced too, so one worker stopping (a
  signal, a NaN) stops them all instead of leaving the others waiting in a
  collective.

`fit` drives Keras callbacks exactly like `model.fit` (train, epoch and
batch hooks, test hooks during validation, `val_` logs, a `History`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

# -- input ---------------------------------------------------------------


def distribute_dataset(
    strategy: Any, dataset: Any, per_replica_batch: Optional[int] = None, *, training: bool = True
) -> Any:
    """Split each global batch of `dataset` evenly over all replicas.

    Every worker reads the whole pipeline (so every worker runs the same
    number of steps, in the same order as a single process would) and keeps
    its own replicas' slices. For training, a final batch with fewer samples
    than replicas is skipped, so no replica ever trains on an empty batch
    (BatchNormalization would turn that into NaN statistics); evaluation
    keeps every sample.

    Args:
        strategy: the strategy.
        dataset: batched `(x, y[, sample_weight])` elements.
        per_replica_batch: the batch size `dataset` was batched with, taken
            as per replica: batches are regrouped into global batches of
            `per_replica_batch * replicas`. None: batches are global already.
        training: skip a final batch smaller than the number of replicas.

    Returns:
        A `tf.distribute.DistributedDataset`.
    """
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    global_batch = per_replica_batch * replicas if per_replica_batch else None

    def dataset_fn(ctx: Any) -> Any:
        ds = dataset.rebatch(global_batch) if global_batch and replicas > 1 else dataset
        local = replicas // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * local

        def batch_len(*element: Any) -> Any:
            return tf.shape(tf.nest.flatten(element)[0])[0]

        def pieces(*element: Any) -> Any:
            n = batch_len(*element)

            def piece(j: Any) -> Any:
                i = tf.cast(first + j, tf.int32)
                start, end = n * i // replicas, n * (i + 1) // replicas
                sliced = tf.nest.map_structure(lambda t: t[start:end], element)
                return sliced if len(sliced) > 1 else sliced[0]

            return tf.data.Dataset.range(local).map(piece)

        if training:
            ds = ds.filter(lambda *e: batch_len(*e) >= replicas)
        return ds.flat_map(pieces).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _with_class_weight(dataset: Any, class_weight: Optional[dict[int, float]]) -> Any:
    """Turn class weights into sample weights, as `model.fit` does."""
    if not class_weight:
        return dataset
    import tensorflow as tf

    table = tf.constant([float(class_weight.get(c, 1.0)) for c in range(max(class_weight) + 1)])

    def add_weights(*element: Any) -> Any:
        if len(element) > 2:
            raise ValueError("class_weight and sample weights cannot be used together")
        x, y = element
        if isinstance(y, (dict, list, tuple)):
            raise ValueError("class_weight needs a model with a single output")
        if y.shape.rank is not None and y.shape.rank >= 2:
            classes = tf.cond(
                tf.shape(y)[-1] > 1,
                lambda: tf.argmax(y, axis=-1, output_type=tf.int32),
                lambda: tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32),
            )
        else:
            classes = tf.cast(tf.round(y), tf.int32)
        return x, y, tf.gather(table, classes)

    return dataset.map(add_weights)


def global_steps(dataset: Any, replicas: int) -> Optional[int]:
    """Steps per epoch once the per-replica batches of `dataset` are grouped
    by `replicas` (None when its length is unknown)."""
    try:
        n = int(dataset.cardinality())
    except Exception:  # noqa: BLE001 - an unknown cardinality is fine
        return None
    return -(-n // replicas) if n > 0 else None


# -- the loop ------------------------------------------------------------


class DistributedLoop:
    """Training and evaluation steps for a compiled model under `strategy`.

    Args:
        model: a model built and compiled under `strategy.scope()`.
        strategy: the (multi-worker) strategy.
    """

    def __init__(self, model: Any, strategy: Any) -> None:
        import keras
        import tensorflow as tf

        self.model = model
        self.strategy = strategy
        # Keras's own loss tracker ("loss", a Mean weighted by batch size).
        self.loss_tracker = next(
            (m for m in model.metrics if m.name == "loss" and isinstance(m, keras.metrics.Mean)), None
        )
        self._train_fn = tf.function(self._train_on, reduce_retracing=True)
        self._test_fn = tf.function(self._test_on, reduce_retracing=True)
        self._stop_fn = tf.function(self._any_replica)
        self._built = False

    # The metric list is read after the symbolic build (compile metrics are
    # created lazily from the first batch's shapes).
    def _metric_variables(self) -> list[Any]:
        return [v for m in self.model.metrics for v in m.variables]

    def build(self, element_spec: Any) -> None:
        """Create every variable (compile metrics, optimizer slots) in
        cross-replica context, before any step runs inside a replica."""
        if self._built:
            return
        import tensorflow as tf

        with self.strategy.scope():
            # What model.fit does first; given the local batch's structure
            # (not a PerReplica value) it works under any strategy.
            self.model._symbolic_build(data_batch=tf.nest.map_structure(lambda s: s, element_spec))
        self._built = True

    # -- replica context -------------------------------------------------
    def _step(self, data: Any, training: bool) -> list[Any]:
        import keras
        import tensorflow as tf

        model = self.model
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        ctx = tf.distribute.get_replica_context()
        n = tf.cast(tf.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0], "float32")
        n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n)
        replicas = float(self.strategy.num_replicas_in_sync)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=training)
            # Keras's losses come back already divided by the number of
            # replicas (so that summing the replicas' gradients averages
            # them); the tracker, like model.fit's, records the undivided
            # value, weighted by this replica's batch size.
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=training)
            if self.loss_tracker is not None:
                self.loss_tracker.update_state(loss * tf.cast(replicas, loss.dtype), sample_weight=n)
            # Averaging the replicas' batch means is the global batch mean
            # only when every replica holds an equal batch; weighting each by
            # its share of the global batch keeps an uneven last batch exact
            # too (the factor is 1 for equal batches, i.e. Keras's own step).
            scaled = loss * tf.cast(replicas * n / n_global, loss.dtype)
            if training and model.optimizer is not None:
                scaled = model.optimizer.scale_loss(scaled)
        if training and model.trainable_weights:
            grads = tape.gradient(scaled, model.trainable_weights)
            model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
        model.compute_metrics(x, y, y_pred, sample_weight=sw)
        return self._reduced_metric_state(ctx)

    def _reduced_metric_state(self, ctx: Any) -> list[Any]:
        """Every metric variable, reduced over all replicas as its
        aggregation says (Keras metric state is summed)."""
        import tensorflow as tf

        # identity: a metric variable's read carries no device, which the
        # all-reduce needs to place its result.
        values = [tf.identity(v.value) for v in self._metric_variables()]
        kinds = [getattr(v, "aggregation", "sum") for v in self._metric_variables()]
        sums = [i for i, k in enumerate(kinds) if k == "sum"]
        means = [i for i, k in enumerate(kinds) if k == "mean"]
        out = list(values)
        if sums:
            for i, r in zip(sums, ctx.all_reduce(tf.distribute.ReduceOp.SUM, [values[i] for i in sums])):
                out[i] = r
        if means:
            for i, r in zip(means, ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [values[i] for i in means])):
                out[i] = r
        return out

    def _any_replica(self, flag: Any) -> Any:
        import tensorflow as tf

        def reduce(f: Any) -> Any:
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(f))

        out = self.strategy.run(reduce, args=(flag,))
        return self.strategy.experimental_local_results(out)[0]

    # -- cross-replica context -------------------------------------------
    def _logs(self, state: list[Any]) -> dict[str, Any]:
        """Metric results computed from the reduced state (the variables
        themselves keep each replica's own running totals)."""
        logs: dict[str, Any] = {}
        i = 0
        for metric in self.model.metrics:
            k = len(metric.variables)
            result = metric.stateless_result(state[i : i + k])
            i += k
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
        return logs

    def _train_on(self, data: Any) -> dict[str, Any]:
        out = self.strategy.run(self._step, args=(data, True))
        return self._logs(self.strategy.experimental_local_results(out)[0])

    def _test_on(self, data: Any) -> dict[str, Any]:
        out = self.strategy.run(self._step, args=(data, False))
        return self._logs(self.strategy.experimental_local_results(out)[0])

    def should_stop(self) -> bool:
        """`model.stop_training` of any worker, agreed by all workers."""
        import tensorflow as tf

        flag = tf.constant(1 if self.model.stop_training else 0, tf.int32)
        stop = bool(int(self._stop_fn(flag)))
        self.model.stop_training = stop
        return stop

    def train_step(self, data: Any) -> dict[str, Any]:
        """One training step on a distributed batch; the global logs."""
        return self._train_fn(data)

    def test_step(self, data: Any) -> dict[str, Any]:
        """One evaluation step on a distributed batch; the global logs."""
        return self._test_fn(data)


def _pythonify(logs: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for k, v in logs.items():
        a = np.asarray(v)
        out[k] = float(a) if a.ndim == 0 else a
    return out


def _loop(model: Any, strategy: Any) -> DistributedLoop:
    # One loop per model, so its traced step functions are reused across
    # epochs, phases and the final evaluation.
    loop = getattr(model, "_dlcli_distributed_loop", None)
    if loop is None or loop.strategy is not strategy:
        loop = DistributedLoop(model, strategy)
        model._dlcli_distributed_loop = loop
    return loop


def fit(
    model: Any,
    strategy: Any,
    x: Any,
    *,
    validation_data: Any = None,
    epochs: int = 1,
    initial_epoch: int = 0,
    callbacks: Optional[list[Any]] = None,
    class_weight: Optional[dict[int, float]] = None,
    per_replica_batch: Optional[int] = None,
    verbose: Any = 0,
) -> Any:
    """Train like `model.fit(x, validation_data=..., ...)` on several workers.

    Args:
        model: built and compiled under `strategy.scope()`.
        strategy: a MultiWorkerMirroredStrategy (any tf.distribute strategy
            works).
        x: a batched `tf.data.Dataset` of `(x, y[, sample_weight])`.
        validation_data: a batched dataset, or None.
        epochs: the epoch to stop at (as in `model.fit`).
        initial_epoch: the epoch to start from (resume).
        callbacks: Keras callbacks; they get the same calls and logs as from
            `model.fit`, with metrics reduced over all workers.
        class_weight: {class index: weight}, as in `model.fit`.
        per_replica_batch: the batch size of `x` and `validation_data`,
            meant per replica (see `distribute_dataset`); None: global.
        verbose: ignored (progress is a callback in dlcli); kept for
            `model.fit` compatibility.

    Returns:
        The `keras.callbacks.History` of the run (also `model.history`).
    """
    import keras

    del verbose
    loop = _loop(model, strategy)
    train_ds = _with_class_weight(x, class_weight)
    loop.build(train_ds.element_spec)
    dist_train = distribute_dataset(strategy, train_ds, per_replica_batch)
    dist_val = distribute_dataset(strategy, validation_data, per_replica_batch, training=False) if validation_data is not None else None
    steps = global_steps(x, strategy.num_replicas_in_sync if per_replica_batch else 1)

    cbs = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=False, model=model, verbose=0, epochs=epochs, steps=steps
    )
    model.stop_training = False
    cbs.on_train_begin()
    training_logs: Optional[dict[str, Any]] = None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        logs = _run_batches(dist_train, loop.train_step, cbs.on_train_batch_begin, cbs.on_train_batch_end,
                            stop=loop.should_stop)
        epoch_logs = dict(logs)
        if dist_val is not None:
            val_logs = _evaluate(loop, dist_val, cbs)
            epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if loop.should_stop():
            break
    cbs.on_train_end(logs=training_logs)
    return model.history


def _run_batches(dist_dataset: Any, step_fn: Callable[[Any], dict[str, Any]], on_begin: Callable[..., Any],
                 on_end: Callable[..., Any], stop: Optional[Callable[[], bool]] = None) -> dict[str, Any]:
    """Run `step_fn` on every distributed batch between the batch hooks.

    Args:
        dist_dataset: a distributed dataset.
        step_fn: the loop's train or test step.
        on_begin: the callbacks' batch-begin hook (`on_train_batch_begin`).
        on_end: the batch-end hook, given the step's logs.
        stop: asked after every batch (a collective: every worker asks it
            equally often); True ends the pass.

    Returns:
        The last batch's logs ({} for an empty dataset).
    """
    logs: dict[str, Any] = {}
    for step, data in enumerate(dist_dataset):
        on_begin(step)
        logs = _pythonify(step_fn(data))
        on_end(step, logs)
        if stop is not None and stop():
            break
    return logs


def _evaluate(loop: DistributedLoop, dist_dataset: Any, cbs: Any) -> dict[str, Any]:
    loop.model.reset_metrics()
    cbs.on_test_begin()
    logs = _run_batches(dist_dataset, loop.test_step, cbs.on_test_batch_begin, cbs.on_test_batch_end)
    cbs.on_test_end(logs)
    return logs


def evaluate(
    model: Any,
    strategy: Any,
    x: Any,
    *,
    callbacks: Optional[list[Any]] = None,
    per_replica_batch: Optional[int] = None,
) -> dict[str, float]:
    """Like `model.evaluate(x, return_dict=True)` on several workers.

    Returns:
        {metric name: value}, reduced over all workers (identical on each).
    """
    import keras

    loop = _loop(model, strategy)
    loop.build(x.element_spec)
    dist = distribute_dataset(strategy, x, per_replica_batch, training=False)
    cbs = keras.callbacks.CallbackList(callbacks, model=model)
    return _evaluate(loop, dist, cbs)
