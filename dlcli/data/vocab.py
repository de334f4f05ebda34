"""CTC targets written as strings: a vocabulary turns them into label
sequences, and turns decoded sequences back into strings.

A csv / parquet column or an npz string array of transcriptions (`"3 1 4"`,
`"hello"`) becomes the padded integer labels Keras's CTC loss takes
(`keras.losses.CTC`: index 0 is the blank and the padding, so token i of
the vocabulary is class i + 1, and a label's length is its count of
non-zero entries). `data.vocabulary` says how:

```yaml
data:
  vocabulary:
    tokens: "abcdefghijklmnopqrstuvwxyz '"   # a list, or a string: its characters
    split: character                         # character | whitespace
```

Without `tokens` the vocabulary is learned from the training split, as
Keras's `StringLookup.adapt` does (every distinct token, sorted). The
vocabulary is saved in the run's data spec (`charset`: the blank, then the
tokens), so predict decodes greedy CTC output back into strings.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dlcli.data._util import cfg_error, did_you_mean

BLANK_NAME = "<blank>"
SPLITS = {"character": "", "whitespace": " "}
_KEYS = ("tokens", "split")


def vocabulary_options(cfg: Any) -> tuple[Optional[list[str]], str]:
    """`data.vocabulary` checked: (the given tokens or None, the split).

    Raises:
        ConfigError: at `data.vocabulary.<key>` for an unknown key, a split
            that is not character / whitespace, or tokens that are empty,
            repeated, or do not fit the split.
    """
    given = cfg.data.vocabulary
    if given is None:
        return None, "character"
    if not isinstance(given, dict):
        raise cfg_error(cfg, "data.vocabulary", f"must be a mapping {{tokens, split}}, got {given!r}",
                        hint="e.g. vocabulary: {tokens: '0123456789', split: character}")
    for key in given:
        if key not in _KEYS:
            raise cfg_error(cfg, f"data.vocabulary.{key}", f"unknown vocabulary option {key!r}",
                            hint=did_you_mean(str(key), _KEYS) or "options are tokens, split")
    split = given.get("split", "character")
    if split not in SPLITS:
        raise cfg_error(cfg, "data.vocabulary.split", f"must be character or whitespace, got {split!r}")
    tokens = given.get("tokens")
    if tokens is None:
        return None, split
    key = "data.vocabulary.tokens"
    if isinstance(tokens, str):
        tokens = list(tokens)
    if not isinstance(tokens, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tokens):
        raise cfg_error(cfg, key, "must be a list of tokens or a string of characters")
    tokens = [str(t) for t in tokens]
    if not tokens:
        raise cfg_error(cfg, key, "is empty", hint="list the tokens, or leave tokens out to learn them from the training split")
    seen: set[str] = set()
    for t in tokens:
        if t in seen:
            raise cfg_error(cfg, key, f"token {t!r} is listed twice")
        seen.add(t)
        if split == "character" and len(t) != 1:
            raise cfg_error(cfg, key, f"token {t!r} is not one character, but split is character",
                            hint="use split: whitespace for tokens longer than a character")
        if split == "whitespace" and (not t or t != "".join(t.split())):
            raise cfg_error(cfg, key, f"token {t!r} is empty or holds whitespace, but split is whitespace")
    return tokens, split


def tokenize(text: str, split: str) -> list[str]:
    """A transcription's tokens: its characters, or its words."""
    return list(text) if split == "character" else text.split()


def encode_transcripts(cfg: Any, splits: dict[str, Any], where: str) -> tuple[dict[str, np.ndarray], list[str], str]:
    """String targets per split (train first) as padded CTC labels.

    Args:
        cfg: the config (`data.vocabulary`).
        splits: {split: strings}; the vocabulary is learned from "train"
            unless the config gives it.
        where: the target, for messages (`data.csv's text`).

    Returns:
        ({split: int32 (n, max_length) labels padded with 0}, the charset
        (the blank, then the tokens), the separator decoding joins with).

    Raises:
        ConfigError: a bad `data.vocabulary`, or a label with a token the
            vocabulary lacks.
    """
    given, split = vocabulary_options(cfg)
    tokens_of = {s: [tokenize(str(v), split) for v in np.asarray(values).reshape(-1).tolist()]
                 for s, values in splits.items()}
    tokens = given if given is not None else sorted({t for row in tokens_of["train"] for t in row})
    if not tokens:
        raise cfg_error(cfg, "data.vocabulary", f"{where}: every training label is empty, so there is no vocabulary to learn")
    index = {t: i + 1 for i, t in enumerate(tokens)}
    width = max(1, max((len(row) for rows in tokens_of.values() for row in rows), default=1))
    out = {}
    for s, rows in tokens_of.items():
        labels = np.zeros((len(rows), width), np.int32)
        for i, row in enumerate(rows):
            for j, t in enumerate(row):
                if t not in index:
                    raise _unknown(cfg, where, s, t, " ".join(row) if split == "whitespace" else "".join(row),
                                   given is not None)
                labels[i, j] = index[t]
        out[s] = labels
    return out, [BLANK_NAME] + tokens, SPLITS[split]


def _unknown(cfg: Any, where: str, split: str, token: str, label: str, given: bool) -> Exception:
    if given:
        return cfg_error(cfg, "data.vocabulary.tokens", f"{where}: the label {label!r} has the token {token!r}, "
                         "which is not in the vocabulary", hint="add it to data.vocabulary.tokens")
    return cfg_error(cfg, "data.vocabulary", f"{where}: a {split} label {label!r} has the token {token!r}, which no "
                     "training label has (the vocabulary is learned from the training split)",
                     hint="give every token in data.vocabulary.tokens")


def decode_sequences(sequences: list[list[int]], charset: Optional[list[str]], separator: Optional[str]) -> list[str]:
    """Class sequences (greedy CTC output) as strings: each class's token
    joined by the separator; class indices, space-separated, where the
    data named no tokens (padded integer labels)."""
    if not charset:
        return [" ".join(str(i) for i in seq) for seq in sequences]
    sep = "" if separator is None else separator
    return [sep.join(charset[i] if 0 < i < len(charset) else "?" for i in seq) for seq in sequences]


def transcript_target(cfg: Any, path: Any, column: Any, target: str, train_rows: int) -> tuple[Any, np.ndarray]:
    """A csv / parquet target column of transcriptions (training rows
    first) as CTC labels for every row, and its output spec.

    Raises:
        ConfigError: a column of numbers (one label per row, no sequence),
            or a bad vocabulary (see `encode_transcripts`).
    """
    import pyarrow as pa

    from dlcli.data.spec import OutputSpec

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise cfg_error(cfg, "compile.loss", f"the CTC loss needs label sequences, but {target} has one number per row",
                        hint="give the labels as strings of tokens (\"3 1 4\", \"hello\"), with data.vocabulary")
    values = column.to_numpy(zero_copy_only=False)
    labels, charset, _ = encode_transcripts(cfg, {"train": values[:train_rows], "validation or test": values[train_rows:]},
                                            f"{path.name}'s {target}")
    y = np.concatenate(list(labels.values()))
    return OutputSpec(name=target, task="ctc", label_mode="ctc", class_names=charset, num_classes=len(charset),
                      shape=[int(y.shape[1])]), y


def token_separator(cfg: Any, outputs: list[Any]) -> Optional[str]:
    """The separator predict joins decoded tokens with, where an output's
    labels came through the vocabulary; None where none did.

    Raises:
        ConfigError: `data.vocabulary` given, but no output is a CTC target
            of strings.
    """
    used = any(_get(o, "task") == "ctc" and _get(o, "class_names") for o in outputs)
    if not used:
        if cfg.data.vocabulary is not None:
            raise cfg_error(cfg, "data.vocabulary", "applies to string targets of the ctc loss, and no target is one",
                            hint="remove data.vocabulary, or use loss: ctc with a target of strings")
        return None
    return SPLITS[vocabulary_options(cfg)[1]]


def _get(o: Any, key: str) -> Any:
    return o.get(key) if isinstance(o, dict) else getattr(o, key)
