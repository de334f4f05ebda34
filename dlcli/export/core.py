"""`export_run`: export a run's model and prove it computes the same thing.

The steps, for every format: load the run's model (safe mode unless the
user trusts the file), draw held-out samples through the run's own data
pipeline, write the export under a temporary name in `<run>/export/`, run
the exported file with the runtime a server or phone would use, compare
its outputs with the Keras model's, and only then move it into place and
record it in `export/export.json`. An export that falls below the
agreement threshold is removed and never replaces an earlier one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from dlcli.config.suggest import did_you_mean
from dlcli.errors import ConfigError, ExportError, RunError
from dlcli.export import formats, parity, runtimes, table
from dlcli.runs import EXPORT_DIR, Run, atomic_path, json_default, resolve_run, unwritable

EXPORT_FILE = "export.json"
SAVED_MODEL_DIR = "saved_model"
DEFAULT_SAMPLES = 500
DEFAULT_CALIBRATION_SAMPLES = 300

Progress = Optional[Callable[[str], None]]


def export_run(
    run_path: Union[str, Path],
    fmt: str,
    *,
    quantize: str = "none",
    min_agreement: Optional[float] = None,
    samples: int = DEFAULT_SAMPLES,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    unsafe: bool = False,
    progress: Progress = None,
) -> dict[str, Any]:
    """Export a run's model and check it against the Keras model.

    Args:
        run_path: a run folder (`runs/cnn_digits/1`) or a run name folder
            holding numbered runs (the latest is taken).
        fmt: saved_model | tflite | onnx.
        quantize: none | float16 | int8 (tflite only). int8 is calibrated
            on `calibration_samples` of the run's training data.
        min_agreement: the least share of held-out samples on which the
            export must agree with the Keras model (default 0.99, 0.97 for
            int8).
        samples: how many held-out samples (test split, else validation)
            the parity check runs.
        calibration_samples: training samples for int8 calibration.
        unsafe: load a model file holding arbitrary code (Lambda layers).
        progress: called with a short note as each step starts.

    Returns:
        The export's record as written to `export/export.json` (format,
        quantize, file, size_bytes, parity, inputs, outputs, class_names,
        versions, timings), plus `path` (the exported file or folder),
        `run` and `export_json`.

    Raises:
        ConfigError: a bad option (exit 2, nothing written).
        runtimes.MissingExtraError: the format's optional extra is missing.
        RunError: no usable run folder or an unsafe model file.
        ExportError: conversion failed or agreement fell below the
            threshold (exit 1; the export is removed).
    """
    started = time.perf_counter()
    fmt, quantize, threshold = check_options(fmt, quantize, min_agreement, samples, calibration_samples)
    note = progress or (lambda _msg: None)
    run = resolve_run(run_path)
    if not run.is_folder or not run.config_path.is_file():
        raise RunError(
            f"{run.path} is not a run folder with a config.yaml",
            hint="export needs the run's data for its parity check; pass a folder written by `dlcli train`",
        )
    problem = unwritable(run.path)
    if problem:
        raise RunError(f"cannot write the export into {run.path / EXPORT_DIR}: {problem}",
                       hint="copy the run folder somewhere writable (cp -r) and export the copy")
    row = table.get(fmt)
    # A missing extra is a usage error: say so before any work is done.
    row.check_installed()
    note(f"loading {run.model_path}")
    from dlcli.model.io import load_model  # imports Keras: only once the options are good
    # Safe mode unless --unsafe: a Lambda layer's code never runs unasked.
    model = load_model(run.model_path, unsafe=unsafe, compile=False)
    row.check_inputs(model)  # a format that cannot take string inputs: exit 2, nothing written
    note("loading the run's data")
    data = _RunData(run)
    serving = formats.serving_model(model, data.spec, standardize_inside=quantize != "int8")
    data.draw(serving, samples)
    reference = _keras_outputs(model, serving, data.held_out_x)
    loaded = time.perf_counter()

    export_dir = run.path / EXPORT_DIR
    made_dir = not export_dir.exists()
    export_dir.mkdir(parents=True, exist_ok=True)
    job = ExportJob(
        serving, export_dir / row.file_name(quantize), quantize, data, calibration_samples,
        _ParityCheck(data, reference, quantize, threshold, row, note), note,
    )
    try:
        entry = {"format": fmt, "quantize": quantize, "file": job.path.name, **row.writer()(job)}
    except BaseException:
        if made_dir:
            with contextlib.suppress(OSError):
                export_dir.rmdir()  # only if still empty: earlier exports stay
        raise

    finished = time.perf_counter()
    entry.update(
        inputs=[i.to_json() for i in serving.inputs],
        outputs=[o.to_json() for o in serving.outputs],
        signature=formats.SIGNATURE,
        preprocessing=serving.preprocessing,
        client_preprocessing=_client_notes(data.spec, standardized=serving.standardize is not None),
        task=data.task,
        class_names=data.spec.class_names,
        model={"file": run.model_path.name, "sha256": _sha256(run.model_path)},
        versions=_versions(row, entry["parity"]["runtime"]),
        timings={
            "load_seconds": round(loaded - started, 3),
            "convert_seconds": round(entry.pop("_convert_seconds"), 3),
            "parity_seconds": round(entry["parity"].pop("_seconds"), 3),
            "total_seconds": round(finished - started, 3),
        },
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    key = export_key(fmt, quantize)
    _record(export_dir, key, entry)
    result = dict(entry)
    result.update(key=key, run=str(run.path), path=str(export_dir / entry["file"]), export_json=str(export_dir / EXPORT_FILE))
    return result


def check_options(
    fmt: str,
    quantize: str = "none",
    min_agreement: Optional[float] = None,
    samples: int = DEFAULT_SAMPLES,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
) -> tuple[str, str, float]:
    """Validate the export options before anything is loaded.

    Returns:
        (format, quantize, agreement threshold).

    Raises:
        ConfigError: an unknown format or quantization, quantization for a
            format without it, or an out-of-range number.
    """
    fmt = _choice("--format", fmt, table.FORMATS)
    quantize = _choice("--quantize", quantize or "none", table.QUANTIZE)
    if quantize not in table.get(fmt).quantize:
        takes = [f.name for f in table.EXPORT_FORMATS if quantize in f.quantize]
        raise ConfigError(
            f"quantization applies to --format {' or '.join(takes)} only, not {fmt}",
            key="--quantize",
            hint=f"drop --quantize {quantize}, or use --format {takes[0]}",
        )
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"{min_agreement} is not a share between 0 and 1", key="--min-agreement")
    if samples < 1:
        raise ConfigError(f"needs at least 1 sample, got {samples}", key="--samples")
    if calibration_samples < 1:
        raise ConfigError(f"needs at least 1 sample, got {calibration_samples}", key="--calibration-samples")
    threshold = parity.DEFAULT_MIN_AGREEMENT[quantize] if min_agreement is None else float(min_agreement)
    return fmt, quantize, threshold


def export_key(fmt: str, quantize: str = "none") -> str:
    """The entry name of an export in export.json (tflite_int8, onnx, ...)."""
    return fmt if quantize == "none" else f"{fmt}_{quantize}"


class _RunData:
    """The run's held-out samples and calibration data, through the run's
    own config and data pipeline (the same preprocessing as training)."""

    def __init__(self, run: Run) -> None:
        from dlcli.config import load_config
        from dlcli.data import load_data

        self.run = run
        cfg = load_config(run.config_path)
        self.bundle = load_data(cfg)
        # The spec saved at training time is what the model was trained on.
        self.spec = run.data_spec or self.bundle.spec
        self.task: str = self.spec.task

    def draw(self, serving: formats.Serving, samples: int) -> None:
        """Take the held-out samples: the test split, else validation (else,
        for data with neither, training samples, so the split is named)."""
        self.serving = serving
        for split in ("test", "val", "train"):
            ds = getattr(self.bundle, split)
            x = _take(ds, samples) if ds is not None else None
            if x is not None:
                self.split = split
                self.held_out_x = x
                break
        else:
            raise RunError(f"the data of {self.run.path} yields no samples to check the export against")
        self.held_out_feed = serving.feed(self.held_out_x)

    @property
    def samples(self) -> int:
        return len(next(iter(self.held_out_feed.values())))

    def representative(self, n: int) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        """A TFLite representative dataset: n training inputs, one at a time."""
        x = self.bundle.representative(n) if self.bundle.representative else None
        if x is None:
            x = _take(self.bundle.train, n)
        feed = self.serving.feed(x)

        def gen() -> Iterator[dict[str, np.ndarray]]:
            for i in range(len(next(iter(feed.values())))):
                yield {name: v[i : i + 1] for name, v in feed.items()}

        return gen


class _ParityCheck:
    """Run an exported file and hold it to the agreement threshold."""

    def __init__(
        self, data: _RunData, reference: dict[str, np.ndarray], quantize: str, threshold: float,
        row: table.ExportFormat, note: Callable[[str], None],
    ) -> None:
        self.data = data
        self.reference = reference
        self.quantize = quantize
        self.threshold = threshold
        self.label = row.name if quantize == "none" else f"{row.name} ({quantize})"
        self.row = row
        self.note = note

    def __call__(self, path: Path) -> dict[str, Any]:
        """Load the export at `path` in its runtime and compare its outputs."""
        self.note(f"checking parity ({self.row.runtime})")
        runner, runtime = self.row.loader()(path)
        try:
            outputs, seconds = parity.run_batches(runner, self.data.held_out_feed)
        except Exception as exc:  # the runtime's refusal: a broken export
            text = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
            raise ExportError(f"the {self.label} export fails to run in {runtime}: {text}; the export was not kept") from exc
        result = parity.compare(self.reference, outputs, task=self.data.task, quantize=self.quantize)
        result.update(
            split=self.data.split,
            min_agreement=self.threshold,
            runtime=runtime,
            ms_per_sample=round(1000.0 * seconds / max(result["samples"], 1), 4),
            _seconds=seconds,
        )
        if result["agreement"] < self.threshold:
            what = "top-1 agreement" if "top1_agreement" in result else "agreement"
            raise ExportError(
                f"{self.label} export disagrees with the Keras model: {what} {result['agreement']:.4f} "
                f"on {result['samples']} {self.data.split} samples is below {self.threshold} "
                f"(max abs diff {result['max_abs_diff']:.3g}); the export was not kept",
                hint=_parity_hint(self.quantize),
            )
        result["passed"] = True
        return result


@dataclass
class ExportJob:
    """What a format's writer gets: the serving model, where the export
    goes, the quantize mode, the run's data, the parity check, a progress
    callback."""

    serving: formats.Serving
    path: Path
    quantize: str
    data: _RunData
    calibration_samples: int
    check: _ParityCheck
    note: Callable[[str], None]


def export_saved_model(job: ExportJob) -> dict[str, Any]:
    """Write a SavedModel folder (published whole, or not at all)."""
    final = job.path
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        job.note("writing SavedModel")
        t0 = time.perf_counter()
        formats.write_saved_model(job.serving, tmp)
        convert_seconds = time.perf_counter() - t0
        result = job.check(tmp)
        _publish(tmp, directory=True)
        _replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"size_bytes": _tree_size(final), "parity": result, "_convert_seconds": convert_seconds}


def export_tflite(job: ExportJob) -> dict[str, Any]:
    """Write a .tflite file (float32, float16 or int8-calibrated)."""
    quantize = job.quantize
    representative = job.data.representative(job.calibration_samples) if quantize == "int8" else None
    with tempfile.TemporaryDirectory(prefix="dlcli-export-") as scratch:
        # The converter reads a SavedModel: the same signature, names and
        # graph a server gets.
        saved = Path(scratch) / SAVED_MODEL_DIR
        t0 = time.perf_counter()
        formats.write_saved_model(job.serving, saved)
        job.note(f"converting to TFLite ({quantize})")
        data = formats.tflite_bytes(saved, quantize, representative)
        convert_seconds = time.perf_counter() - t0
        # The float32 size beside a quantized one shows what quantizing saved.
        float32_size = len(data) if quantize == "none" else len(formats.tflite_bytes(saved, "none"))
    with atomic_path(job.path) as tmp:
        tmp.write_bytes(data)
        result = job.check(tmp)
        _publish(tmp)
    return {
        "size_bytes": len(data),
        "float32_size_bytes": float32_size,
        "size_ratio": round(float32_size / len(data), 3),
        "parity": result,
        "_convert_seconds": convert_seconds,
    }


def export_onnx(job: ExportJob) -> dict[str, Any]:
    """Write a .onnx file with tf2onnx."""
    with atomic_path(job.path) as tmp:
        job.note("converting to ONNX (tf2onnx)")
        t0 = time.perf_counter()
        formats.write_onnx(job.serving, tmp, {k: v[:2] for k, v in job.data.held_out_feed.items()})
        convert_seconds = time.perf_counter() - t0
        result = job.check(tmp)
        size = tmp.stat().st_size
        _publish(tmp)
    return {"size_bytes": size, "parity": result, "_convert_seconds": convert_seconds}


def _record(export_dir: Path, key: str, entry: dict[str, Any]) -> None:
    # Read-modify-write of export.json under a lock on the folder, so two
    # exports of one run at once keep both entries.
    path = export_dir / EXPORT_FILE
    with _locked(export_dir):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        if not isinstance(doc, dict) or not isinstance(doc.get("exports"), dict):
            doc = {"exports": {}}
        doc["exports"][key] = entry
        doc["updated"] = entry["created"]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, default=json_default) + "\n", encoding="utf-8")
            _publish(tmp)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; writes stay atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish(path: Path, directory: bool = False) -> None:
    # Temporary files and folders are private (0600/0700); an export is
    # meant to be read by a server or a build running as another user, so
    # it gets the permissions a plain open() or mkdir() would have given.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def _replace_dir(new: Path, final: Path) -> None:
    # A folder cannot be renamed onto a non-empty one: move the old one
    # aside first, so a reader sees the old or the new, never a mix.
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old.{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _keras_outputs(model: Any, serving: formats.Serving, x: Any, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The trained model's outputs on pipeline inputs `x`, by output name.

    Called eagerly batch by batch rather than through `predict`, whose
    tf.function would be traced anew for every model loaded in a process.
    """
    import keras

    n = len(keras.tree.flatten(x)[0])
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        batch = keras.tree.map_structure(lambda a: a[start : start + batch_size], x)
        for name, y in serving.name_outputs(model(batch, training=False)).items():
            parts.setdefault(name, []).append(np.asarray(y))
    return {name: np.concatenate(ys) for name, ys in parts.items()}


def _take(ds: Any, n: int) -> Any:
    """Up to n unbatched inputs (the x of `(x, y)`) from a batched dataset,
    as numpy arrays (or a dict or tuple of them)."""
    import keras

    batches = []
    count = 0
    for element in ds:
        x = element[0] if isinstance(element, (tuple, list)) else element
        x = keras.tree.map_structure(np.asarray, x)
        batches.append(x)
        count += len(keras.tree.flatten(x)[0])
        if count >= n:
            break
    if not batches:
        return None
    joined = keras.tree.map_structure(lambda *parts: np.concatenate(parts)[:n], *batches)
    return joined


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    value = str(value).strip().lower().replace("-", "_")
    if value in choices:
        return value
    close = did_you_mean(value, choices)
    hint = f"{close} " if close else ""
    raise ConfigError(f"unknown value '{value}'", key=option, hint=f"{hint}choose one of {', '.join(choices)}")


def _client_notes(spec: Any, standardized: bool) -> list[str]:
    """What a client does to its data before calling the exported model:
    the steps of the data pipeline that are not part of the graph.

    Args:
        spec: the run's data spec.
        standardized: the graph standardises feature vectors itself.
    """
    notes = []
    if spec.image_size:
        h, w = spec.image_size
        mode = spec.color_mode or "rgb"
        notes.append(f"decode images as {mode} and resize them to {h}x{w}")
    if spec.pixel_range:
        lo, hi = spec.pixel_range
        notes.append(f"pixel values in {lo:g}..{hi:g}, as in training")
    if spec.sequence:
        notes.append("each image as a sequence of rows (height, width x channels)")
    if spec.categorical:
        cols = ", ".join(spec.categorical)
        notes.append(f"one-hot encode the categorical columns ({cols}) over the categories data_spec.json lists")
    names = spec.feature_names or spec.features
    if names:
        notes.append("feature values in this order: " + ", ".join(map(str, names)))
    if spec.standardize and not standardized:
        notes.append("standardise every feature: (x - mean) / std with data_spec.json's standardize.mean and .std")
    elif spec.standardize:
        notes.append("raw feature values: the model standardises them")
    return notes


def _parity_hint(quantize: str) -> str:
    if quantize == "int8":
        return "try more --calibration-samples, --quantize float16, or a lower --min-agreement"
    return "lower --min-agreement only if this gap is expected"


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions(row: table.ExportFormat, runtime: str) -> dict[str, Optional[str]]:
    from dlcli.versions import versions as library_versions

    versions: dict[str, Optional[str]] = {**library_versions(), "runtime": runtime}
    versions.update({dist: runtimes.package_version(dist) for dist in row.packages})
    return versions
