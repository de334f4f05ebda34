"""The Keras callbacks a config lists in `train.callbacks`, by name.

A class of `keras.callbacks`, or a user's Callback subclass by dotted
import path; dlcli's own callbacks (progress, checkpoints, history) are in
`dlcli.training.callbacks`.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras

from dlcli.config.graph import parse_entry
from dlcli.model._common import cfg_error, check_kwargs, did_you_mean, import_dotted, public_names, short_message


def build_callbacks(cfg: Any) -> list[keras.callbacks.Callback]:
    """Build the Keras callbacks listed in `train.callbacks`.

    Each entry is `ClassName` or `{ClassName: {kwargs}}` with a class from
    `keras.callbacks` (EarlyStopping, ReduceLROnPlateau, TerminateOnNaN,
    CSVLogger, ...) or a dotted import path to a custom Callback subclass.
    ModelCheckpoint, BackupAndRestore and TensorBoard work when given file
    paths; dlcli already checkpoints every run into its run folder.

    Returns:
        Fresh callback instances, in the config's order.

    Raises:
        ConfigError: at `train.callbacks.<i>` for an unknown callback, an
            argument it does not take, or a value it rejects.
    """
    out: list[keras.callbacks.Callback] = []
    for i, raw in enumerate(cfg.train.callbacks or []):
        key = f"train.callbacks.{i}"
        entry = parse_entry(raw, key, cfg=cfg, what="callback", graph=False)
        class_name, kwargs = entry.class_name, entry.kwargs
        cls = _callback_class(class_name, cfg=cfg, key=key)
        check_kwargs(cls, kwargs, cfg=cfg, key=key, what=class_name)
        if class_name in {"ModelCheckpoint", "BackupAndRestore", "OrbaxCheckpoint"}:
            warnings.warn(f"{class_name} in train.callbacks: dlcli already checkpoints into the run folder "
                          f"(checkpoints/, resumable with --resume)", UserWarning, stacklevel=2)
        try:
            out.append(cls(**kwargs))
        except (ValueError, TypeError) as exc:
            raise cfg_error(cfg, key, f"{class_name} rejected its arguments: {short_message(exc)}") from None
    return out


def _callback_class(name: str, *, cfg: Any, key: str) -> type:
    if "." in name:
        return import_dotted(name, cfg=cfg, key=key, kind="callback", base=keras.callbacks.Callback)
    obj = getattr(keras.callbacks, name, None)
    if isinstance(obj, type) and issubclass(obj, keras.callbacks.Callback) and name not in {"Callback", "CallbackList"}:
        return obj
    candidates = [n for n in public_names(keras.callbacks)
                  if isinstance(getattr(keras.callbacks, n), type) and n not in {"Callback", "CallbackList", "History", "ProgbarLogger"}]
    raise cfg_error(cfg, key, f"unknown callback '{name}'", hint=did_you_mean(name, candidates))
