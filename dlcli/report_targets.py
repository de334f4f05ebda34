"""Pictures of what a segmentation model or an autoencoder made, for
`dlcli evaluate` (matplotlib on the Agg canvas, written atomically).

* segmentation: a grid of test samples, input image | true mask |
  predicted mask, one fixed colour per class and a legend of class names;
* reconstruction: originals beside reconstructions for the samples with
  the lowest and the highest error, and a histogram of the per-sample
  reconstruction error (MSE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from dlcli.report import _figure, _save
from dlcli.targets import Target, pixel_classes, sample_mse

# Test samples drawn in the segmentation grid, and the best / worst
# reconstructions drawn (each).
SEGMENTATION_SAMPLES = 6
RECONSTRUCTION_SAMPLES = 4


def class_colours(n: int) -> np.ndarray:
    """One RGBA colour per class index, the same for a class in every
    picture: matplotlib's tab10 (tab20 beyond 10 classes, then evenly
    spaced hues)."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["hsv"](np.linspace(0.0, 1.0, n, endpoint=False))


def target_plots(t: Target, x: Optional[np.ndarray], y_true: np.ndarray, y_pred: np.ndarray, paths: dict[str, Path],
                 *, caption: str, pixel_range: Optional[Sequence[float]] = None) -> dict[str, Path]:
    """The pictures that fit a segmentation or reconstruction target
    (none for other kinds), keyed as in `paths` (where each goes).

    Args:
        x: the model's inputs for the first samples (or all), or None when
            they are not one array (several inputs).
        caption: the data split and sample count, for the titles.
        pixel_range: the inputs' raw value range (images: 0..255).
    """
    if t.kind == "segmentation":
        predicted = pixel_classes(y_pred[:SEGMENTATION_SAMPLES], t.from_logits)
        truth = np.asarray(y_true[:SEGMENTATION_SAMPLES]).astype(np.int64)
        if truth.size != predicted.size:
            return {}  # masks of another size than the output: nothing to draw side by side
        names = t.class_names or [str(k) for k in range(max(2, int(np.asarray(y_pred).shape[-1])))]
        title = f"Segmentation{' of ' + t.name if t.name else ''} ({caption})"
        images = None if x is None else x[: len(truth)]
        return {"segmentation": plot_segmentation(images, truth.reshape(predicted.shape), predicted, names,
                                                  paths["segmentation"], title=title, pixel_range=pixel_range)}
    if t.kind == "reconstruction":
        errors = sample_mse(y_true, y_pred)
        of = f" of {t.name}" if t.name else ""
        inputs = x if x is not None and len(x) == len(errors) else None
        return {
            "reconstructions": plot_reconstructions(inputs, y_true, y_pred, errors, paths["reconstructions"],
                                                    title=f"Best and worst reconstructions{of} ({caption})"),
            "reconstruction_error": plot_error_histogram(errors, paths["reconstruction_error"],
                                                         title=f"Reconstruction error{of} ({caption})"),
        }
    return {}


def _picture(a: np.ndarray) -> Optional[np.ndarray]:
    """A sample as something imshow draws: (h, w) or (h, w, 3); None for
    samples that are not images (sequences, vectors)."""
    a = np.asarray(a, np.float64)
    while a.ndim > 2 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] in (3, 4) else a[..., 0]
    return a if a.ndim in (2, 3) and min(a.shape[:2]) >= 4 else None


def _scaled(a: np.ndarray, value_range: Optional[Sequence[float]]) -> np.ndarray:
    """`a` mapped to [0, 1] by `value_range` (default: its own min and max)."""
    lo, hi = value_range if value_range is not None else (float(a.min()), float(a.max()))
    return np.clip((a - lo) / ((hi - lo) or 1.0), 0.0, 1.0)


def _bare(ax: Any, label: Optional[str] = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if label:
        ax.set_ylabel(label, fontsize=8)


def plot_segmentation(images: Optional[np.ndarray], truth: np.ndarray, predicted: np.ndarray, class_names: list[str],
                      path: str | Path, *, title: str, pixel_range: Optional[Sequence[float]] = None) -> Path:
    """One row per sample: input image (when given) | true mask |
    predicted mask (with the sample's pixel accuracy); class colours from
    `class_colours`, named in a legend below."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    k = len(class_names)
    colours = class_colours(k)
    cmap = ListedColormap(colours)
    pictures = [_picture(im) for im in images] if images is not None else []
    cols = 3 if any(p is not None for p in pictures) else 2
    rows, legend_rows = len(truth), 1 + (k - 1) // 4
    height = 2.0 * rows + 0.5 + 0.25 * legend_rows
    fig = _figure((2.1 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        panels = axes[i]
        if cols == 3:
            picture = pictures[i] if pictures[i] is not None else np.zeros(truth[i].shape)
            panels[0].imshow(_scaled(picture, pixel_range), cmap="gray", vmin=0.0, vmax=1.0)
            panels = panels[1:]
        for ax, mask in zip(panels, (truth[i], predicted[i])):
            ax.imshow(mask, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        _bare(axes[i][0], f"sample {i + 1}")
        for ax in axes[i][1:]:
            _bare(ax)
        panels[1].set_xlabel(f"pixel accuracy {np.mean(truth[i] == predicted[i]):.2f}", fontsize=8)
    for ax, label in zip(axes[0], (["image"] if cols == 3 else []) + ["true mask", "predicted mask"]):
        ax.set_title(label, fontsize=9)
    fig.legend(handles=[Patch(facecolor=colours[c], edgecolor="black", label=name) for c, name in enumerate(class_names)],
               loc="lower center", ncol=min(k, 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, (0.1 + 0.25 * legend_rows) / height, 1, 1 - 0.3 / height))
    return _save(fig, path)


def _extremes(errors: np.ndarray, k: int) -> list[tuple[str, int]]:
    """(label, index) of the k lowest and the k highest errors, each sample
    once (fewer when there are fewer than 2k samples)."""
    order = np.argsort(errors, kind="stable")
    k = max(1, min(k, len(order) // 2))
    return [(f"best {j + 1}", int(i)) for j, i in enumerate(order[:k])] + [
        (f"worst {j + 1}", int(i)) for j, i in enumerate(order[::-1][:k]) if i not in order[:k]]


def plot_reconstructions(inputs: Optional[np.ndarray], targets: np.ndarray, outputs: np.ndarray, errors: np.ndarray,
                         path: str | Path, *, title: str, k: int = RECONSTRUCTION_SAMPLES) -> Path:
    """One row per sample, the k best then the k worst by error: input
    (where it is not the target, as in a denoising autoencoder) | target |
    reconstruction, on the target's value scale. Samples that are not
    images are drawn as curves (target and reconstruction overlaid)."""
    rows = _extremes(errors, k)
    chosen = [i for _, i in rows]
    targets, outputs = np.asarray(targets), np.asarray(outputs)
    show_input = inputs is not None and not (np.shape(inputs) == targets.shape
                                             and np.allclose(np.asarray(inputs)[chosen], targets[chosen]))
    images = _picture(targets[chosen[0]]) is not None and _picture(outputs[chosen[0]]) is not None
    cols = (3 if show_input else 2) if images else 1
    scale = (float(min(targets[chosen].min(), outputs[chosen].min())), float(max(targets[chosen].max(), outputs[chosen].max())))
    fig = _figure((2.1 * cols if images else 6.0, (2.0 if images else 1.6) * len(rows) + 0.6))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for (label, i), panels in zip(rows, axes):
        label = f"{label}\nMSE {errors[i]:.3g}"
        if not images:
            ax = panels[0]
            for values, name, style in ((targets[i], "target", "-"), (outputs[i], "reconstruction", "--")):
                ax.plot(np.asarray(values, np.float64).reshape(-1), style, label=name, linewidth=1)
            ax.set_ylabel(label, fontsize=8)
            continue
        arrays = ([np.asarray(inputs[i])] if show_input else []) + [targets[i], outputs[i]]
        for j, (ax, a) in enumerate(zip(panels, arrays)):
            picture = _picture(a)
            ranged = scale if j >= len(arrays) - 2 else None  # the input keeps its own scale
            ax.imshow(_scaled(picture if picture is not None else np.zeros((4, 4)), ranged), cmap="gray", vmin=0.0, vmax=1.0)
            _bare(ax, label if j == 0 else None)
    if images:
        for ax, name in zip(axes[0], (["input"] if show_input else []) + ["target", "reconstruction"]):
            ax.set_title(name, fontsize=9)
    else:
        axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(fig, path)


def plot_error_histogram(errors: np.ndarray, path: str | Path, *, title: str) -> Path:
    """A histogram of the per-sample reconstruction MSE, the median and
    the 90th percentile marked."""
    errors = np.asarray(errors, np.float64)
    fig = _figure((6.4, 3.8))
    ax = fig.subplots()
    ax.hist(errors, bins=int(np.clip(np.sqrt(len(errors)), 10, 60)), color="tab:blue", alpha=0.85)
    for q, style, name in ((0.5, "--", "median"), (0.9, ":", "90th percentile")):
        value = float(np.quantile(errors, q))
        ax.axvline(value, color="black", linestyle=style, linewidth=1.2, label=f"{name} {value:.3g}")
    ax.set_xlabel("per-sample reconstruction error (MSE)")
    ax.set_ylabel("samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
