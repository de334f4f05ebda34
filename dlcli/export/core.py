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
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

from dlcli.config.suggest import did_you_mean
from dlcli.errors import ConfigError, RunError
from dlcli.export import formats, parity, table
from dlcli.export.job import ExportJob, ParityCheck, RunData, keras_outputs
from dlcli.export.record import EXPORT_FILE, describe, record_entry
from dlcli.runs import EXPORT_DIR, Run, resolve_run, unwritable

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
    run = _open_run(run_path)
    row = table.get(fmt)
    # A missing extra is a usage error: say so before any work is done.
    row.check_installed()
    data, serving, reference = _load(run, row, quantize, samples, unsafe, note)
    loaded = time.perf_counter()

    export_dir = run.path / EXPORT_DIR
    job = ExportJob(
        serving, export_dir / row.file_name(quantize), quantize, data, calibration_samples,
        ParityCheck(data, reference, quantize, threshold, row, note), note,
    )
    entry = {"format": fmt, "quantize": quantize, "file": job.path.name, **_write(row, job)}
    finished = time.perf_counter()
    entry.update(describe(run, data, serving, row, entry["parity"]["runtime"]))
    entry["timings"] = {
        "load_seconds": round(loaded - started, 3),
        "convert_seconds": round(entry.pop("_convert_seconds"), 3),
        "parity_seconds": round(entry["parity"].pop("_seconds"), 3),
        "total_seconds": round(finished - started, 3),
    }
    entry["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    key = export_key(fmt, quantize)
    record_entry(export_dir, key, entry)
    result = dict(entry)
    result.update(key=key, run=str(run.path), path=str(export_dir / entry["file"]), export_json=str(export_dir / EXPORT_FILE))
    return result


def _open_run(run_path: Union[str, Path]) -> Run:
    """The run folder to export from, checked to hold a config and to be
    writable (its `export/` folder)."""
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
    return run


def _load(run: Run, row: table.ExportFormat, quantize: str, samples: int, unsafe: bool,
          note: Callable[[str], None]) -> tuple[RunData, formats.Serving, dict[str, Any]]:
    """The run's model as a serving model, its held-out samples, and the
    Keras model's outputs on them (the parity reference)."""
    note(f"loading {run.model_path}")
    from dlcli.model.io import load_model  # imports Keras: only once the options are good

    # Safe mode unless --unsafe: a Lambda layer's code never runs unasked.
    model = load_model(run.model_path, unsafe=unsafe, compile=False)
    row.check_inputs(model)  # a format that cannot take string inputs: exit 2, nothing written
    note("loading the run's data")
    data = RunData(run)
    serving = formats.serving_model(model, data.spec, standardize_inside=quantize != "int8")
    data.draw(serving, samples)
    return data, serving, keras_outputs(model, serving, data.held_out_x)


def _write(row: table.ExportFormat, job: ExportJob) -> dict[str, Any]:
    """Run the format's writer; a failure leaves no new empty `export/`."""
    export_dir = job.path.parent
    made_dir = not export_dir.exists()
    export_dir.mkdir(parents=True, exist_ok=True)
    try:
        return row.writer()(job)
    except BaseException:
        if made_dir:
            with contextlib.suppress(OSError):
                export_dir.rmdir()  # only if still empty: earlier exports stay
        raise


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


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    value = str(value).strip().lower().replace("-", "_")
    if value in choices:
        return value
    close = did_you_mean(value, choices)
    hint = f"{close} " if close else ""
    raise ConfigError(f"unknown value '{value}'", key=option, hint=f"{hint}choose one of {', '.join(choices)}")
