"""One writer per export format: `export_<name>(job)`, named in
`dlcli.export.table`.

A writer converts `job.serving` under a temporary name beside `job.path`,
runs `job.check` on it (the parity check) and only then moves it into
place, so a failed or disagreeing export never replaces an earlier one. It
returns what the format adds to its `export.json` entry (`size_bytes`,
`parity`, `_convert_seconds`, ...).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from dlcli.export import formats
from dlcli.export.job import ExportJob
from dlcli.runs import atomic_path

SAVED_MODEL_DIR = "saved_model"


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
        publish(tmp, directory=True)
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
        publish(tmp)
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
        publish(tmp)
    return {"size_bytes": size, "parity": result, "_convert_seconds": convert_seconds}


def publish(path: Path, directory: bool = False) -> None:
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


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
