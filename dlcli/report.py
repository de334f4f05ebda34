"""Plots and tables of results (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli.runs import atomic_path


def _figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure on the Agg canvas, without pyplot (cheaper to
    import, and nothing global to close)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig: Any, path: str | Path) -> Path:
    """Write the figure as a PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


_NOT_CURVES = {"epoch", "phase", "learning_rate", "epoch_time_s"}


def _curve_names(history: dict[str, list[float]]) -> list[str]:
    """Metric names with a train or validation curve (`loss`, `accuracy`)."""
    bases = [k for k in history if not k.startswith("val_") and k not in _NOT_CURVES]
    return bases + [k[4:] for k in history if k.startswith("val_") and k[4:] not in bases]


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    lo, hi = ax.get_xlim()
    if hi - lo < 2:  # one or two epochs: autoscale leaves a span under 1, ticked in fractions
        mid = round((lo + hi) / 2)
        ax.set_xlim(mid - 1, mid + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def plot_history(
    history: dict[str, list[float]],
    path: str | Path,
    *,
    title: Optional[str] = None,
    phase_boundary: Optional[int] = None,
    model_epoch: Optional[int] = None,
) -> Path:
    """Training curves: one panel per metric (train and validation
    together) and one of the learning rate; integer epoch ticks.

    Args:
        history: columns of history.csv (`epoch`, `loss`, `val_loss`, ...).
        path: the PNG to write (atomically).
        title: shown above the panels.
        phase_boundary: the last epoch of phase 1, marked with a line.
        model_epoch: the epoch model.keras holds, marked on every panel.
    """
    epochs = history.get("epoch") or list(range(1, len(next(iter(history.values()), [])) + 1))
    bases = _curve_names(history)
    lr = [v for v in history.get("learning_rate", []) if v == v]
    panels = bases + (["learning_rate"] if lr else [])
    n = max(1, len(panels))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure((4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, base in zip(axes.flat, panels):
        if base == "learning_rate":
            ax.plot(epochs, history["learning_rate"], "-o", color="tab:green", markersize=3, label="learning rate")
            ax.set_yscale("log" if min(lr) > 0 and max(lr) / min(lr) > 20 else "linear")
        for key, label, style in ((base, "train", "-o"), (f"val_{base}", "validation", "-s")):
            if key in history and base != "learning_rate":
                ax.plot(epochs, history[key], style, label=label, markersize=3)
        if phase_boundary:
            ax.axvline(phase_boundary + 0.5, color="grey", linestyle="--", linewidth=1, label="fine-tune starts")
        if model_epoch:
            ax.axvline(model_epoch, color="tab:red", linestyle=":", linewidth=1.5, label=f"model.keras (epoch {model_epoch})")
        ax.set_title(base.replace("_", " "))
        _integer_epochs(ax)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    _fixed_layout(fig, rows, titled=bool(title))
    return _save(fig, path)


def _fixed_layout(fig: Any, rows: int, *, titled: bool) -> None:
    """Margins in inches for panels of known size: every run draws this
    plot, and `tight_layout` would draw the whole figure once more only to
    measure it (a third of the plot's cost)."""
    width, height = fig.get_size_inches()
    top = (0.75 if titled else 0.45) / height
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - top,
                        wspace=0.32, hspace=0.55 if rows > 1 else 0.2)


def plot_runs(histories: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Several runs' curves in one figure: a panel per metric, a colour
    per run, solid for training and dashed for validation."""
    names: list[str] = []
    for h in histories.values():
        names += [b for b in _curve_names(h) if b not in names]
    n = max(1, len(names))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure((4.6 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, base in zip(axes.flat, names):
        for i, (label, h) in enumerate(histories.items()):
            color = f"C{i % 10}"
            epochs = h.get("epoch") or list(range(1, len(h.get(base, [])) + 1))
            if base in h:
                ax.plot(epochs, h[base], "-", color=color, label=f"{label} train")
            if f"val_{base}" in h:
                ax.plot(epochs, h[f"val_{base}"], "--", color=color, label=f"{label} val")
        ax.set_title(base.replace("_", " "))
        _integer_epochs(ax)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, *, title: str = "Confusion matrix"
) -> Path:
    """A readable confusion matrix: class names on both axes, counts in cells."""
    import numpy as np

    cm = np.asarray(matrix)
    k = len(class_names)
    size = max(4.5, 0.55 * k + 2.5)
    fig = _figure((size, size * 0.9))
    ax = fig.subplots()
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
    return _save(fig, path)


def plot_regression(y_true: Any, y_pred: Any, path: str | Path, *, title: str = "Predicted vs true") -> Path:
    """Predicted against true values, with the identity line."""
    import numpy as np

    yt = np.ravel(y_true)
    yp = np.ravel(y_pred)
    fig = _figure((5, 5))
    ax = fig.subplots()
    ax.scatter(yt, yp, s=10, alpha=0.6)
    lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1, label="ideal")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
