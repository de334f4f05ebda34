"""Export a run's model to SavedModel, TFLite (float32, float16, int8) or
ONNX, with a parity check against the Keras model on held-out data.

    >>> from dlcli.export import export_run
    >>> r = export_run("runs/cnn_digits/1", "tflite", quantize="int8")
    >>> r["size_ratio"], r["parity"]["top1_agreement"]

Exports land in `<run>/export/` and are listed in `<run>/export/export.json`.
The formats are one table (`dlcli.export.table`), importable without
TensorFlow (the CLI reads its choices there); the exporter itself is
imported on first use of one of its names.
"""

from typing import Any

from dlcli.export.table import EXPORT_FORMATS, FORMATS, QUANTIZE, ExportFormat, FormatChoice, QuantizeChoice

_LAZY = {
    "DEFAULT_CALIBRATION_SAMPLES": "dlcli.export.core",
    "DEFAULT_SAMPLES": "dlcli.export.core",
    "EXPORT_FILE": "dlcli.export.record",
    "check_options": "dlcli.export.core",
    "export_key": "dlcli.export.core",
    "export_run": "dlcli.export.core",
    "DEFAULT_MIN_AGREEMENT": "dlcli.export.parity",
    "MissingExtraError": "dlcli.export.runtimes",
}

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "QUANTIZE",
    "ExportFormat",
    "FormatChoice",
    "QuantizeChoice",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlcli.export' has no attribute {name!r}")
