"""`dlcli evaluate` and `dlcli predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import contextlib

from dlcli.cli.common import BatchSizeOpt, JsonOpt, TrustModuleOpt, UnsafeOpt, err_console, handle_errors, is_terminal, out_console, print_json

RunArg = Annotated[
    Path,
    typer.Argument(help="A run folder (runs/NAME/N), a NAME folder (its latest run) or a .keras file.", metavar="RUN", show_default=False),
]
DataOpt = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        "-d",
        help=(
            "Evaluate on other data instead of the test split: a folder of images, a .csv or .npz file, "
            "or key=value pairs in the config's data: syntax (source=csv,path=x.csv). "
            "Merged over the run's data config, so preprocessing stays as in training."
        ),
        metavar="DATA",
    ),
]
InputsArg = Annotated[
    list[Path],
    typer.Argument(help="Image files, folders of images, CSV or NPZ files.", metavar="INPUT...", show_default=False),
]
TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", show_default=False, help="Also list the K most probable classes. (default: 1)")]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", metavar="FILE", help="Write the predictions to FILE: .csv, or .jsonl for JSON lines (atomically)."),
]
JsonLinesOpt = Annotated[
    bool, typer.Option("--json", metavar="", help="Print JSON lines on stdout, one object per input; everything human goes to stderr.")
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", metavar="", help="Exit 1 when any input could not be read (it is skipped either way).")
]

# Rows per printed table: a table needs all its rows before it prints, so
# long outputs come as several tables instead of one held in memory.
_TABLE_ROWS = 200


@handle_errors
def evaluate(
    run: RunArg,
    data: DataOpt = None,
    unsafe: UnsafeOpt = False,
    trust_module: TrustModuleOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Metrics of a run on its test split (or --data), with a confusion matrix.

    Also a per-class report (classifiers), per-pixel accuracy and IoU per
    class with sample masks (segmentation), reconstruction error with the
    best and worst reconstructions (autoencoders); everything is saved as
    evaluation.json and plots/ in the run folder.

    Example: dlcli evaluate runs/cnn_digits/1
    """
    from dlcli import api

    with err_console.status("evaluating", spinner="dots") if is_terminal() else contextlib.nullcontext():
        result = api.evaluate(run, data=data, unsafe=unsafe, trust_modules=trust_module or ())
    if json_:
        print_json(result)
        return
    _show_evaluation(result)


@handle_errors
def predict(
    run: RunArg,
    inputs: InputsArg,
    top_k: TopKOpt = 1,
    output: OutputOpt = None,
    batch_size: BatchSizeOpt = None,
    strict: StrictOpt = False,
    unsafe: UnsafeOpt = False,
    trust_module: TrustModuleOpt = None,
    save_dir: Annotated[Optional[Path], typer.Option("--save-dir", metavar="DIR", show_default=False, help="Write image outputs here as PNGs: predicted masks (segmentation), reconstructions (autoencoders).")] = None,
    json_: JsonLinesOpt = False,
) -> None:
    """Predict image files, folders of images, CSV or NPZ files with a run's model.

    The preprocessing the model was trained with (image size, colour mode,
    feature columns and encoding) is applied. Unreadable inputs are
    reported and skipped.

    Example: dlcli predict runs/cnn_digits/1 samples/ --top-k 3 --output predictions.csv
    """
    from dlcli import api
    from dlcli.prediction import check_output, open_writer

    if output is not None:
        check_output(output, run, inputs)  # fails before the model loads
    stream = api.predict(run, inputs, top_k=top_k, batch_size=batch_size or 64, unsafe=unsafe,
                         trust_modules=trust_module or (), save_dir=save_dir)
    table = None if (json_ or output is not None) else _ChunkedTable(stream)
    try:
        with _progress() as bar:
            task = bar.add_task("predicting", total=None) if bar is not None else None
            writer_cm = open_writer(output, stream.fields) if output is not None else contextlib.nullcontext()
            with writer_cm as writer:
                for record in stream:
                    if "error" in record:
                        err_console.print(f"[yellow]skipped[/] {record['input']}: {record['error']}", markup=True, highlight=False)
                    if json_:
                        print_json(record)
                    if writer is not None:
                        writer.write(record)
                    if table is not None and "error" not in record:
                        table.add(record)
                    if bar is not None:
                        bar.advance(task)
    finally:
        stream.close()
    if table is not None:
        table.flush()
    done = f"{stream.predicted} prediction(s)"
    if stream.failed:
        done += f", {stream.failed} input(s) skipped"
    if output is not None:
        done += f"; written to {output}"
    err_console.print(done)
    if strict and stream.failed:
        raise typer.Exit(code=1)


class _ChunkedTable:
    """Prediction rows printed as Rich tables of at most _TABLE_ROWS rows."""

    def __init__(self, stream: Any) -> None:
        self.task = stream.task
        self.top_k = stream.top_k
        self.rows: list[dict[str, Any]] = []
        self.printed = False
        # Several outputs, masks, reconstructions: one column per CSV field.
        self.fields = [f for f in stream.fields if f != "error"]
        self.generic = any("." in f for f in self.fields) or self.fields[1] in ("pixels", "reconstruction_error")

    def add(self, record: dict[str, Any]) -> None:
        self.rows.append(record)
        if len(self.rows) >= _TABLE_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        from rich.table import Table

        table = Table(show_header=not self.printed, box=None, pad_edge=False)
        table.add_column("input", overflow="fold")
        if self.generic:
            from dlcli.prediction import flat_row

            for f in self.fields[1:]:
                table.add_column(f)
            for r in self.rows:
                row = flat_row(r, self.fields)
                table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
            out_console.print(table)
            self.rows, self.printed = [], True
            return
        if self.task in ("classification", "binary"):
            table.add_column("class")
            table.add_column("probability", justify="right")
            if self.top_k > 1:
                table.add_column(f"top {self.top_k}")
        elif self.task == "ctc":
            table.add_column("text")
        else:
            table.add_column("value", justify="right")
        for r in self.rows:
            if "class" in r:
                cells = [r["input"], str(r["class"]), f"{r['probability']:.4f}"]
                if self.top_k > 1:
                    cells.append(", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"]))
            elif "text" in r:
                cells = [r["input"], r["text"]]
            else:
                v = r["value"]
                cells = [r["input"], ", ".join(f"{x:.4g}" for x in v) if isinstance(v, list) else f"{v:.4g}"]
            table.add_row(*cells)
        out_console.print(table)
        self.rows = []
        self.printed = True


def _show_evaluation(result: dict[str, Any]) -> None:
    """The metrics table, then what fits each target: per-class, regression,
    ctc, reconstruction or segmentation figures (under each output's name
    for a model with several), then the plots and the saved file."""
    from rich.table import Table

    data = result["data"]
    where = data.get("path") or data.get("source")
    err_console.print(f"[bold]{result['run']}[/] on {where} ({data['split']}, {data['samples']} samples)")
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result["metrics"].items():
        table.add_row(k, f"{v:.4f}")
    outputs = result.get("outputs") or {}
    if not outputs:
        _figure_rows(table, result, result["metrics"])
    out_console.print(table)
    if not outputs:
        _per_class_tables(result, "per class")
    for name, part in outputs.items():
        figures = Table(title=f"output {name}: {part.get('task', '')}", title_justify="left")
        figures.add_column("figure")
        figures.add_column("value", justify="right")
        if _figure_rows(figures, part, {}):
            out_console.print(figures)
        _per_class_tables(part, f"output {name}: per class")
    for name, path in (result.get("plots") or {}).items():
        err_console.print(f"{name.replace('_', ' ')}: {path}")
    if result.get("evaluation_file"):
        err_console.print(f"saved: {result['evaluation_file']}")
    if result.get("not_saved"):
        err_console.print(f"note: {result['not_saved']}", markup=False)


def _figure_rows(table: Any, part: dict[str, Any], metrics: dict[str, Any]) -> int:
    """Rows for a target's regression, ctc, reconstruction or segmentation
    figures (a name that is also a metric gets its section's name first);
    how many."""
    n = 0
    for section in ("regression", "ctc", "reconstruction", "segmentation"):
        for k, v in (part.get(section) or {}).items():
            if k not in ("samples", "pixels", "per_class"):
                table.add_row(f"{section} {k}" if k in metrics else k, f"{v:.4f}")
                n += 1
    return n


def _per_class_tables(part: dict[str, Any], title: str) -> None:
    """A segmentation target's per-class IoU, a classifier's precision,
    recall and f1 per class, with their averages."""
    from rich.table import Table

    if (part.get("segmentation") or {}).get("per_class"):
        iou = Table(title=title, title_justify="left")
        for col in ("class", "IoU", "pixels"):
            iou.add_column(col, justify="left" if col == "class" else "right")
        for row in part["segmentation"]["per_class"]:
            iou.add_row(str(row["class"]), "-" if row["iou"] is None else f"{row['iou']:.3f}", str(row["pixels"]))
        out_console.print(iou)
    if part.get("per_class"):
        per = Table(title=title, title_justify="left")
        for col in ("class", "precision", "recall", "f1", "support"):
            per.add_column(col, justify="left" if col == "class" else "right")
        for row in part["per_class"]:
            per.add_row(str(row["class"]), f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
        av = part["averages"]
        per.add_section()
        for name in ("macro", "weighted"):
            a = av[name]
            per.add_row(f"{name} avg", f"{a['precision']:.3f}", f"{a['recall']:.3f}", f"{a['f1']:.3f}", str(a["support"]))
        per.add_row("accuracy", "", "", f"{av['accuracy']:.3f}", str(av["macro"]["support"]))
        out_console.print(per)


def _progress() -> Any:
    """A Rich progress bar on stderr when it is a terminal, else nothing."""
    if not is_terminal():
        return contextlib.nullcontext()
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
