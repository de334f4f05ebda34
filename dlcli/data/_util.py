"""Small helpers shared by the data sources: errors, suggestions, splits."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from dlcli.config.suggest import did_you_mean  # noqa: F401 - the sources import it from here
from dlcli.errors import cfg_error  # noqa: F401 - likewise


def short_list(items: Sequence[object], limit: int = 8) -> str:
    """Format `items` as "a, b, c" cut after `limit` entries."""
    shown = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown


def split_indices(
    n: int, fraction: float, seed: int, labels: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split `range(n)` into (kept, held_out) with a fixed seed.

    Stratified by `labels` when given and every class can be split; falls
    back to a plain seeded split otherwise (tiny or lopsided data).

    Returns:
        Two int arrays of indices, both in a seeded random order.
    """
    idx = np.arange(n)
    if fraction <= 0 or n < 2:
        return np.random.default_rng(seed).permutation(idx), idx[:0]
    from sklearn.model_selection import train_test_split

    held = max(1, int(np.ceil(n * fraction)))
    if held >= n:
        held = n - 1
    if labels is not None:
        try:
            kept, out = train_test_split(idx, test_size=held, random_state=seed, stratify=labels)
            return np.asarray(kept), np.asarray(out)
        except ValueError:
            # A class with a single sample, or fewer held-out samples than
            # classes: sklearn cannot stratify, a plain split still works.
            pass
    kept, out = train_test_split(idx, test_size=held, random_state=seed)
    return np.asarray(kept), np.asarray(out)


def per_class_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of at most `n` samples of each class, seeded, in label order."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep.append(rng.permutation(members)[:n])
    return rng.permutation(np.concatenate(keep)) if keep else np.arange(0)


def class_filter(
    cfg: Any, class_names: list[str], wanted: Sequence[int | str]
) -> list[int]:
    """Resolve `data.classes` entries to indices into `class_names`.

    An int is a class's label value (its index); a string is a class name
    (a string of digits also matches a class named by that number).

    Raises:
        ConfigError: at `data.classes.<i>` for a class that does not exist or
            is listed twice.
    """
    out: list[int] = []
    for i, want in enumerate(wanted):
        if isinstance(want, str) and want in class_names:
            k = class_names.index(want)
        elif isinstance(want, int) and not isinstance(want, bool) and 0 <= want < len(class_names):
            k = want
        else:
            raise cfg_error(
                cfg,
                f"data.classes.{i}",
                f"no class {want!r} in {cfg.data.source}",
                hint=did_you_mean(want, class_names) or f"classes are {short_list(class_names, 12)}",
            )
        if k in out:
            raise cfg_error(cfg, f"data.classes.{i}", f"class {want!r} is listed twice")
        out.append(k)
    if len(out) < 2:
        raise cfg_error(cfg, "data.classes", "keep at least two classes to train a classifier")
    return out
