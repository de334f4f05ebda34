"""Export a run's model to SavedModel, TFLite (float32, float16, int8) or
ONNX, with a parity check against the Keras model on held-out data.

    >>> from dlcli.export import export_run
    >>> r = export_run("runs/cnn_digits/1", "tflite", quantize="int8")
    >>> r["size_ratio"], r["parity"]["top1_agreement"]

Exports land in `<run>/export/` and are listed in `<run>/export/export.json`.
Nothing here imports TensorFlow until a function runs.
"""

from dlcli.export.core import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_SAMPLES,
    EXPORT_FILE,
    check_options,
    export_key,
    export_run,
)
from dlcli.export.formats import FORMATS, QUANTIZE
from dlcli.export.parity import DEFAULT_MIN_AGREEMENT
from dlcli.export.runtimes import MissingExtraError

__all__ = [
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_SAMPLES",
    "EXPORT_FILE",
    "FORMATS",
    "MissingExtraError",
    "QUANTIZE",
    "check_options",
    "export_key",
    "export_run",
]
