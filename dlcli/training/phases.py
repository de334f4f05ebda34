"""Training phases: one, or two when a fine-tune unfreezes the backbone.

Epochs are counted across phases: with `train.epochs: 5` and
`finetune.fine_tune_epochs: 3`, phase 1 is epochs [0, 5) and phase 2
[5, 8). History rows carry their phase where there are two.
"""

from __future__ import annotations

from typing import Any

Phases = list[tuple[int, int]]


def phases(cfg: Any) -> Phases:
    """Epoch ranges [start, end) of each training phase."""
    out = [(0, cfg.train.epochs)]
    ft = getattr(cfg, "finetune", None)
    if ft is not None and ft.fine_tune_epochs > 0:
        out.append((cfg.train.epochs, cfg.train.epochs + ft.fine_tune_epochs))
    return out


def total_epochs(cfg: Any) -> int:
    """The last epoch (1-based) of the run `cfg` describes."""
    return phases(cfg)[-1][1]


def phase_of(ranges: Phases, epoch: int) -> int:
    """The phase (1-based) that the 0-based `epoch` belongs to."""
    for i, (s, e) in enumerate(ranges, start=1):
        if s <= epoch < e:
            return i
    return len(ranges)


def label_phases(history: dict[str, list[Any]], ranges: Phases) -> dict[str, list[Any]]:
    """A one-phase run's history extended into fine-tuning: its rows were
    phase 1 (the column goes right after `epoch`)."""
    if len(ranges) < 2 or not history.get("epoch") or "phase" in history:
        return history
    epochs_done = history["epoch"]
    return {
        "epoch": epochs_done,
        "phase": [phase_of(ranges, int(e) - 1) for e in epochs_done],
        **{k: v for k, v in history.items() if k != "epoch"},
    }


def enter_fine_tune_phase(model: Any, cfg: Any) -> None:
    """Phase 2: unfreeze the backbone's top layers and recompile with the
    configured optimizer at the current learning rate times
    `finetune.learning_rate_factor`.

    Raises:
        ConfigError: the model has no Backbone layer.
    """
    import keras

    from dlcli.model import compile_model, find_backbone, resolve_optimizer

    backbone = find_backbone(model)
    if backbone is None:
        raise cfg.error("finetune", "fine-tuning needs a Backbone layer in model.layers")
    ft = cfg.finetune
    layers = backbone.layers
    n = ft.unfreeze if isinstance(ft.unfreeze, int) and not isinstance(ft.unfreeze, bool) else int(round(len(layers) * float(ft.unfreeze)))
    n = max(1, min(len(layers), n))
    pretrained = _backbone_pretrained(cfg)
    if not pretrained:
        n = len(layers)  # random weights: nothing to keep frozen
    backbone.trainable = True
    for layer in layers[: len(layers) - n]:
        layer.trainable = False
    for layer in layers[len(layers) - n :]:
        # Pretrained BatchNormalization stays in inference mode (Keras
        # transfer guide); random statistics must train with the rest.
        if pretrained and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) * ft.learning_rate_factor
    # A fresh optimizer (new moments) of the configured kind; a schedule
    # gives way to the constant phase-2 rate.
    optimizer = resolve_optimizer(cfg.compile.optimizer, cfg=cfg, learning_rate=lr)
    compile_model(model, cfg, optimizer=optimizer)


def _backbone_pretrained(cfg: Any) -> bool:
    """False when the config's Backbone starts from random weights."""
    for entry in cfg.model.layers:
        if isinstance(entry, dict) and isinstance(entry.get("Backbone"), dict):
            return entry["Backbone"].get("weights", "imagenet") is not None
    return True
