"""Compile a model and build callbacks from a config, through Keras.

Losses, optimizers, learning-rate schedules, metrics and callbacks are
looked up with Keras's own `get()` / `deserialize()` and module attributes,
so every name Keras knows works. dlcli adds only what Keras lacks:

- close-name suggestions when a name or an argument is wrong;
- the `{ClassName: {kwargs}}` short form (as for layers);
- a learning-rate schedule given as `{class_name, config}` inside an
  optimizer's config, which `keras.optimizers.get` cannot read;
- the names `ctc` (keras.losses.CTC) and `ctc_sequence_accuracy` /
  `sequence_accuracy` (greedy-decoding exact match, see `ctc.py`);
- `steps_per_execution: auto`, which Keras 3 does not have.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import keras

from dlcli.config import refs
from dlcli.model._common import cfg_error, check_kwargs, did_you_mean, public_names, short_message, user_object
from dlcli.model.ctc import CTCSequenceAccuracy

# Names Keras has no object for; everything else goes through Keras.
_DLCLI_LOSSES = {"ctc": keras.losses.CTC}
_DLCLI_METRICS = {"ctc_sequence_accuracy": CTCSequenceAccuracy, "sequence_accuracy": CTCSequenceAccuracy}
# Strings model.compile() itself turns into the right accuracy/crossentropy
# for the targets' shape (keras/src/trainers/compile_utils.py); keras.metrics.get
# does not know them, so they are passed through as strings.
_COMPILE_METRIC_STRINGS = {"accuracy", "acc", "crossentropy", "ce"}

# Above this many parameters one step already outweighs the Python overhead
# that steps_per_execution saves.
_LARGE_MODEL_PARAMS = 1_000_000
_MAX_STEPS_PER_EXECUTION = 32
# Keras reports progress once per call: keep about this many per epoch, so
# the progress bar moves (a few more calls cost milliseconds).
_UPDATES_PER_EPOCH = 10


def _as_class_config(ref: Any) -> Any:
    """`{ClassName: {kwargs}}` -> `{class_name, config}`; anything else as is."""
    if isinstance(ref, Mapping) and "class_name" not in ref and len(ref) == 1:
        ((name, kwargs),) = ref.items()
        return {"class_name": name, "config": dict(kwargs or {})}
    if isinstance(ref, Mapping):
        return {"class_name": ref.get("class_name"), "config": dict(ref.get("config") or {})}
    return ref


def _ref_name(ref: Any) -> str:
    return str(ref["class_name"]) if isinstance(ref, Mapping) else str(ref)


def _known_class(module: Any, name: str) -> Optional[type]:
    """A class of a Keras module by name, as `deserialize` would find it."""
    obj = getattr(module, str(name), None)
    return obj if isinstance(obj, type) else None


def _check_config_keys(module: Any, ref: Any, *, cfg: Any, key: str, base: type) -> None:
    """Check `{class_name, config}` config keys against the class signature."""
    if not isinstance(ref, Mapping):
        return
    cls = _known_class(module, ref["class_name"])
    if cls is None:
        try:
            cls = type(module.get(ref["class_name"]))
        except Exception:  # noqa: BLE001 - unknown names are reported by the caller
            return
    if isinstance(cls, type) and issubclass(cls, base):
        check_kwargs(cls, ref["config"], cfg=cfg, key=key, what=cls.__name__)


def _own_object(spec: Any, builtins: Mapping[str, type], module: Any, base: type, *,
                cfg: Any, key: str, kind: str) -> tuple[Any, Any, str]:
    """A user's object (`import:`) or dlcli's own class for `spec`, else None.

    Args:
        spec: the loss or metric as written in the config.
        builtins: dlcli's classes for names Keras has no object for.
        module: `keras.losses` or `keras.metrics`, whose classes check the
            arguments of a `{class_name, config}` reference.
        base: the Keras base class a user object must subclass.
        cfg: the Config, for error locations.
        key: the key path of `spec`.
        kind: "loss" or "metric", for messages.

    Returns:
        `(obj, ref, name)`: the object (None when Keras resolves it), the
        reference in `{class_name, config}` form and its name.

    Raises:
        ConfigError: arguments the class does not take.
    """
    user = user_object(spec, cfg=cfg, key=key, kind=kind, base=base)
    if user is not None:
        return user, spec, ""
    ref = _as_class_config(spec)
    name = _ref_name(ref)
    if name in builtins:
        config = ref["config"] if isinstance(ref, Mapping) else {}
        cls = builtins[name]
        check_kwargs(cls, config, cfg=cfg, key=key, what=f"{kind} '{name}'")
        return cls(**config), ref, name
    if isinstance(ref, Mapping):
        _check_config_keys(module, ref, cfg=cfg, key=key, base=base)
    return None, ref, name


def resolve_loss(loss: Any, *, cfg: Any = None, key: str = "compile.loss") -> Any:
    """Resolve a loss as written in a config to what `model.compile` takes.

    Args:
        loss: a name (`sparse_categorical_crossentropy`, `mse`, `ctc`), a
            `{class_name, config}` mapping, or `{ClassName: {kwargs}}`.
        cfg: the Config, for error locations.
        key: the key path of the loss.

    Returns:
        A Keras loss function or Loss instance.

    Raises:
        ConfigError: unknown name (with a suggestion) or bad arguments.
    """
    obj, ref, name = _own_object(loss, _DLCLI_LOSSES, keras.losses, keras.losses.Loss, cfg=cfg, key=key, kind="loss")
    if obj is not None:
        return obj
    try:
        return keras.losses.get(ref)
    except (ValueError, TypeError) as exc:
        raise _unknown(cfg, key, "loss", name, exc, public_names(keras.losses) + list(_DLCLI_LOSSES)) from None


def resolve_optimizer(optimizer: Any, *, cfg: Any = None, key: str = "compile.optimizer",
                      run: Optional[Mapping[str, Optional[int]]] = None,
                      learning_rate: Optional[float] = None) -> keras.optimizers.Optimizer:
    """Resolve an optimizer, with a learning-rate schedule where given.

    Args:
        optimizer: a name (`adam`), `{class_name, config}` or
            `{ClassName: {kwargs}}`; `config.learning_rate` may itself be a
            schedule `{class_name: ExponentialDecay, config: {...}}`.
        cfg: the Config, for error locations.
        key: the key path of the optimizer.
        learning_rate: a constant rate in place of the configured one
            (fine-tuning's second phase).

    Returns:
        A fresh Keras optimizer.

    Raises:
        ConfigError: unknown optimizer or schedule (with a suggestion), or
            arguments the class does not take.
    """
    ref = _as_class_config(optimizer)
    name = _ref_name(ref)
    if learning_rate is not None:
        ref = ref if isinstance(ref, Mapping) else {"class_name": ref, "config": {}}
        ref = {"class_name": ref["class_name"], "config": {**ref["config"], "learning_rate": learning_rate}}
    if isinstance(ref, Mapping):
        config = dict(ref["config"])
        lr = config.get("learning_rate")
        if isinstance(lr, Mapping):
            config["learning_rate"] = resolve_schedule(lr, cfg=cfg, key=f"{key}.config.learning_rate", run=run)
        ref = {"class_name": ref["class_name"], "config": config}
        cls = _optimizer_class(name)
        if cls is not None:
            check_kwargs(cls, config, cfg=cfg, key=key, what=cls.__name__)
    try:
        opt = keras.optimizers.get(ref)
    except (ValueError, TypeError) as exc:
        raise _unknown(cfg, key, "optimizer", name, exc, _optimizer_names()) from None
    return opt


def _optimizer_names() -> list[str]:
    # Base classes and wrappers are not optimizers a config can name.
    skip = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer", "OptimizerMap", "legacy", "schedules"}
    return [n for n in public_names(keras.optimizers) if n not in skip]


def _optimizer_class(name: str) -> Optional[type]:
    """The optimizer class for a name as keras.optimizers.get spells it."""
    cls = _known_class(keras.optimizers, name)
    if cls is not None:
        return cls
    for candidate in _optimizer_names():
        if candidate.lower() == str(name).lower():
            return _known_class(keras.optimizers, candidate)
    return None


def resolve_schedule(schedule: Any, *, cfg: Any = None, key: str = "compile.optimizer.config.learning_rate",
                     run: Optional[Mapping[str, Optional[int]]] = None) -> Any:
    """Resolve a learning-rate schedule `{class_name, config}` through Keras,
    or the user's own by dotted path.

    Args:
        schedule: `{class_name, config}` or `{ClassName: {kwargs}}`; a config
            value may be an expression of `steps_per_epoch`, `epochs` and
            `total_steps` (`dlcli.config.refs`).
        cfg: the Config, for error locations.
        key: the key path of the schedule.
        run: `steps_per_epoch` and `epochs` of the run, for expressions.

    Raises:
        ConfigError: unknown schedule (with a suggestion), bad arguments, an
            expression that is wrong or needs a value not known.
    """
    ref = _as_class_config(schedule)
    if not isinstance(ref, Mapping) or not ref.get("class_name"):
        raise cfg_error(cfg, key, f"a learning-rate schedule is {{class_name: ..., config: {{...}}}}, got {schedule!r}")
    locate = getattr(cfg, "error", None)
    config = {k: refs.evaluate(v, run or {}, key=f"{key}.config.{k}", locate=locate) if refs.is_reference(k, v) else v
              for k, v in ref["config"].items()}
    ref = {**ref, "config": config}
    user = user_object(ref, cfg=cfg, key=key, kind="learning-rate schedule", base=keras.optimizers.schedules.LearningRateSchedule)
    if user is not None:
        return user
    cls = _known_class(keras.optimizers.schedules, ref["class_name"])
    if cls is not None:
        check_kwargs(cls, ref["config"], cfg=cfg, key=key, what=cls.__name__)
    names = [n for n in public_names(keras.optimizers.schedules) if n != "LearningRateSchedule"]
    try:
        schedule = keras.optimizers.schedules.deserialize(ref)
    except (ValueError, TypeError) as exc:
        raise _unknown(cfg, key, "learning-rate schedule", ref["class_name"], exc, names) from None
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        # Keras hands an unknown class name back as a plain string.
        raise cfg_error(cfg, key, f"unknown learning-rate schedule '{ref['class_name']}'", hint=did_you_mean(ref["class_name"], names))
    return schedule


def resolve_metrics(metrics: Any, *, cfg: Any = None, key: str = "compile.metrics") -> list[Any]:
    """Resolve a list of metrics; plain Keras names stay strings.

    Strings stay strings so that `model.compile` can turn `accuracy` into
    the sparse, categorical or binary accuracy that fits the targets, as it
    does for a model written by hand.

    Returns:
        A list of metric names and Metric instances.

    Raises:
        ConfigError: at `compile.metrics.<i>` for an unknown metric.
    """
    out: list[Any] = []
    for i, metric in enumerate(metrics or []):
        out.append(_resolve_metric(metric, cfg=cfg, key=f"{key}.{i}"))
    return out


def _resolve_metric(metric: Any, *, cfg: Any, key: str) -> Any:
    obj, ref, name = _own_object(metric, _DLCLI_METRICS, keras.metrics, keras.metrics.Metric, cfg=cfg, key=key, kind="metric")
    if obj is not None:
        return obj
    if isinstance(ref, str) and ref in _COMPILE_METRIC_STRINGS:
        return ref
    try:
        obj = keras.metrics.get(ref)
    except (ValueError, TypeError) as exc:
        names = public_names(keras.metrics) + sorted(_COMPILE_METRIC_STRINGS | set(_DLCLI_METRICS))
        raise _unknown(cfg, key, "metric", name, exc, names) from None
    return ref if isinstance(ref, str) else obj


def _unknown(cfg: Any, key: str, kind: str, name: str, exc: BaseException, candidates: list[str]) -> Exception:
    """A located error for a name Keras does not know (or rejected)."""
    message = short_message(exc)
    if "Could not interpret" in message or "Could not locate" in message or "Unknown" in message:
        return cfg_error(cfg, key, f"unknown {kind} '{name}'", hint=did_you_mean(name, candidates))
    return cfg_error(cfg, key, f"{kind} '{name}': {message}")


def auto_steps_per_execution(model: keras.Model, steps_per_epoch: Optional[int] = None) -> int:
    """Pick steps_per_execution for `auto` (Keras 3 has no automatic value).

    Small models spend most of a step in Python and tf.function dispatch;
    running several batches per call hides that. Large models gain nothing
    and their progress updates would only get coarser.

    Args:
        model: a built model.
        steps_per_epoch: batches per epoch, where known.

    Returns:
        1 for models over ~1M parameters, else a tenth of the epoch (so
        progress updates about ten times an epoch), at most 32.
    """
    if model.count_params() > _LARGE_MODEL_PARAMS:
        return 1
    if steps_per_epoch:
        per_update = -(-int(steps_per_epoch) // _UPDATES_PER_EPOCH)
        return max(1, min(_MAX_STEPS_PER_EXECUTION, per_update))
    return _MAX_STEPS_PER_EXECUTION


def compile_model(
    model: keras.Model, cfg: Any, *, steps_per_epoch: Optional[int] = None, optimizer: Optional[Any] = None
) -> None:
    """Compile `model` with the loss, optimizer and metrics of `cfg.compile`.

    Several outputs share the loss and the metrics unless the config gives
    one per output (a mapping by output name, or a list).

    Args:
        model: a built, uncompiled (or to be recompiled) model.
        cfg: the Config.
        steps_per_epoch: batches per epoch, for `steps_per_execution: auto`
            and schedule values written as `steps_per_epoch`, `total_steps`.
        optimizer: a Keras optimizer in place of `compile.optimizer`'s.

    Raises:
        ConfigError: located at `compile.loss`, `compile.optimizer`,
            `compile.metrics.<i>` and so on.
    """
    c = cfg.compile
    loss = _resolve_losses(model, c.loss, cfg)
    _check_ctc_logits(model, c.loss, cfg)
    run = {"steps_per_epoch": steps_per_epoch, "epochs": getattr(getattr(cfg, "train", None), "epochs", None)}
    optimizer = optimizer if optimizer is not None else resolve_optimizer(c.optimizer, cfg=cfg, run=run)
    metrics = _per_output_metrics(model, c.metrics if c.metrics is not None else default_metrics(model, c.loss), cfg)
    if c.steps_per_execution == "auto":
        spe = auto_steps_per_execution(model, steps_per_epoch)
    else:
        spe = int(c.steps_per_execution)
    kwargs: dict[str, Any] = {"optimizer": optimizer, "loss": loss, "metrics": metrics, "steps_per_execution": spe,
                              "jit_compile": c.jit_compile}
    if c.loss_weights is not None:
        kwargs["loss_weights"] = c.loss_weights
    try:
        model.compile(**kwargs)
    except (ValueError, TypeError) as exc:
        raise cfg_error(cfg, "compile", f"Keras cannot compile the model: {short_message(exc)}") from None


def _output_names(model: keras.Model) -> list[str]:
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [t.name for t in model.outputs]


def _resolve_losses(model: keras.Model, loss: Any, cfg: Any) -> Any:
    """One loss for every output, or one per output (by name or position)."""
    names = _output_names(model)
    if len(names) > 1 and isinstance(loss, Mapping) and loss and set(loss) <= set(names):
        return {k: resolve_loss(v, cfg=cfg, key=f"compile.loss.{k}") for k, v in loss.items()}
    if len(names) > 1 and isinstance(loss, list):
        if len(loss) != len(names):
            raise cfg_error(cfg, "compile.loss", f"{len(loss)} losses for {len(names)} outputs ({', '.join(names)})")
        return [resolve_loss(v, cfg=cfg, key=f"compile.loss.{i}") for i, v in enumerate(loss)]
    # Keras applies a single loss to every output itself.
    return resolve_loss(loss, cfg=cfg)


# Losses whose targets are classes: `accuracy` means something for them.
_CLASSIFICATION_LOSSES = ("crossentropy", "hinge", "focal")


def default_metrics(model: keras.Model, loss: Any) -> Any:
    """The metrics of a config that lists none: accuracy for a classification
    loss, nothing for a regression or reconstruction loss (an `accuracy` of
    a mean squared error is a meaningless 0), per output for a loss mapping."""
    names = _output_names(model)
    if isinstance(loss, Mapping) and len(names) > 1 and loss and set(loss) <= set(names):
        return {k: default_metrics(model, v) for k, v in loss.items()}
    name = _ref_name(_as_class_config(loss)).lower().replace("_", "")
    return ["accuracy"] if any(word in name for word in _CLASSIFICATION_LOSSES) else []


def _per_output_metrics(model: keras.Model, metrics: Any, cfg: Any) -> Any:
    names = _output_names(model)
    if isinstance(metrics, Mapping):
        unknown = [k for k in metrics if k not in names]
        if unknown:
            raise cfg_error(cfg, "compile.metrics", f"no model output named '{unknown[0]}'",
                            hint=did_you_mean(unknown[0], names) or f"outputs: {', '.join(names)}")
        return {k: resolve_metrics(v, cfg=cfg, key=f"compile.metrics.{k}") for k, v in metrics.items()}
    resolved = resolve_metrics(metrics, cfg=cfg)
    if len(names) > 1:
        # The same metrics on every output, each output with its own objects.
        return {n: (resolved if i == 0 else resolve_metrics(metrics, cfg=cfg)) for i, n in enumerate(names)}
    return resolved


def _check_ctc_logits(model: keras.Model, loss: Any, cfg: Any) -> None:
    """CTC takes logits; a softmax on the last layer silently ruins training."""
    if _ref_name(_as_class_config(loss)).lower() != "ctc":
        return
    last = model.layers[-1] if model.layers else None
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        raise cfg_error(
            cfg, "compile.loss", f"the ctc loss takes logits, but the last layer '{last.name}' applies softmax",
            hint="drop `activation: softmax` from the last layer (decoding takes the argmax either way)",
        )
