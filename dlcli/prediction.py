"""Predictions of a run's model for image files, folders, CSV and NPZ files.

Inputs are read and preprocessed by `dlcli.data.load_inputs` with the
run's recorded data spec (image size, colour mode, feature order and
encoding), so a prediction sees exactly what training saw. Batches are read
in a background thread while the model works on the previous one, and
results are yielded one input at a time: memory does not grow with the
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

# Output file kinds by extension.
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")

# Batches read ahead of the model: enough to hide decoding behind
# inference without holding many batches of images in memory.
_PREFETCH = 2


def predict_inputs(
    run: str | Path | Run | RunModel,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 1,
    batch_size: int = 64,
    unsafe: bool = False,
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

    Returns:
        A PredictionStream: an iterator of dicts in input order, each
        `{"input", "class", "probability"[, "top_k"]}` (classification and
        binary), `{"input", "value"}` (regression), `{"input", "text"}`
        (ctc), or `{"input", "error"}` for an input that was skipped.

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

    batches = load_inputs(rm.spec, [str(p) for p in inputs], batch_size)
    return PredictionStream(rm, batches, top_k=top_k)


class PredictionStream:
    """Iterator of per-input prediction dicts (see `predict_inputs`).

    Attributes:
        task: classification | binary | regression | ctc.
        class_names: the model's class names (classification, binary).
        fields: the CSV columns, in order, for `write_predictions`.
        predicted: inputs predicted so far.
        failed: inputs skipped so far (unreadable, corrupt, not an image).
    """

    def __init__(self, rm: RunModel, batches: Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]], *, top_k: int) -> None:
        self.run_model = rm
        self.task = rm.task
        self.class_names = rm.class_names
        self.top_k = min(top_k, len(rm.class_names)) if rm.class_names else 1
        self.predicted = 0
        self.failed = 0
        self._decode = _ctc_decoder(rm) if rm.task == "ctc" else None
        self._expected = _expected_shape(rm.model)
        self._predict = _batch_predictor(rm.model)
        self._batches = _read_ahead(batches, _PREFETCH)
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
        if self.task in ("classification", "binary"):
            cols = ["input", "class", "probability"]
            for i in range(2, self.top_k + 1):
                cols += [f"class_{i}", f"probability_{i}"]
        elif self.task == "ctc":
            cols = ["input", "text"]
        else:
            width = self.run_model.spec.target_width or _flat_width(self.run_model.model)
            cols = ["input", "value"] if width in (None, 1) else ["input"] + [f"value_{i}" for i in range(width)]
        return cols + ["error"]

    def _generate(self) -> Iterator[dict[str, Any]]:
        try:
            for names, x, errors in self._batches:
                if len(names):
                    self._check_shape(names[0], x)
                    out = self._predict(x)
                    for record in self._records_of(names, out):
                        self.predicted += 1
                        yield record
                for name, message in errors:
                    self.failed += 1
                    yield {"input": name, "error": _without_prefix(message, name)}
            if not self.predicted:
                raise PredictionError(f"nothing was predicted: all {self.failed} input(s) were skipped" if self.failed
                                      else "nothing was predicted: the inputs hold no images, rows or arrays")
        finally:
            self._batches.close()

    def _check_shape(self, name: str, x: np.ndarray) -> None:
        want = self._expected
        got = tuple(x.shape[1:])
        if want is not None and (len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got))):
            raise DataError(
                f"{name}: the input has shape {list(got)} per sample but the model takes {list(want)}",
                hint="give inputs like the ones the model was trained on",
            )

    def _records_of(self, names: list[str], out: np.ndarray) -> Iterator[dict[str, Any]]:
        if self.task == "ctc":
            for name, text in zip(names, self._decode(out)):
                yield {"input": name, "text": text}
            return
        if self.task == "regression":
            flat = out.reshape(len(names), -1)
            for name, row in zip(names, flat):
                yield {"input": name, "value": float(row[0]) if row.size == 1 else [float(v) for v in row]}
            return
        probs = class_probabilities(out, self.task, self.run_model.from_logits)
        order = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        names_ = self.class_names
        for i, name in enumerate(names):
            best = int(order[i, 0])
            rec: dict[str, Any] = {"input": name, "class": names_[best], "probability": float(probs[i, best])}
            if self.top_k > 1:
                rec["top_k"] = [{"class": names_[int(j)], "probability": float(probs[i, int(j)])} for j in order[i]]
            yield rec


def _without_prefix(message: str, name: str) -> str:
    # Readers often start a message with the input's name; it is already
    # the record's "input".
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


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


def _batch_predictor(model: Any):
    """A numpy -> numpy function running the model in inference mode.

    `predict_on_batch` reuses Keras's compiled predict function across
    calls; `model.predict` would rebuild its data pipeline for every batch.
    """

    def predict(x: np.ndarray) -> np.ndarray:
        out = model.predict_on_batch(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        elif isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out)

    return predict


def _expected_shape(model: Any) -> Optional[tuple]:
    shape = model.input_shape
    if isinstance(shape, list):
        raise DataError(
            f"the model takes {len(shape)} inputs; predict feeds models with a single input",
            hint="call the model from Python with keras.saving.load_model",
        )
    return tuple(shape[1:])


def _flat_width(model: Any) -> Optional[int]:
    shape = model.output_shape
    if isinstance(shape, list) or any(d is None for d in shape[1:]):
        return None
    return int(np.prod(shape[1:]))


def _ctc_decoder(rm: RunModel):
    """Greedy CTC decoding of a batch of outputs into strings."""
    from dlcli.model import ctc_greedy_decode

    charset = rm.spec.charset or rm.spec.class_names or []

    def decode(out: np.ndarray) -> list[str]:
        return ["".join(str(charset[i]) if i < len(charset) else "?" for i in seq) for seq in ctc_greedy_decode(out)]

    return decode


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
    """One CSV row (the columns of `fields`) from a prediction dict."""
    row: dict[str, Any] = {"input": record.get("input"), "error": record.get("error", "")}
    if "top_k" in record:
        for i, item in enumerate(record["top_k"][1:], start=2):
            row[f"class_{i}"] = item["class"]
            row[f"probability_{i}"] = item["probability"]
    for key in ("class", "probability", "text"):
        if key in record:
            row[key] = record[key]
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
