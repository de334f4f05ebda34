"""Plots and tables of results (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli.runs import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """Write the figure as a PNG atomically and free it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_history(
    history: dict[str, list[float]],
    path: str | Path,
    *,
    title: Optional[str] = None,
    phase_boundary: Optional[int] = None,
) -> Path:
    """Training curves: one panel per metric, train and validation together.

    Args:
        history: columns of history.csv (`epoch`, `loss`, `val_loss`, ...).
        path: the PNG to write (atomically).
        title: shown above the panels.
        phase_boundary: the last epoch of phase 1, marked with a line.
    """
    plt = _pyplot()
    epochs = history.get("epoch") or list(range(1, len(next(iter(history.values()), [])) + 1))
    skip = {"epoch", "phase", "learning_rate", "epoch_time_s"}
    bases = [k for k in history if not k.startswith("val_") and k not in skip]
    bases += [k[4:] for k in history if k.startswith("val_") and k[4:] not in bases]
    n = max(1, len(bases))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, base in zip(axes.flat, bases):
        for key, label, style in ((base, "train", "-o"), (f"val_{base}", "validation", "-s")):
            if key in history:
                ax.plot(epochs, history[key], style, label=label, markersize=3)
        if phase_boundary:
            ax.axvline(phase_boundary + 0.5, color="grey", linestyle="--", linewidth=1, label="fine-tune starts")
        ax.set_title(base.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, *, title: str = "Confusion matrix"
) -> Path:
    """A readable confusion matrix: class names on both axes, counts in cells."""
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(matrix)
    k = len(class_names)
    size = max(4.5, 0.55 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    thresh = cm.max() / 2 if cm.size else 0
    fontsize = 10 if k <= 12 else 7
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=fontsize,
                    color="white" if cm[i, j] > thresh else "black")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_regression(y_true: Any, y_pred: Any, path: str | Path, *, title: str = "Predicted vs true") -> Path:
    """Predicted against true values, with the identity line."""
    import numpy as np

    plt = _pyplot()
    yt = np.ravel(y_true)
    yp = np.ravel(y_pred)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(yt, yp, s=10, alpha=0.6)
    lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1, label="ideal")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)
