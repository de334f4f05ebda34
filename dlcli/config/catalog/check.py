"""Checking a config against the Keras catalogue, without TensorFlow.

`dlcli validate` must answer in a fraction of a second, so it cannot ask
Keras whether `Conv2d` is a layer; it reads the catalogue generated from
Keras (`dlcli.config.catalog.generate`, found by `store.get_catalog`).
`check_config` runs every check; the single checks (`check_loss`,
`check_layer_kwargs`, ...) raise `ConfigError`, located at the file and
line when given a `cfg`. Layer entries are checked in `check_layers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from dlcli.config.catalog.check_layers import BACKBONE, REF_KEYS, check_args, check_layer_kwargs, check_layer_name, locator
from dlcli.config.catalog.store import get_catalog, installed_keras_version
from dlcli.config.graph import fail, in_context, kind, model_graph, parse_entry
from dlcli.config.imports import check_import_path, user_path
from dlcli.config.suggest import closest, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.config.schema import Config

EXTRA_LOSSES = ("ctc",)
EXTRA_METRICS = ("ctc_sequence_accuracy", "sequence_accuracy")


def _check_mapping_ref(label: str, ref: dict, key_path: str, cfg: Optional["Config"]) -> str:
    """The class name of a `{class_name, config}` reference, its keys checked."""
    if "class_name" not in ref:
        near = next((k for k in ref if isinstance(k, str) and closest(k, REF_KEYS)), None)
        hint = did_you_mean(near, REF_KEYS) if near is not None else None
        raise fail(cfg, key_path, f"a {label} mapping needs class_name (and optionally config)", hint)
    for k in ref:
        if k not in REF_KEYS:
            raise fail(cfg, f"{key_path}.{k}", f"unexpected key '{k}' in a {label} reference",
                       did_you_mean(k, REF_KEYS) or "use class_name and config")
    name = ref["class_name"]
    if not isinstance(name, str) or not name:
        raise fail(cfg, f"{key_path}.class_name", f"class_name must be a {label} class name, got {kind(name)}")
    config = ref.get("config")
    if config is not None and not isinstance(config, dict):
        raise fail(cfg, f"{key_path}.config", f"config must be a mapping of {name}'s arguments, got {kind(config)}")
    return name


def _check_ref(category: str, label: str, ref: Any, key_path: str, cfg: Optional["Config"],
               extras: tuple = ()) -> Optional[str]:
    """Check a `name` or `{class_name, config}` reference; return the target."""
    user = user_path(ref)
    if user is not None:  # the user's own class or function (dlcli.config.imports)
        where = key_path
        if isinstance(ref, dict) and ("module" in ref or "class_name" in ref):
            where = f"{key_path}.{'module' if 'module' in ref else 'class_name'}"
        check_import_path(user[0], where, locator(cfg), kind=label, functions=True)
        return user[0]
    cat = get_catalog()
    if isinstance(ref, str):
        if ref in extras or cat is None or cat.accepts(category, ref):
            return ref
        hint = did_you_mean(ref, cat.names(category) + list(extras))
        if hint is None and cat.dict_target(category, ref) is not None:
            hint = f"{ref} needs arguments: write {{class_name: {ref}, config: {{...}}}}"
        raise fail(cfg, key_path, f"unknown {label} '{ref}'", hint)
    if not isinstance(ref, dict):
        raise fail(cfg, key_path, f"expected a {label} name or {{class_name: ..., config: {{...}}}}, got {kind(ref)}")
    name = _check_mapping_ref(label, ref, key_path, cfg)
    if name in extras or cat is None:
        return name
    target = cat.dict_target(category, name)
    if target is None and cat.accepts(category, name):
        # `mse`: Keras takes it as a name, but deserializes no such class.
        raise fail(cfg, f"{key_path}.class_name", f"'{name}' is a {label} name, not a class_name",
                   f"write {key_path}: {name}, or a class with its config")
    if target is None:
        raise fail(cfg, f"{key_path}.class_name", f"unknown {label} '{name}'",
                   did_you_mean(name, cat.dict_names(category) + list(extras)))
    info = cat.arguments(category, target)
    config = ref.get("config")
    if info is not None and config:
        check_args(target, dict(config), info, f"{key_path}.config", cfg)
    return target


def check_loss(ref: Any, key_path: str = "compile.loss", *, cfg: Optional["Config"] = None,
               outputs: Optional[list[str]] = None) -> None:
    """Check a loss: a Keras name (`mse`), `{class_name, config}`, dlcli's `ctc`,
    or, for a model with named outputs, a mapping of output name to loss.

    Raises:
        ConfigError: an unknown loss or argument, with the closest.
    """
    if isinstance(ref, dict) and "class_name" not in ref and outputs and all(k in outputs for k in ref):
        for out, sub in ref.items():
            check_loss(sub, f"{key_path}.{out}", cfg=cfg)
        return
    _check_ref("losses", "loss", ref, key_path, cfg, EXTRA_LOSSES)


def check_metric(ref: Any, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a metric: a Keras name, `{class_name, config}` or dlcli's own.

    Raises:
        ConfigError: an unknown metric or argument, with the closest.
    """
    _check_ref("metrics", "metric", ref, key_path, cfg, EXTRA_METRICS)


def check_schedule(ref: Any, key_path: str, *, cfg: Optional["Config"] = None) -> None:
    """Check a learning-rate schedule `{class_name: ExponentialDecay, config: {...}}`.

    Raises:
        ConfigError: an unknown schedule or argument, with the closest.
    """
    if isinstance(ref, str):
        raise fail(cfg, key_path, f"expected a number or a schedule {{class_name: ..., config: {{...}}}}, got {ref!r}")
    _check_ref("schedules", "learning-rate schedule", ref, key_path, cfg)
    from dlcli.config import refs

    config = ref.get("config") if isinstance(ref, dict) else None
    for arg, value in (config or {}).items():
        problem = refs.check(value) if refs.is_reference(arg, value) else None
        if problem:
            raise fail(cfg, f"{key_path}.config.{arg}", problem, f"a number, or an expression of {', '.join(refs.NAMES)}")


def check_optimizer(ref: Any, key_path: str = "compile.optimizer", *, cfg: Optional["Config"] = None) -> None:
    """Check an optimizer name or `{class_name, config}`, including a
    learning-rate schedule given as its `learning_rate`.

    Raises:
        ConfigError: an unknown optimizer, argument or schedule.
    """
    _check_ref("optimizers", "optimizer", ref, key_path, cfg)
    if isinstance(ref, dict) and isinstance(ref.get("config"), dict):
        lr = ref["config"].get("learning_rate")
        lr_path = f"{key_path}.config.learning_rate"
        if isinstance(lr, (dict, str)):
            check_schedule(lr, lr_path, cfg=cfg)
        elif lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
            raise fail(cfg, lr_path, f"expected a number or a schedule {{class_name: ..., config: {{...}}}}, got {kind(lr)}")


def check_callback(class_name: str, kwargs: dict[str, Any], key_path: str, args_path: Optional[str] = None, *,
                   cfg: Optional["Config"] = None) -> None:
    """Check a Keras callback name and its arguments.

    Raises:
        ConfigError: an unknown callback or argument, with the closest.
    """
    if "." in class_name:
        check_import_path(class_name, key_path, locator(cfg), kind="callback")
        return
    cat = get_catalog()
    if cat is None:
        return
    target = cat.dict_target("callbacks", class_name)
    if target is None:
        raise fail(cfg, key_path, f"unknown callback '{class_name}'", did_you_mean(class_name, cat.names("callbacks")))
    info = cat.arguments("callbacks", target)
    if info is not None:
        check_args(class_name, kwargs, info, args_path or f"{key_path}.{class_name}", cfg)


def check_data(cfg: "Config") -> None:
    """Check the data source name, the keys it needs and the augment layers.

    Raises:
        ConfigError: an unknown source, or path/target missing.
    """
    from dlcli.data.registry import check_data_keys

    check_data_keys(cfg)
    for i, raw in enumerate(cfg.data.augment):
        entry = parse_entry(raw, f"data.augment.{i}", cfg=cfg, what="augment layer", graph=False)
        check_layer_name(entry.class_name, entry.key_path, cfg=cfg)
        check_layer_kwargs(entry.class_name, entry.kwargs, entry.args_path, cfg=cfg)


def check_config(cfg: "Config") -> list[str]:
    """Run every check that needs no TensorFlow on a validated config.

    Args:
        cfg: the config (from `load_config`, which calls this).

    Returns:
        Notices (one line each) about checks that could not run.

    Raises:
        ConfigError: the first problem, at its file, line and key.
    """
    notices: list[str] = []
    if get_catalog() is None:
        version = installed_keras_version()
        notices.append(
            f"no Keras catalogue for keras {version or '(not installed)'}: checked the config's structure, "
            "not Keras names (`dlcli summary` builds the catalogue)"
        )
    check_data(cfg)
    entries = [node.entry for node in model_graph(cfg).nodes]
    for entry in entries:
        with in_context(entry.context):
            check_layer_name(entry.class_name, entry.key_path, cfg=cfg)
            check_layer_kwargs(entry.class_name, entry.kwargs, entry.args_path, cfg=cfg)
    check_loss(cfg.compile.loss, "compile.loss", cfg=cfg, outputs=cfg.model.outputs)
    check_optimizer(cfg.compile.optimizer, "compile.optimizer", cfg=cfg)
    metrics = cfg.compile.metrics
    per_output = metrics.items() if isinstance(metrics, dict) else [(None, metrics or [])]
    for out, listed in per_output:  # a mapping: {output name: metrics}
        for i, metric in enumerate(listed if isinstance(listed, list) else [listed]):
            check_metric(metric, f"compile.metrics.{out + '.' if out else ''}{i}", cfg=cfg)
    for i, raw in enumerate(cfg.train.callbacks):
        entry = parse_entry(raw, f"train.callbacks.{i}", cfg=cfg, what="callback", graph=False)
        check_callback(entry.class_name, entry.kwargs, entry.key_path, entry.args_path, cfg=cfg)
    if cfg.finetune is not None and cfg.finetune.fine_tune_epochs > 0 and not any(e.class_name == BACKBONE for e in entries):
        raise fail(cfg, "finetune", "fine-tuning needs a Backbone layer in model.layers", "for example Backbone: {name: mobilenet_v2}")
    cfg._notices = notices
    return notices
