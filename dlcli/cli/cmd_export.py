"""Command: export (SavedModel, TFLite, ONNX with a parity check)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlcli.cli.common import JsonOpt, TrustModuleOpt, UnsafeOpt, err_console, handle_errors, is_terminal, print_json
from dlcli.export.table import FORMATS, QUANTIZE, QUANTIZE_HELP

RunArg = Annotated[
    Path, typer.Argument(help="A run folder (runs/cnn_digits/1) or a run name folder (its latest run).", metavar="RUN", show_default=False)
]
FormatOpt = Annotated[
    str,
    typer.Option("--format", "-f", help=" | ".join(FORMATS) + ".", metavar="FORMAT", show_default=False),
]
QuantizeOpt = Annotated[
    str,
    typer.Option("--quantize", help=" | ".join(QUANTIZE) + f" ({QUANTIZE_HELP}). (default: none)", metavar="MODE", show_default=False),
]
MinAgreementOpt = Annotated[
    Optional[float],
    typer.Option("--min-agreement", help="Least share of held-out samples on which the export must agree with the Keras model. (default: 0.99; 0.97 for int8)", metavar="F"),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", help="Held-out samples (test split, else validation) for the parity check. (default: 500)", metavar="N", show_default=False)
]
CalibrationOpt = Annotated[
    int, typer.Option("--calibration-samples", help="Training samples that calibrate int8 quantization. (default: 300)", metavar="N", show_default=False)
]


@handle_errors
def export(
    run: RunArg,
    format: FormatOpt,  # noqa: A002  the option is --format
    quantize: QuantizeOpt = "none",
    min_agreement: MinAgreementOpt = None,
    samples: SamplesOpt = 500,
    calibration_samples: CalibrationOpt = 300,
    json_out: JsonOpt = False,
    unsafe: UnsafeOpt = False,
    trust_module: TrustModuleOpt = None,
) -> None:
    """Export a run's model to SavedModel, TFLite or ONNX, checked against Keras.

    The export must agree with the Keras model on held-out data (exit 1
    if it does not).

    Example: dlcli export runs/cnn_digits/1 --format tflite --quantize int8
    """
    from dlcli import api

    show = is_terminal() and not json_out
    with err_console.status("exporting", spinner="dots") if show else contextlib.nullcontext() as status:
        result = api.export(
            run,
            format,
            quantize=quantize,
            min_agreement=min_agreement,
            samples=samples,
            calibration_samples=calibration_samples,
            unsafe=unsafe,
            trust_modules=trust_module or (),
            progress=(lambda msg: status.update(msg)) if show else None,
        )
    if json_out:
        print_json(result)
    else:
        _print_result(result)


def _print_result(r: dict[str, Any]) -> None:
    from rich.table import Table

    p = r["parity"]
    title = f"{r['format']}" + (f" ({r['quantize']})" if r["quantize"] != "none" else "")
    table = Table(title=f"export {title}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    size = _size(r["size_bytes"])
    if r.get("float32_size_bytes") and r["quantize"] != "none":
        size += f"  (float32 {_size(r['float32_size_bytes'])}, {r['size_ratio']:.2f}x smaller)"
    table.add_row("size", size)
    names = ", ".join(f"{i['name']} {_shape(i['shape'])} {i['dtype']}" for i in r["inputs"])
    table.add_row("inputs", names)
    table.add_row("outputs", ", ".join(f"{o['name']} {_shape(o['shape'])}" for o in r["outputs"]))
    what = "top-1 agreement" if "top1_agreement" in p else "agreement"
    table.add_row(what, f"{p['agreement']:.4f} on {p['samples']} {p['split']} samples (min {p['min_agreement']})")
    diff = f"max {p['max_abs_diff']:.3g}, mean {p['mean_abs_diff']:.3g}"
    if "relative_error" in p:
        diff += f", relative {p['relative_error']:.3g}"
    table.add_row("abs diff", diff)
    table.add_row("runtime", f"{p['runtime']}, {p['ms_per_sample']:.3f} ms/sample")
    t = r["timings"]
    table.add_row("time", f"{t['total_seconds']:.1f} s (convert {t['convert_seconds']:.1f} s)")
    err_console.print(table)
    # The path on a line of its own: a table would wrap it mid-name.
    err_console.print(f"wrote {r['path']}", markup=False, highlight=False)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shape(shape: list) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
