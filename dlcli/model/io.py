"""Loading models dlcli wrote, with the classes they need.

A model file names its layers' classes. Keras finds its own and the
registered ones (dlcli's `BackbonePreprocess`, the `ctc_sequence_accuracy`
metric: registered when `dlcli.model` is imported); a user's custom layer
given by dotted path in the config is imported again from the run's
`config.yaml` and handed to Keras as a custom object. Loading stays in
`safe_mode`: nothing in the file itself is executed.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import keras

from dlcli.errors import RunError
from dlcli.model._common import short_message


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _dotted_class_names(entries: Iterable[Any]) -> list[str]:
    """Dotted class paths in layer entries, nested `layer:` entries included."""
    found: list[str] = []

    def walk(entry: Any) -> None:
        if isinstance(entry, str):
            if _DOTTED.fullmatch(entry):
                found.append(entry)
            return
        if isinstance(entry, Mapping):
            for k, v in entry.items():
                if k in ("name", "inputs"):
                    continue
                if isinstance(k, str) and _DOTTED.fullmatch(k):
                    found.append(k)
                if isinstance(v, Mapping):
                    for arg in v.values():
                        walk(arg)
                elif isinstance(v, list):
                    for item in v:
                        walk(item)

    for e in entries or []:
        walk(e)
    return found


def custom_objects(layer_entries: Iterable[Any]) -> dict[str, type]:
    """Import the custom layer classes a config names by dotted path.

    Args:
        layer_entries: `model.layers` as written in a config.

    Returns:
        `{registered name: class}`, the mapping `keras.saving.load_model`
        takes as `custom_objects`. Paths that do not import are skipped
        (loading then reports the missing class).
    """
    out: dict[str, type] = {}
    for path in _dotted_class_names(layer_entries):
        module_name, _, attr = path.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr, None)
        except Exception:  # noqa: BLE001 - a module that fails to import: load_model names the class
            continue
        if isinstance(obj, type):
            out[keras.saving.get_registered_name(obj)] = obj
    return out


def _run_layer_entries(model_path: Path) -> list[Any]:
    """`model.layers` of the config.yaml beside a model file, if any."""
    config = model_path.parent / "config.yaml"
    if not config.exists():
        return []
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    layers = (data.get("model") or {}).get("layers") if isinstance(data, dict) else None
    return list(layers or [])


def load_model(path: str | Path, *, compile: bool = True, safe_mode: bool = True,
               layer_entries: Optional[Iterable[Any]] = None) -> keras.Model:
    """Load a `.keras` model written by dlcli.

    Args:
        path: the `.keras` file.
        compile: restore the loss, optimizer and metrics too.
        safe_mode: refuse code stored in the file (Lambda layers); keep it
            True for files you did not write.
        layer_entries: `model.layers` of the config that built it (default:
            read from the `config.yaml` beside the file).

    Returns:
        The model.

    Raises:
        RunError: the file is missing, unreadable, or needs code that
            safe mode refuses or a class that cannot be found.
    """
    path = Path(path)
    if not path.exists():
        raise RunError(f"model file not found: {path}")
    entries = list(layer_entries) if layer_entries is not None else _run_layer_entries(path)
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects(entries), compile=compile, safe_mode=safe_mode)
    except (ValueError, TypeError, OSError) as exc:
        message = short_message(exc, 300)
        hint = None
        if "safe_mode" in message or "Lambda" in message:
            hint = "the file holds code (a Lambda layer); load it only if you trust it (--unsafe)"
        elif "Could not locate" in message:
            hint = "import the module that defines the custom layer, or put it on PYTHONPATH"
        raise RunError(f"cannot load {path}: {message}", hint=hint) from None
