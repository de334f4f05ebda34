"""Checks and settings a run derives from its config and data before fit:
the last layer against the labels, class weights, the monitored metric."""

from __future__ import annotations

from typing import Any, Optional


def check_output_matches_data(model: Any, cfg: Any, spec: Any) -> None:
    """The last layer's width must fit the labels and the loss.

    Raises:
        ConfigError: located at the last layer, saying what to change.
    """
    if len(model.outputs) != 1:
        return
    width = model.output_shape[-1]
    mode = spec.label_mode
    n = spec.num_classes
    last = f"model.layers.{len(cfg.model.layers) - 1}"
    loss = _loss_name(cfg.compile.loss)
    src = spec.source
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
        target_width = int(spec.target_width or 1)
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


def class_weight(cfg: Any, bundle: Any) -> Optional[dict[int, float]]:
    """`train.class_weight` as fit takes it: {class index: weight}
    ("balanced" counts the training labels).

    Raises:
        ConfigError: a class name the data does not have.
    """
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


def monitor(cfg: Any, bundle: Any) -> Optional[str]:
    """The metric whose best epoch metrics.json reports: train.monitor,
    else val_loss when there is validation data. Only a monitor the config
    names makes model.keras the best epoch's model (else: the last)."""
    if cfg.train.monitor:
        return cfg.train.monitor
    return "val_loss" if bundle.val is not None else None


def data_rng(bundle: Any) -> list[Any]:
    """The data pipeline's RNG state variables (its augmentation layers'
    SeedGenerator states), where the DataBundle exposes them as
    `rng_variables`; they belong in checkpoints like the model's own."""
    return list(getattr(bundle, "rng_variables", None) or [])
