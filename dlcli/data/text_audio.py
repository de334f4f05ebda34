"""`text_dir` and `audio_dir`: class folders of `.txt` or `.wav` files.

Both are read by Keras's own loaders (`keras.utils.text_dataset_from_
directory`, `keras.utils.audio_dataset_from_directory`) in file order, then
split, filtered and batched like any array source (`arrays.finish`): a
seeded test split, `validation_split`, `data.classes`, `limit`. Text stays
raw strings, so the model's first layer is a `TextVectorization` (adapted
on the training split before fit, see `dlcli.model.adapt`); audio is the
float waveform, shape (samples, channels), padded or cut to the longest
file's length (or `data.sequence_length`), as Keras's loader does.

At predict time `.txt` and `.wav` files are read the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from dlcli.data import scanning
from dlcli.data.arrays import ArraySet, finish
from dlcli.data.bundle import DataBundle
from dlcli.errors import DataError


def _folder(cfg: Any) -> Path:
    from dlcli.data._util import cfg_error

    root = Path(cfg.data.path).expanduser()
    if not root.is_dir():
        raise cfg_error(cfg, "data.path", f"{root} is not a folder (data.source {cfg.data.source} reads class folders)")
    return root


def _read_all(ds: Any, total: Optional[int], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Every batch of Keras's dataset as arrays, the files read so far
    reported (of `total`)."""
    xs, ys = [], []
    done = 0
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
        done += len(xs[-1])
        scanning.report(what, done, total)
    if not xs:
        raise DataError("no files found")
    return np.concatenate(xs), np.concatenate(ys)


def _keras_listing(load: Any, root: Path, **kwargs: Any) -> tuple[Any, list[str], Optional[int]]:
    """Keras's loader over `root`, unshuffled, its class names and the
    number of files it found; its errors as DataErrors."""
    import contextlib
    import io
    import re
    import sys

    said = io.StringIO()
    try:
        # Keras prints "Found N files belonging to K classes." on stdout
        # (which --json keeps for JSON); dlcli's own "found" line says it.
        with contextlib.redirect_stdout(said):
            ds = load(str(root), batch_size=256, shuffle=False, label_mode="int", **kwargs)
    except ValueError as exc:
        raise DataError(f"{root}: {str(exc).splitlines()[0]}") from None
    found = re.search(r"Found (\d+) files", said.getvalue())
    rest = re.sub(r"Found \d+ files[^\n]*\n?", "", said.getvalue())
    if rest.strip():
        print(rest, end="", file=sys.stderr)
    return ds, list(ds.class_names), int(found.group(1)) if found else None


def text_dir_source(cfg: Any) -> DataBundle:
    """Class folders of `.txt` files as raw strings (one sample a file).

    Raises:
        DataError: no class folders or no `.txt` files.
    """
    import keras

    root = _folder(cfg)
    ds, names, total = _keras_listing(keras.utils.text_dataset_from_directory, root)
    x, y = _read_all(ds, total, "reading text files")
    texts = np.asarray([t.decode("utf-8", errors="replace") for t in x], dtype=str)
    s = ArraySet(source="text_dir", x=texts, y=y.astype(np.int64), class_names=names, kind="text",
                 spec={"path": str(root), "found": len(texts)})
    return finish(cfg, s)


def audio_dir_source(cfg: Any) -> DataBundle:
    """Class folders of `.wav` files as float waveforms.

    Raises:
        DataError: no class folders or no `.wav` files.
    """
    import keras

    root = _folder(cfg)
    length = getattr(cfg.data, "sequence_length", None)
    kwargs = {"output_sequence_length": int(length)} if length else {}
    ds, names, total = _keras_listing(keras.utils.audio_dataset_from_directory, root, **kwargs)
    x, y = _read_all(ds, total, "reading audio files")
    s = ArraySet(source="audio_dir", x=x.astype(np.float32), y=y.astype(np.int64), class_names=names, kind="audio",
                 spec={"path": str(root), "found": len(x)})
    return finish(cfg, s)


# ------------------------------------------------------------------ predict

def text_records(spec: Any, path: Path) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """One `.txt` file as one raw string (as Keras's loader reads it)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        yield str(path), None, f"unreadable ({exc.strerror or exc})"
        return
    yield str(path), np.asarray(text, dtype=str), ""


def check_audio(spec: Any, path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DataError(f"input {path} is not a WAV file")


def audio_records(spec: Any, path: Path) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """One `.wav` file as the training waveform layout: decoded by
    TensorFlow, padded with zeros or cut to the training length."""
    import tensorflow as tf

    length, channels = int(spec.input_shape[0]), int(spec.input_shape[1])
    try:
        audio, _ = tf.audio.decode_wav(tf.io.read_file(str(path)), desired_channels=channels)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as exc:
        yield str(path), None, f"not a readable WAV file ({exc.message.splitlines()[0]})"
        return
    wave = audio.numpy()[:length]
    if len(wave) < length:
        wave = np.pad(wave, [(0, length - len(wave)), (0, 0)])
    yield str(path), wave.astype(np.float32), ""
