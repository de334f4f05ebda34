"""`<run>/export/export.json`: what an export records about itself.

Beside what its writer returns, an entry says how to call the export
(inputs, outputs, signature, what a client does to its data first), which
model file it came from (sha256) and the library versions that made and
checked it. Entries are added under a lock on the folder, atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from dlcli.export import formats, runtimes, table
from dlcli.export.job import RunData
from dlcli.export.writers import publish
from dlcli.runs import Run, atomic_path, json_default

EXPORT_FILE = "export.json"


def describe(run: Run, data: RunData, serving: formats.Serving, row: table.ExportFormat, runtime: str) -> dict[str, Any]:
    """How to call an export and where it came from, for its entry."""
    return {
        "inputs": [i.to_json() for i in serving.inputs],
        "outputs": [o.to_json() for o in serving.outputs],
        "signature": formats.SIGNATURE,
        "preprocessing": serving.preprocessing,
        "client_preprocessing": _client_notes(data.spec, standardized=serving.standardize is not None),
        "task": data.task,
        "class_names": data.spec.class_names,
        "model": {"file": run.model_path.name, "sha256": _sha256(run.model_path)},
        "versions": _versions(row, runtime),
    }


def record_entry(export_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Add (or replace) the entry `key` of `<export_dir>/export.json`."""
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
            publish(tmp)


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
