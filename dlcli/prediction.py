"""Predictions of a run's model for image files, folders, CSV and NPZ files.

Inputs are read and preprocessed by `dlcli.data.load_inputs` with the
run's recorded data spec (image size, colour mode, feature order and
encoding), so a prediction sees exactly what training saw. Images go from
one parallel, prefetching tf.data pipeline (read, decode, resize) straight
into the model's compiled predict function as tensors, as `model.predict`
on a tuned tf.data pipeline would; other inputs (CSV blocks, arrays) are
read in a background thread while the model works on the previous batch.
Results are yielded one input at a time: memory does not grow with the
number of inputs.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from dlcli.errors import ConfigError, DataError, PredictionError
from dlcli.model.io import RunModel, open_run
from dlcli.runs import Run, atomic_path, run_folder_of
from dlcli.targets import Target, by_output, class_probabilities, pixel_classes, targets_of  # noqa: F401

# Output file kinds by extension.
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")

# Batches of CSV rows or arrays read ahead of the model: enough to hide
# reading behind inference without holding many batches in memory (image
# batches are prefetched by their tf.data pipeline).
_PREFETCH = 2


def predict_inputs(
    run: str | Path | Run | RunModel,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 1,
    batch_size: int = 64,
    unsafe: bool = False,
    save_dir: Optional[str | Path] = None,
) -> "PredictionStream":
    """Predict every input with a run's model, one dict per input.

    The run and every input path are checked before this returns, so a
    missing run, a missing path or an input kind the model cannot take
    raises here, before any prediction is made.

    Args:
        run: a run folder, a `<name>` folder (latest run), a `.keras` file,
            or a RunModel already opened with `dlcli.model.io.open_run`.
        inputs: image files, folders of images, CSV files or NPZ files.
        top_k: with more than 1, each classification result also lists the
            `top_k` most probable classes.
        batch_size: inputs per model call.
        unsafe: allow model files with arbitrary code (Lambda layers).
        save_dir: a folder for image outputs: each predicted segmentation
            mask (class index per pixel) or autoencoder reconstruction as
            a PNG named after its input.

    Returns:
        A PredictionStream: an iterator of dicts in input order, each
        `{"input", "class", "probability"[, "top_k"]}` (classification and
        binary), `{"input", "value"}` (regression), `{"input", "text"}`
        (ctc), `{"input", "pixels"[, "mask"]}` (segmentation: each class's
        share of the pixels), `{"input", "reconstruction_error"[, "image"]}`
        (autoencoder), or `{"input", "error"}` for an input that was
        skipped. A model with several outputs gives
        `{"input", "outputs": {name: {...}}}`, one such dict per output.

    Raises:
        RunError: the run is missing or its model cannot be loaded.
        DataError: a missing input, an input kind the model cannot take, a
            CSV without the training feature columns.
        ConfigError: top_k or batch_size below 1.
    """
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, not {top_k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}")
    if not inputs:
        raise DataError("no inputs given", hint="pass image files, folders, CSV or NPZ files")
    rm = run if isinstance(run, RunModel) else open_run(run, unsafe=unsafe)
    from dlcli.data import load_inputs

    batches = load_inputs(rm.spec, [str(p) for p in inputs], batch_size, tensors=True)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    return PredictionStream(rm, batches, top_k=top_k, save_dir=save_dir)


class PredictionStream:
    """Iterator of per-input prediction dicts (see `predict_inputs`).

    Attributes:
        task: classification | binary | regression | ctc.
        class_names: the model's class names (classification, binary).
        fields: the CSV columns, in order, for `write_predictions`.
        predicted: inputs predicted so far.
        failed: inputs skipped so far (unreadable, corrupt, not an image).
    """

    def __init__(self, rm: RunModel, batches: Iterator[tuple[list[str], Any, list[tuple[str, str]]]], *, top_k: int,
                 save_dir: Optional[str | Path] = None) -> None:
        self.run_model = rm
        self.task = rm.task
        self.class_names = rm.class_names
        self.top_k = min(top_k, len(rm.class_names)) if rm.class_names else 1
        self.predicted = 0
        self.failed = 0
        self._targets = targets_of(rm)
        self._heads = [_Head(t, rm, top_k, save_dir) for t in self._targets]
        self._expected = _expected_shape(rm.model)
        # Image batches come from a prefetching tf.data pipeline already: a
        # Python thread in between would only add a hand-over and the GIL.
        images = rm.spec.input_kind == "image" and not rm.spec.inputs
        self._batches = batches if images else _read_ahead(batches, _PREFETCH)
        self._records = self._generate()
        self.fields = self._fields()

    def __iter__(self) -> "PredictionStream":
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._records)

    def close(self) -> None:
        """Stop reading inputs (the reader thread exits)."""
        self._records.close()

    def _fields(self) -> list[str]:
        if len(self._heads) == 1:
            return ["input"] + self._heads[0].fields() + ["error"]
        return ["input"] + [f"{h.target.name}.{f}" for h in self._heads for f in h.fields()] + ["error"]

    def _generate(self) -> Iterator[dict[str, Any]]:
        try:
            for names, x, errors in self._batches:
                if len(names):
                    self._check_shape(names[0], x)
                    outs = by_output(self.run_model.model, self.run_model.model.predict_on_batch(x), self._targets)
                    per_head = [h.records(names, outs[h.target.name], x) for h in self._heads]
                    for i, name in enumerate(names):
                        self.predicted += 1
                        if len(self._heads) == 1:
                            yield {"input": name, **per_head[0][i]}
                        else:
                            yield {"input": name, "outputs": {h.target.name: r[i] for h, r in zip(self._heads, per_head)}}
                for name, message in errors:
                    self.failed += 1
                    yield {"input": name, "error": _without_prefix(message, name)}
            if not self.predicted:
                raise PredictionError(f"nothing was predicted: all {self.failed} input(s) were skipped" if self.failed
                                      else "nothing was predicted: the inputs hold no images, rows or arrays")
        finally:
            self._batches.close()

    def _check_shape(self, name: str, x: Any) -> None:
        for key, want in self._expected.items():
            got = tuple((x.get(key, next(iter(x.values()))) if isinstance(x, dict) else x).shape[1:])
            if want is not None and (len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got))):
                raise DataError(
                    f"{name}: the input{' ' + key if key else ''} has shape {list(got)} per sample but the model takes {list(want)}",
                    hint="give inputs like the ones the model was trained on",
                )


class _Head:
    """Turns one model output's raw values into per-input records."""

    def __init__(self, target: Target, rm: RunModel, top_k: int, save_dir: Optional[str | Path]) -> None:
        self.target = target
        self.rm = rm
        names = target.class_names
        self.top_k = min(top_k, len(names)) if names else 1
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self._decode = _ctc_decoder(rm, target) if target.kind == "ctc" else None

    def fields(self) -> list[str]:
        kind = self.target.kind
        if kind == "classes":
            cols = ["class", "probability"]
            for i in range(2, self.top_k + 1):
                cols += [f"class_{i}", f"probability_{i}"]
            return cols
        if kind == "ctc":
            return ["text"]
        if kind == "segmentation":
            return ["pixels"] + (["mask"] if self.save_dir else [])
        if kind == "reconstruction":
            return ["reconstruction_error"] + (["image"] if self.save_dir else [])
        width = self.rm.spec.target_width if len(self.rm.spec.outputs or []) < 2 else None
        width = width or _flat_width(self.rm.model, self.target.name)
        return ["value"] if width in (None, 1) else [f"value_{i}" for i in range(width)]

    def records(self, names: list[str], out: np.ndarray, x: Any) -> list[dict[str, Any]]:
        kind = self.target.kind
        if kind == "ctc":
            return [{"text": text} for text in self._decode(out)]
        if kind == "regression":
            flat = out.reshape(len(names), -1)
            return [{"value": float(row[0]) if row.size == 1 else [float(v) for v in row]} for row in flat]
        if kind == "segmentation":
            return self._masks(names, out)
        if kind == "reconstruction":
            return self._reconstructions(names, out, x)
        probs = class_probabilities(out, self.target.task, self.target.from_logits)
        order = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        labels = self.target.class_names or [str(i) for i in range(probs.shape[1])]
        recs = []
        for i in range(len(names)):
            best = int(order[i, 0])
            rec: dict[str, Any] = {"class": labels[best], "probability": float(probs[i, best])}
            if self.top_k > 1:
                rec["top_k"] = [{"class": labels[int(j)], "probability": float(probs[i, int(j)])} for j in order[i]]
            recs.append(rec)
        return recs

    def _masks(self, names: list[str], out: np.ndarray) -> list[dict[str, Any]]:
        classes = pixel_classes(out, self.target.from_logits)
        n = max(2, int(out.shape[-1]))
        labels = self.target.class_names or [str(k) for k in range(n)]
        recs = []
        for name, mask in zip(names, classes):
            share = np.bincount(mask.reshape(-1), minlength=n) / mask.size
            rec: dict[str, Any] = {"pixels": {labels[k]: round(float(share[k]), 4) for k in range(n) if share[k] > 0}}
            if self.save_dir is not None:
                rec["mask"] = str(_save_png(self.save_dir, name, "mask", mask.astype(np.uint8)))
            recs.append(rec)
        return recs

    def _reconstructions(self, names: list[str], out: np.ndarray, x: Any) -> list[dict[str, Any]]:
        recs = []
        x = x if isinstance(x, dict) else np.asarray(x)  # an image batch is a tensor
        for i, name in enumerate(names):
            rec: dict[str, Any] = {}
            given = None if isinstance(x, dict) else np.asarray(x[i], np.float64)
            if given is not None and given.size == out[i].size:
                rec["reconstruction_error"] = float(np.mean((given.reshape(out[i].shape) - out[i]) ** 2))
            if self.save_dir is not None and out[i].ndim in (2, 3):
                img = np.clip(out[i] * (255.0 if out[i].max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
                rec["image"] = str(_save_png(self.save_dir, name, "reconstruction", img))
            recs.append(rec)
        return recs


def _save_png(folder: Path, name: str, what: str, img: np.ndarray) -> Path:
    """Write `img` (H, W[, C]) as `<folder>/<input stem>.<what>.png`
    atomically; npz inputs (`file.npz:3`) keep their index."""
    from PIL import Image

    # `data.npz:3` -> data_3: the sample's index must survive the stem, or
    # every sample of one file would overwrite the same PNG.
    file, sep, index = name.rpartition(":") if ":" in Path(name).name else (name, "", "")
    stem = Path(file).stem + (f"_{index}" if sep else "")
    path = folder / f"{stem}.{what}.png"
    arr = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def _without_prefix(message: str, name: str) -> str:
    # Readers often start a message with the input's name; it is already
    # the record's "input".
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _expected_shape(model: Any) -> dict[Optional[str], Optional[tuple]]:
    """One sample's shape per model input (None: the single input)."""
    shape = model.input_shape
    if isinstance(shape, (list, dict)) and len(model.inputs) > 1:
        return {t.name: tuple(t.shape[1:]) for t in model.inputs}
    if isinstance(shape, list):
        shape = shape[0]
    return {None: tuple(shape[1:])}


def _flat_width(model: Any, name: Optional[str] = None) -> Optional[int]:
    shape = model.get_layer(name).output.shape if name else model.output_shape
    if isinstance(shape, list) or any(d is None for d in shape[1:]):
        return None
    return int(np.prod(shape[1:]))


def _ctc_decoder(rm: RunModel, target: Target):
    """Greedy CTC decoding of a batch of outputs into strings (through the
    vocabulary saved with the run, see `dlcli.data.vocab`)."""
    from dlcli.data.vocab import decode_sequences
    from dlcli.model import ctc_greedy_decode

    charset = target.class_names or rm.spec.charset or rm.spec.class_names
    return lambda out: decode_sequences(ctc_greedy_decode(out), charset, rm.spec.token_separator)


def _read_ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Iterate `items` in a background thread, up to `depth` ahead.

    Exceptions raised by `items` are re-raised in the consumer. Closing
    the returned generator stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=work, name="dlcli-read-inputs", daemon=True)
    thread.start()

    def consume() -> Iterator[Any]:
        try:
            while True:
                kind, item = q.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    return consume()


def output_kind(path: str | Path) -> str:
    """"csv" or "jsonl" for an --output file, by its extension.

    Raises:
        ConfigError: any other extension.
    """
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise ConfigError(
        f"--output {path}: unknown file kind {suffix or '(no extension)'!r}",
        hint="use .csv, or .jsonl for JSON lines",
    )


def check_output(path: str | Path, run: str | Path, inputs: Sequence[str | Path]) -> str:
    """The kind of an --output file ("csv" or "jsonl"), refusing a path
    that would overwrite what predict reads or land inside a run folder.

    Raises:
        ConfigError: a bad extension, an input (or the model) as output, or
            a path inside a run folder.
    """
    kind = output_kind(path)
    target = Path(path).resolve()
    if any(Path(p).resolve() == target for p in [run, *inputs]):
        raise ConfigError(f"--output {path} is an input of this predict and would be overwritten",
                          hint="write the predictions to a new file")
    folder = run_folder_of(target)
    if folder is not None:
        raise ConfigError(f"--output {path} is inside the run folder {folder}; predict writes nothing into run folders",
                          hint="write the predictions outside it")
    return kind


def flat_row(record: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """One CSV row (the columns of `fields`) from a prediction dict; the
    columns of a model's several outputs are `<output>.<column>`."""
    if "outputs" in record:
        row = {"input": record.get("input"), "error": record.get("error", "")}
        for out, sub in record["outputs"].items():
            inner = [f.split(".", 1)[1] for f in fields if f.startswith(out + ".")]
            row.update({f"{out}.{k}": v for k, v in flat_row(sub, ["input", *inner]).items() if k != "input"})
        return {f: row.get(f, "") for f in fields}
    row: dict[str, Any] = {"input": record.get("input"), "error": record.get("error", "")}
    if "top_k" in record:
        for i, item in enumerate(record["top_k"][1:], start=2):
            row[f"class_{i}"] = item["class"]
            row[f"probability_{i}"] = item["probability"]
    for key in ("class", "probability", "text", "reconstruction_error", "image", "mask"):
        if key in record:
            row[key] = record[key]
    if "pixels" in record:
        row["pixels"] = json.dumps(record["pixels"])
    value = record.get("value")
    if isinstance(value, list):
        row.update({f"value_{i}": v for i, v in enumerate(value)})
    elif value is not None:
        row["value"] = value
    return {f: row.get(f, "") for f in fields}


class PredictionWriter:
    """Writes prediction dicts to a CSV or JSON-lines file as they come.

    Use through `open_writer`, which makes the file appear atomically.
    """

    def __init__(self, fh: io.TextIOBase, kind: str, fields: Sequence[str]) -> None:
        self.kind = kind
        self._fh = fh
        self.rows = 0
        if kind == "csv":
            self._csv = csv.DictWriter(fh, fieldnames=list(fields))
            self._csv.writeheader()
        self._fields = list(fields)

    def write(self, record: dict[str, Any]) -> None:
        """Append one prediction (or error) record."""
        if self.kind == "csv":
            self._csv.writerow(flat_row(record, self._fields))
        else:
            self._fh.write(json.dumps(record) + "\n")
        self.rows += 1


@contextmanager
def open_writer(path: str | Path, fields: Sequence[str]) -> Iterator[PredictionWriter]:
    """Write predictions to `path` (CSV or JSON lines by extension).

    Rows go to a temporary file renamed onto `path` only when the block
    ends without an error, so a failed run leaves no partial file.

    Raises:
        ConfigError: an extension that is neither CSV nor JSON lines.
    """
    kind = output_kind(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            yield PredictionWriter(fh, kind, fields)
