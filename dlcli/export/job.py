"""What a format's writer gets: the run's data, the parity check, the job.

`RunData` draws held-out samples (and int8 calibration data) through the
run's own config and data pipeline; `ParityCheck` runs an exported file in
its runtime and holds it to the agreement threshold; `ExportJob` bundles
them for one `export_<fmt>` writer (`dlcli.export.writers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dlcli.errors import ExportError, RunError
from dlcli.export import formats, parity, table
from dlcli.runs import Run


class RunData:
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


class ParityCheck:
    """Run an exported file and hold it to the agreement threshold."""

    def __init__(
        self, data: RunData, reference: dict[str, np.ndarray], quantize: str, threshold: float,
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
    data: RunData
    calibration_samples: int
    check: ParityCheck
    note: Callable[[str], None]


def keras_outputs(model: Any, serving: formats.Serving, x: Any, batch_size: int = 64) -> dict[str, np.ndarray]:
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


def _parity_hint(quantize: str) -> str:
    if quantize == "int8":
        return "try more --calibration-samples, --quantize float16, or a lower --min-agreement"
    return "lower --min-agreement only if this gap is expected"
