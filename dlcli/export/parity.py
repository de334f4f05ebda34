"""Measure how closely an exported model follows the trained Keras model.

Agreement is the share of samples on which the two give the same answer:
the same top-1 class for classifiers (the same side of the threshold for a
single sigmoid or logit unit), and for regression an output within a
tolerance of the reference, scaled by the spread of the reference outputs.
The raw gap (max and mean absolute difference) is reported beside it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np

# Regression: an exported output agrees when it lies within this fraction
# of the reference outputs' standard deviation. Float16 weights and int8
# arithmetic move outputs by about 1e-3 and 1e-2 of their range.
REGRESSION_TOLERANCE = {"none": 1e-3, "float16": 1e-2, "int8": 0.1}

DEFAULT_MIN_AGREEMENT = {"none": 0.99, "float16": 0.99, "int8": 0.97}

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_batches(run: Runner, feed: dict[str, np.ndarray], batch_size: int = 64) -> tuple[dict[str, np.ndarray], float]:
    """Run `run` over `feed` in batches and concatenate its outputs.

    Returns:
        (outputs by name, seconds spent in `run`).
    """
    n = len(next(iter(feed.values())))
    parts: dict[str, list[np.ndarray]] = {}
    seconds = 0.0
    for start in range(0, n, batch_size):
        batch = {name: x[start : start + batch_size] for name, x in feed.items()}
        t0 = time.perf_counter()
        out = run(batch)
        seconds += time.perf_counter() - t0
        for name, y in out.items():
            parts.setdefault(name, []).append(np.asarray(y))
    return {name: np.concatenate(ys) for name, ys in parts.items()}, seconds


def compare(
    reference: dict[str, np.ndarray],
    exported: dict[str, np.ndarray],
    *,
    task: str,
    quantize: str = "none",
) -> dict[str, Any]:
    """Agreement of exported outputs with the reference, output by output.

    Args:
        reference: the Keras model's outputs by name.
        exported: the exported model's outputs, same names.
        task: the data's task (classification, binary, regression, ctc).
        quantize: sets the regression tolerance.

    Returns:
        `{"samples", "max_abs_diff", "mean_abs_diff", "agreement", and
        "top1_agreement" (classifiers) or "relative_error" and "tolerance"
        (regression)}`; with several outputs, the worst over them, and
        per output under "outputs".

    Raises:
        ValueError: the exported model's outputs do not match by name or
            shape (a bug in the exporter, not a user error).
    """
    if set(reference) != set(exported):
        raise ValueError(f"exported outputs {sorted(exported)} differ from the model's {sorted(reference)}")
    per_output = {}
    for name, ref in reference.items():
        got = np.asarray(exported[name], dtype=np.float64).reshape(np.shape(ref))
        per_output[name] = _compare_one(np.asarray(ref, dtype=np.float64), got, task, quantize)
    worst = _worst(per_output.values())
    worst["samples"] = int(len(next(iter(reference.values()))))
    if len(per_output) > 1:
        worst["outputs"] = per_output
    return worst


def _compare_one(ref: np.ndarray, got: np.ndarray, task: str, quantize: str) -> dict[str, Any]:
    diff = np.abs(ref - got)
    result: dict[str, Any] = {
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
    if task == "regression":
        norm = float(np.linalg.norm(ref))
        result["relative_error"] = float(np.linalg.norm(ref - got) / norm) if norm else float(np.linalg.norm(ref - got))
        scale = float(ref.std()) or float(np.abs(ref).max(initial=0.0)) or 1.0
        tol = REGRESSION_TOLERANCE.get(quantize, REGRESSION_TOLERANCE["none"]) * scale
        per_sample = diff.reshape(len(diff), -1).max(axis=1) if diff.size else diff
        result["tolerance"] = tol
        result["agreement"] = float((per_sample <= tol).mean()) if per_sample.size else 1.0
        return result
    same = _same_class(ref, got)
    # A sequence output (CTC, per-timestep classes) agrees sample by sample
    # only when every position does.
    per_sample = same.reshape(len(same), -1).all(axis=1)
    result["top1_agreement"] = float(per_sample.mean()) if per_sample.size else 1.0
    result["agreement"] = result["top1_agreement"]
    return result


def _same_class(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        return ref.argmax(axis=-1) == got.argmax(axis=-1)
    # One unit: a probability thresholded at 0.5, or a logit at 0.
    threshold = 0.5 if ref.min(initial=0.0) >= 0.0 and ref.max(initial=0.0) <= 1.0 else 0.0
    return (ref > threshold) == (got > threshold)


def _worst(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    results = list(results)
    worst = dict(min(results, key=lambda r: r["agreement"]))
    worst["max_abs_diff"] = max(r["max_abs_diff"] for r in results)
    worst["mean_abs_diff"] = max(r["mean_abs_diff"] for r in results)
    return worst
