"""Turn a trained Keras model into SavedModel, TFLite and ONNX files.

Every format is written from one serving model: the trained model wrapped
so that its inputs and outputs carry stable names (the model's own input
and output layer names), the same in the SavedModel signature, the TFLite
signature runner and the ONNX graph, so a client written against one format
uses the same names with the others. Preprocessing the data pipeline did
outside the model (standardising feature vectors with the training split's
mean and std, recorded in data_spec.json) moves inside the graph: clients
send raw features.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from dlcli.errors import ExportError

SIGNATURE = "serving_default"


@dataclass
class TensorInfo:
    """One named input or output of an exported model."""

    name: str
    shape: list[Optional[int]]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}


@dataclass
class Serving:
    """The trained model behind named inputs and a dict of named outputs.

    Attributes:
        model: a Keras functional model taking `{input name: batch}` and
            returning `{output name: batch}`; it shares the trained model's
            weights, so it computes exactly what that model computes.
        inputs / outputs: their names, shapes (batch axis first, None where
            free) and dtypes.
    """

    model: Any
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    # The trained model's own input names and output keys, in order.
    source_inputs: list[str]
    source_outputs: list[Any]
    # What the graph does before the trained model, in words (export.json).
    preprocessing: list[str] = field(default_factory=list)
    # (mean, std) the graph standardises its single input with.
    standardize: Optional[tuple[np.ndarray, np.ndarray]] = None

    def feed(self, x: Any) -> dict[str, np.ndarray]:
        """The exported model's inputs for a batch from the run's data
        pipeline (an array, a list in input order, or a dict by input
        name): named, and with the pipeline's standardisation undone, since
        the exported graph standardises by itself."""
        if isinstance(x, dict):
            by_source = dict(zip(self.source_inputs, self.inputs))
            return {by_source[k].name: _as_array(v, by_source[k].dtype) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return {info.name: _as_array(v, info.dtype) for info, v in zip(self.inputs, x)}
        if self.standardize is not None:
            mean, std = self.standardize
            x = np.asarray(x, dtype=np.float64) * std + mean
        return {self.inputs[0].name: _as_array(x, self.inputs[0].dtype)}

    def name_outputs(self, y: Any) -> dict[str, np.ndarray]:
        """Name what the trained model returned (a tensor, list or dict)."""
        if isinstance(y, dict):
            values = [y[k] for k in self.source_outputs]
        elif isinstance(y, (list, tuple)):
            values = list(y)
        else:
            values = [y]
        return {info.name: np.asarray(v) for info, v in zip(self.outputs, values)}


def serving_model(model: Any, spec: Optional[Any] = None, *, standardize_inside: bool = True) -> Serving:
    """Wrap a Keras model so that every input and output has a clean name
    and the data pipeline's preprocessing runs inside the graph.

    Args:
        model: a built Keras model (Sequential or functional; one or several
            inputs and outputs, as a tensor, list or dict).
        spec: the run's data_spec.json; its `standardize` mean and std (a
            single feature-vector input) become the graph's first step.
        standardize_inside: False leaves standardisation to the client
            (int8: one quantization scale cannot cover raw features whose
            ranges differ by orders of magnitude, standardised ones it can).

    Returns:
        The `Serving` wrapper.
    """
    import keras

    if not getattr(model, "inputs", None):
        raise ExportError(f"model '{model.name}' has no defined inputs; it cannot be exported")
    in_names = _unique([_clean(_origin(t), "input") for t in model.inputs])
    wrapped = {
        name: keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=name)
        for name, t in zip(in_names, model.inputs)
    }
    standardize = _standardize(spec, model) if standardize_inside else None
    preprocessing = []
    if len(wrapped) == 1:
        args: Any = next(iter(wrapped.values()))
        if standardize is not None:
            mean, std = standardize
            # (x - mean) / std as x * (1/std) - mean/std: Rescaling keeps
            # its factors as constants of the graph, where Normalization
            # holds tensors that tf2onnx would turn into extra ONNX inputs.
            scale = keras.layers.Rescaling(scale=(1.0 / std).astype("float32"), offset=(-mean / std).astype("float32"), name="standardize")
            args = scale(args)
            preprocessing.append("standardize: (x - mean) / std with the training split's statistics")
    else:
        # Functional models map a dict onto their inputs by name.
        args = {_origin(t): wrapped[name] for name, t in zip(in_names, model.inputs)}
    y = model(args, training=False)
    if isinstance(y, dict):
        keys: list[Any] = list(y)
        raw = [(str(k), y[k]) for k in keys]
    elif isinstance(y, (list, tuple)):
        keys = list(range(len(y)))
        raw = [(_origin(t), v) for t, v in zip(model.outputs, y)]
    else:
        keys = [0]
        raw = [(_origin(model.outputs[0]), y)]
    out_names = _unique([_clean(name, "output") for name, _ in raw])
    outputs = {name: value for name, (_, value) in zip(out_names, raw)}
    wrapper = keras.Model(wrapped, outputs, name=_clean(f"{model.name}_serving", "serving"))
    return Serving(
        model=wrapper,
        inputs=[_info(n, t) for n, t in wrapped.items()],
        outputs=[_info(n, t) for n, t in outputs.items()],
        source_inputs=[_origin(t) for t in model.inputs],
        source_outputs=keys,
        preprocessing=preprocessing,
        standardize=standardize,
    )


def write_saved_model(serving: Serving, path: Path) -> None:
    """Write a SavedModel for TensorFlow Serving (`serve` and
    `serving_default` signatures) into the new folder `path`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            serving.model.export(str(path), format="tf_saved_model", verbose=False)
    except Exception as exc:  # the exporter's own failure, told to the user
        raise ExportError(f"SavedModel export failed: {_first_line(exc)}") from exc


def tflite_bytes(
    saved_model: Path,
    quantize: str,
    representative: Optional[Callable[[], Iterable[dict[str, np.ndarray]]]] = None,
) -> bytes:
    """Convert a SavedModel written by `write_saved_model` to TFLite.

    Args:
        saved_model: the SavedModel folder.
        quantize: none (float32), float16 (float16 weights) or int8 (full
            integer: weights and activations, calibrated on
            `representative`; float inputs and outputs, quantized inside).
        representative: for int8, a callable yielding one `{input name:
            batch of 1}` dict per calibration sample.

    Returns:
        The `.tflite` flatbuffer.

    Raises:
        ExportError: the converter refused the model.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None:
            raise ExportError("int8 quantization needs representative training samples")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Every op in integer arithmetic, or the conversion fails: a model
        # that silently keeps float ops would not run on integer-only chips.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantize != "none":
        raise ExportError(f"unknown quantization '{quantize}'")
    try:
        with warnings.catch_warnings(), _quiet_native_stderr():
            # The calibrator runs tf.lite.Interpreter, whose deprecation
            # notice would only confuse here.
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as exc:  # the converter's own failure, told to the user
        raise ExportError(f"TFLite conversion ({quantize}) failed: {_first_line(exc)}") from exc


def write_onnx(serving: Serving, path: Path, example: dict[str, np.ndarray]) -> None:
    """Write an ONNX graph through Keras's exporter (tf2onnx).

    Args:
        serving: the serving model.
        path: the `.onnx` file to write.
        example: one batch of inputs; Keras exports only a model that has
            been called on data.
    """
    try:
        with warnings.catch_warnings():
            # tf2onnx under NumPy 2 trips FutureWarnings inside Keras's patch.
            warnings.simplefilter("ignore")
            serving.model(example, training=False)
            serving.model.export(str(path), format="onnx", verbose=False)
    except Exception as exc:  # the exporter's own failure, told to the user
        raise ExportError(f"ONNX export failed: {_first_line(exc)}") from exc


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native code prints straight to file descriptor 2 (the
    TFLite quantizer prints its settings on every int8 conversion); Python
    exceptions still carry the converter's error message."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced in-process
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _standardize(spec: Optional[Any], model: Any) -> Optional[tuple[np.ndarray, np.ndarray]]:
    stats = spec.standardize if spec is not None else None
    if stats is None or len(model.inputs) != 1:
        return None
    mean = np.asarray(stats.mean, dtype=np.float64)
    std = np.asarray(stats.std, dtype=np.float64)
    width = model.inputs[0].shape[-1]
    if mean.ndim != 1 or mean.shape != std.shape or width != len(mean):
        raise ExportError(
            f"data_spec.json standardises {len(mean)} features but the model takes {width}; "
            "the run folder's files do not belong together"
        )
    return mean, std


def _origin(tensor: Any) -> str:
    # A Keras tensor's name is generic ("keras_tensor_3"); the layer that
    # made it carries the name the user gave (or Keras's "dense_1").
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None)
    return getattr(op, "name", None) or getattr(tensor, "name", "") or ""


def _clean(name: str, fallback: str) -> str:
    # Signature keys and ONNX names: letters, digits, underscores.
    name = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_")
    if not name or name[0].isdigit():
        name = f"{fallback}_{name}" if name else fallback
    return name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def _info(name: str, tensor: Any) -> TensorInfo:
    shape = [None if d is None else int(d) for d in tensor.shape]
    dtype = str(tensor.dtype)
    # Raw text (TextVectorization, StringLookup, FeatureSpace string
    # columns): a tf.string input, which NumPy has no dtype for.
    return TensorInfo(name=name, shape=shape, dtype="string" if dtype == "string" else str(np.dtype(dtype)))


def _as_array(x: Any, dtype: str) -> np.ndarray:
    if dtype == "string":
        return np.asarray(x, dtype=object)
    return np.asarray(x).astype(dtype, copy=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
