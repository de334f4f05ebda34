"""The export formats, one row each: adding a format is one row here and
one `export_<name>` writer in `dlcli.export.writers` (with its `load_<name>`
runtime in `dlcli.export.runtimes` for the parity check).

Nothing here imports TensorFlow or numpy: the CLI reads its `--format`
and `--quantize` choices from this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: the `--format` value.
        file: the file (or folder) name in `<run>/export/`; `{quantize}`
            marks where a quantized variant names its mode.
        extra: the pip extra its converter or runtime needs, or None.
        runtime: what the parity check runs the export with.
        quantize: the `--quantize` modes it takes ("none" first).
        requires: the `dlcli.export.runtimes` function that checks the
            extra is installed (before any work), or None.
        help: what the format is for, for `--help`.
        packages: distributions whose versions the export records.
        no_strings: why the format cannot take raw string inputs (text
            into TextVectorization, FeatureSpace string columns), or None
            where it can.
    """

    name: str
    file: str
    extra: Optional[str]
    runtime: str
    quantize: tuple[str, ...]
    requires: Optional[str]
    help: str
    packages: tuple[str, ...] = ()
    no_strings: Optional[str] = None

    def file_name(self, quantize: str = "none") -> str:
        """The exported file's name for a quantize mode."""
        return self.file.format(quantize="" if quantize == "none" else f"_{quantize}")

    def writer(self) -> Callable[..., dict[str, Any]]:
        """`dlcli.export.writers.export_<name>` (imports the exporter)."""
        from dlcli.export import writers

        return getattr(writers, f"export_{self.name}")

    def loader(self) -> Callable[..., Any]:
        """`dlcli.export.runtimes.load_<name>`: the parity check's runtime."""
        from dlcli.export import runtimes

        return getattr(runtimes, f"load_{self.name}")

    def check_inputs(self, model: Any) -> None:
        """Refuse, before any work, a model with string inputs this format
        cannot carry.

        Raises:
            ConfigError: at --format, naming the input and a format that
                takes it.
        """
        if self.no_strings is None:
            return
        strings = [t for t in getattr(model, "inputs", None) or [] if str(t.dtype) == "string"]
        if strings:
            from dlcli.errors import ConfigError

            name = getattr(getattr(getattr(strings[0], "_keras_history", None), "operation", None), "name", "?")
            can = [f.name for f in EXPORT_FORMATS if f.no_strings is None]
            raise ConfigError(
                f"the model takes raw strings (input {name!r}), which {self.name} cannot carry: {self.no_strings}",
                key="--format", hint=f"export --format {' or '.join(can)}, which keeps the string preprocessing in the graph",
            )

    def check_installed(self) -> None:
        """Raise MissingExtraError when the format's extra is missing."""
        if self.requires is not None:
            from dlcli.export import runtimes

            getattr(runtimes, self.requires)()


EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "saved_model", "saved_model", None, "tf.saved_model.load", ("none",), None,
        "TensorFlow SavedModel (TensorFlow Serving)",
    ),
    ExportFormat(
        "tflite", "model{quantize}.tflite", "litert", "TFLite interpreter", ("none", "float16", "int8"),
        "tflite_interpreter", "TensorFlow Lite; float16 or int8 (calibrated on training data) with --quantize",
        no_strings="TFLite's built-in ops have no string or lookup-table kernels",
    ),
    ExportFormat(
        "onnx", "model.onnx", "onnx", "onnxruntime", ("none",), "require_onnx",
        "ONNX (tf2onnx), checked with onnxruntime", ("tf2onnx", "onnx", "onnxruntime"),
        no_strings="ONNX Runtime has no kernels for TensorFlow's string and lookup-table ops",
    ),
)

BY_NAME = {f.name: f for f in EXPORT_FORMATS}
FORMATS = tuple(BY_NAME)
QUANTIZE = tuple(dict.fromkeys(q for f in EXPORT_FORMATS for q in f.quantize))

QUANTIZE_HELP = " or ".join(f.name for f in EXPORT_FORMATS if len(f.quantize) > 1) + " only; int8 is calibrated on training data"

# Typer choices for the CLI's --format and --quantize.
FormatChoice = enum.Enum("FormatChoice", {n: n for n in FORMATS}, type=str)
QuantizeChoice = enum.Enum("QuantizeChoice", {q: q for q in QUANTIZE}, type=str)


def get(name: str) -> ExportFormat:
    """The row of a format `check_options` accepted."""
    return BY_NAME[name]
