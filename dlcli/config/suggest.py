"""Close-name suggestions for misspelled keys and Keras names."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.errors import ConfigError


def closest(word: object, candidates: Iterable[object], cutoff: float = 0.6) -> Optional[str]:
    """Return the candidate closest to `word`, or None when none is close.

    Matching ignores case first (`conv2d` finds `Conv2D`), then falls back
    to `difflib.get_close_matches` on lower-cased names so that a wrong
    capital costs nothing.

    Args:
        word: what the user wrote.
        candidates: the valid names.
        cutoff: the least similarity (0..1) that still counts as close.

    Returns:
        The valid name as Keras or the schema spells it, or None.
    """
    word = str(word)
    by_lower: dict[str, list[str]] = {}
    for cand in candidates:
        cand = str(cand)
        by_lower.setdefault(cand.lower(), []).append(cand)

    def spelled(key: str) -> str:
        # Of `ADAM`, `Adam` and `adam`, suggest the one cased like the word.
        forms = by_lower[key]
        same = [f for f in forms if f.islower() == word.islower() and f.isupper() == word.isupper()]
        return (same or forms)[0]

    if word.lower() in by_lower and word not in by_lower[word.lower()]:
        return spelled(word.lower())
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    if matches and word not in by_lower[matches[0]]:
        return spelled(matches[0])
    # An abbreviation made of initials: `lr` for `learning_rate`.
    if len(word) >= 2:
        initials = [k for k in by_lower if "_" in k and "".join(p[:1] for p in k.split("_")) == word.lower()]
        if len(initials) == 1:
            return spelled(initials[0])
    return None


def did_you_mean(word: object, candidates: Iterable[object], cutoff: float = 0.6) -> Optional[str]:
    """Return a "did you mean 'x'?" hint, or None when nothing is close.

    Args:
        word: what the user wrote.
        candidates: the valid names.
        cutoff: the least similarity (0..1) that still counts as close.

    Returns:
        The hint text, ready for `ConfigError(hint=...)`.
    """
    match = closest(word, candidates, cutoff)
    return f"did you mean '{match}'?" if match is not None else None


def one_of(candidates: Iterable[object], limit: int = 12) -> str:
    """Format a short "one of: a, b, c" list, cut after `limit` names."""
    names = [str(c) for c in candidates]
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return f"one of: {shown}"


def printable(text: object) -> str:
    """Escape newlines and other control characters, so that a message that
    quotes a user's odd key (`"a\\nb"`) stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def tidy(err: "ConfigError") -> "ConfigError":
    """Make a ConfigError's message, key and hint printable one-liners (in place)."""
    err.message = printable(err.message)
    err.args = (err.message,)
    if err.key is not None:
        err.key = printable(err.key)
    if err.hint is not None:
        err.hint = printable(err.hint)
    return err
