"""What a model's outputs mean, and the reports that fit each kind.

A run's model has one output or several (named after their targets). Each
is a `Target` of one kind, read from the data spec:

* `classes`: one class per sample (a per-class report, a confusion matrix);
* `segmentation`: a class per pixel (per-pixel accuracy, IoU per class);
* `regression`: one or a few numbers per sample (MAE, MSE, RMSE, R²);
* `reconstruction`: an image or array per sample, as an autoencoder gives
  (reconstruction error: MSE, MAE, per-sample error quantiles);
* `ctc`: a label sequence (sequence accuracy, character error rate).

Evaluate and predict both go through here, so they agree on what an output
is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

# Activations whose outputs already are probabilities.
_PROBABILITIES = ("softmax", "sigmoid")


@dataclass
class Target:
    """One model output.

    Attributes:
        name: the output's name (None for a model with one output).
        kind: classes | segmentation | regression | reconstruction | ctc.
        task: the data spec's task (classification | binary | regression | ctc).
        class_names: one name per class, where the data named them.
        from_logits: the output is logits, not probabilities.
    """

    name: Optional[str]
    kind: str
    task: str
    class_names: Optional[list[str]]
    from_logits: bool


def _kind(task: str, shape: list[int], class_names: Optional[list[str]]) -> str:
    if task == "ctc":
        return "ctc"
    if task in ("classification", "binary"):
        return "classes" if list(shape) in ([], [1]) else "segmentation"
    return "reconstruction" if len(shape) >= 2 else "regression"


def targets_of(rm: Any) -> list[Target]:
    """The Targets of a run's model (see `dlcli.model.io.RunModel`)."""
    outputs = rm.spec.outputs
    if not outputs:
        shape = [int(d) for d in (rm.model.output_shape[1:] if not isinstance(rm.model.output_shape, list) else [])
                 if d is not None]
        # A bare model file: a classifier's output is (classes,), a
        # segmentation model's (height, width, classes).
        kind = _kind(rm.task, [] if rm.task in ("classification", "binary") and len(shape) < 2 else shape, rm.class_names)
        return [Target(None, kind, rm.task, rm.class_names, rm.from_logits)]
    if len(outputs) == 1:
        o = outputs[0]
        return [Target(None, _kind(o.task, o.shape, o.class_names), o.task, rm.class_names if o.class_names else None,
                       rm.from_logits)]
    out = []
    for o in outputs:
        activation = getattr(getattr(_layer(rm.model, o.name), "activation", None), "__name__", "")
        out.append(Target(o.name, _kind(o.task, o.shape, o.class_names), o.task, o.class_names,
                          activation not in _PROBABILITIES))
    return out


def _layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def by_output(model: Any, out: Any, targets: list[Target]) -> dict[Optional[str], np.ndarray]:
    """A model's raw outputs (array, list or dict) keyed by target name."""
    if len(targets) == 1 and targets[0].name is None:
        if isinstance(out, dict):
            out = next(iter(out.values()))
        elif isinstance(out, (list, tuple)):
            out = out[0]
        return {None: np.asarray(out)}
    if isinstance(out, dict):
        return {t.name: np.asarray(out[t.name]) for t in targets}
    names = list(getattr(model, "output_names", None) or [t.name for t in targets])
    return {t.name: np.asarray(out[names.index(t.name)]) for t in targets}


def report(t: Target, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """The report that fits the target's kind (see the module docstring)."""
    if t.kind == "classes":
        return classification_report(y_true, y_pred, t)
    if t.kind == "segmentation":
        return {"segmentation": segmentation_report(y_true, y_pred, t)}
    if t.kind == "ctc":
        return {"ctc": ctc_report(y_true, y_pred)}
    if t.kind == "reconstruction":
        return {"reconstruction": reconstruction_report(y_true, y_pred)}
    return {"regression": regression_report(y_true, y_pred)}


def class_probabilities(out: np.ndarray, task: str, from_logits: bool) -> np.ndarray:
    """Per-class probabilities, shape (n, classes), from raw model outputs.

    A binary model's single sigmoid output p becomes the two columns
    (1 - p, p), so class index 1 is the positive class.
    """
    out = np.asarray(out, dtype=np.float64)
    if task == "binary":
        p = out.reshape(len(out), -1)[:, 0]
        if from_logits:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1.0 - p, p], axis=1)
    out = out.reshape(len(out), -1)
    if from_logits:
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        out = e / e.sum(axis=1, keepdims=True)
    return out


def class_indices(y: np.ndarray, task: str) -> np.ndarray:
    """True class indices from labels in any label mode (int, one-hot,
    binary 0/1)."""
    y = np.asarray(y)
    if task == "binary":
        return (y.reshape(len(y), -1)[:, 0] > 0.5).astype(np.int64)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return y.reshape(len(y), -1).argmax(axis=1)
    return y.reshape(len(y)).astype(np.int64)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, t: Target) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, and the confusion matrix.

    Returns:
        `{"classes", "per_class": [{class, precision, recall, f1, support}],
        "averages": {accuracy, macro, weighted}, "confusion_matrix"}`.
    """
    from sklearn import metrics as skm

    truth = class_indices(y_true, t.task)
    probs = class_probabilities(y_pred, t.task, t.from_logits)
    predicted = probs.argmax(axis=1)
    names = t.class_names or [str(i) for i in range(probs.shape[1])]
    labels = list(range(len(names)))
    p, r, f, s = skm.precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_class = [
        {"class": names[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i in labels
    ]
    averages: dict[str, Any] = {"accuracy": float(skm.accuracy_score(truth, predicted))}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(truth, predicted, labels=labels, average=avg, zero_division=0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af), "support": int(len(truth))}
    matrix = skm.confusion_matrix(truth, predicted, labels=labels)
    return {"classes": list(names), "per_class": per_class, "averages": averages,
            "confusion_matrix": matrix.astype(int).tolist()}


def pixel_classes(y_pred: np.ndarray, from_logits: bool) -> np.ndarray:
    """The class of every pixel: argmax over the last axis (a one-channel
    sigmoid output: p > 0.5, or logit > 0)."""
    y_pred = np.asarray(y_pred)
    if y_pred.shape[-1] == 1:
        return (y_pred[..., 0] > (0.0 if from_logits else 0.5)).astype(np.int64)
    return y_pred.argmax(axis=-1)


def segmentation_report(y_true: np.ndarray, y_pred: np.ndarray, t: Target) -> dict[str, Any]:
    """Per-pixel accuracy, IoU per class and their mean (classes that occur
    in neither truth nor prediction are left out of the mean)."""
    predicted = pixel_classes(y_pred, t.from_logits).reshape(-1)
    truth = np.asarray(y_true).astype(np.int64).reshape(-1)
    if truth.size != predicted.size:
        truth = truth.reshape(len(y_pred), -1)[:, : predicted.size // len(y_pred)].reshape(-1)
    n = max(int(np.asarray(y_pred).shape[-1]), 2, int(truth.max(initial=0)) + 1)
    names = t.class_names or [str(i) for i in range(n)]
    per_class, ious = [], []
    for k in range(n):
        inter = int(np.sum((truth == k) & (predicted == k)))
        union = int(np.sum((truth == k) | (predicted == k)))
        iou = inter / union if union else None
        if iou is not None:
            ious.append(iou)
        per_class.append({"class": names[k] if k < len(names) else str(k), "iou": iou, "pixels": int(np.sum(truth == k))})
    return {"pixel_accuracy": float(np.mean(truth == predicted)), "mean_iou": float(np.mean(ious)) if ious else 0.0,
            "per_class": per_class, "pixels": int(truth.size)}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, MSE, RMSE and R² of predictions against targets (several
    target columns are averaged uniformly)."""
    from sklearn import metrics as skm

    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    mse = float(skm.mean_squared_error(t, p))
    return {
        "mae": float(skm.mean_absolute_error(t, p)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": float(skm.r2_score(t, p)) if len(t) > 1 else float("nan"),
    }


def reconstruction_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Reconstruction error of images / arrays: mean squared and absolute
    error over every value, and the per-sample MSE's median and 90th
    percentile (where the bad reconstructions are)."""
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    per_sample = sample_mse(t, p)
    return {"mse": float(per_sample.mean()), "mae": float(np.mean(np.abs(t - p))),
            "sample_mse_median": float(np.median(per_sample)), "sample_mse_p90": float(np.quantile(per_sample, 0.9))}


def sample_mse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Each sample's mean squared error over all its values, shape (n,)."""
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    return np.mean((t - np.asarray(y_pred, np.float64).reshape(len(t), -1)) ** 2, axis=1)


def ctc_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Sequence accuracy and character error rate of greedy CTC decoding.

    Labels are 0-padded class sequences (Keras's CTC format); the character
    error rate is the total edit distance over the total label length.
    """
    from dlcli.model import ctc_greedy_decode
    from dlcli.model.ctc import PAD_VALUE

    decoded = ctc_greedy_decode(y_pred)
    labels = [[int(v) for v in row if v != PAD_VALUE] for row in np.asarray(y_true).reshape(len(y_true), -1)]
    exact = sum(d == t for d, t in zip(decoded, labels))
    edits = sum(edit_distance(d, t) for d, t in zip(decoded, labels))
    chars = sum(len(t) for t in labels)
    return {
        "sequence_accuracy": exact / max(1, len(labels)),
        "character_error_rate": edits / max(1, chars),
        "samples": len(labels),
    }


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]
