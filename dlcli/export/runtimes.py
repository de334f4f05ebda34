"""Run an exported model the way a server or a phone would.

Each loader returns a callable that takes `{input name: array}` and returns
`{output name: array}`, so the parity check treats every format alike. The
optional runtimes (onnxruntime, ai-edge-litert) are imported here only, and
a missing one is reported with the pip command that installs it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlcli.errors import DlcliError, ExportError

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

# The extras declared in pyproject.toml, and what each must provide.
ONNX_EXTRA = "dlcli[onnx]"
ONNX_MODULES = ("tf2onnx", "onnx", "onnxruntime")
LITERT_EXTRA = "dlcli[litert]"


class MissingExtraError(DlcliError):
    """An optional exporter or runtime is not installed (exit 2, nothing
    written)."""

    exit_code = 2


def require_onnx() -> None:
    """Check that the ONNX extra is installed before any work starts.

    Raises:
        MissingExtraError: tf2onnx, onnx or onnxruntime cannot be imported.
    """
    missing = [name for name in ONNX_MODULES if not _installed(name)]
    if missing:
        raise MissingExtraError(
            f"--format onnx needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"pip install '{ONNX_EXTRA}'",
        )


def tflite_interpreter() -> tuple[type, str]:
    """The TFLite interpreter class to run `.tflite` files with.

    LiteRT (`ai_edge_litert`) is preferred: `tf.lite.Interpreter` is
    deprecated since TF 2.20 and kept only as a fallback.

    Returns:
        (Interpreter class, "ai-edge-litert <version>" or "tensorflow <version>").

    Raises:
        MissingExtraError: neither runtime is available.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {package_version('ai-edge-litert')}"
    except ImportError:
        pass
    import tensorflow as tf

    interpreter = getattr(getattr(tf, "lite", None), "Interpreter", None)
    if interpreter is None:
        raise MissingExtraError(
            "running a .tflite file needs the LiteRT interpreter, which is not installed",
            hint=f"pip install '{LITERT_EXTRA}'",
        )
    return interpreter, f"tensorflow {tf.__version__} (tf.lite.Interpreter)"


def load_saved_model(path: Path, signature: str = "serving_default") -> tuple[Runner, str]:
    """Reload a SavedModel as TensorFlow Serving would and call its signature.

    Returns:
        (runner, runtime description).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise ExportError(f"{path} has no '{signature}' signature (found: {', '.join(loaded.signatures) or 'none'})")
    fn = loaded.signatures[signature]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = fn(**{name: tf.constant(x) for name, x in inputs.items()})
        return {name: t.numpy() for name, t in out.items()}

    # Keep the loaded object alive as long as the signature is used.
    run.loaded = loaded  # type: ignore[attr-defined]
    return run, f"tensorflow {tf.__version__} (tf.saved_model.load)"


def load_tflite(path: Path, signature: str = "serving_default") -> tuple[Runner, str]:
    """Load a `.tflite` file and call its signature runner.

    Inputs and outputs quantized to integers (full-integer models with
    integer I/O) are quantized and dequantized here with the file's own
    scale and zero point, so callers always pass and get floats.

    Returns:
        (runner, runtime description).
    """
    interpreter_cls, runtime = tflite_interpreter()
    with warnings.catch_warnings():
        # tf.lite.Interpreter's deprecation notice, when it is the fallback.
        warnings.simplefilter("ignore")
        interpreter = interpreter_cls(model_path=str(path))
    signatures = interpreter.get_signature_list()
    if signature not in signatures:
        signature = next(iter(signatures), None)
        if signature is None:
            raise ExportError(f"{path} has no signature to run")
    runner = interpreter.get_signature_runner(signature)
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: _quantize(x, in_details[name]) for name, x in inputs.items()}
        out = runner(**feed)
        return {name: _dequantize(y, out_details[name]) for name, y in out.items()}

    run.interpreter = interpreter  # type: ignore[attr-defined]
    return run, runtime


def load_onnx(path: Path) -> tuple[Runner, str]:
    """Load an `.onnx` file into an onnxruntime CPU session.

    Returns:
        (runner, runtime description).
    """
    require_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs)))

    return run, f"onnxruntime {ort.__version__}"


def package_version(dist: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    # find_spec looks without importing: tf2onnx would pull in TensorFlow
    # just to say yes. A module set to None in sys.modules counts as absent.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == x.dtype:
        return x
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero_point) * scale
    return y
