"""`dlcli finetune`, `dlcli backbones`, `dlcli demo-data`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlcli.cli.common import BatchSizeOpt, JsonOpt, NameOpt, OutputRootOpt, QuietOpt, ResumeOpt, SetOpt, TrustModuleOpt
from dlcli.cli.common import UnsafeOpt, err_console, handle_errors, out_console, print_json, run_options

BaseOpt = Annotated[
    Optional[str],
    typer.Option("--base", metavar="NAME", help="The pretrained model: a backbone name (see `dlcli backbones`), a dlcli run folder or a .keras file."),
]
DataDirArg = Annotated[
    Optional[Path],
    typer.Argument(help="Image folder: one sub-folder per class (or train/ val/ test/). Optional when --config has a data section.", metavar="DATA_DIR", show_default=False),
]
FineTuneEpochsOpt = Annotated[
    Optional[int], typer.Option("--fine-tune-epochs", min=0, metavar="N", help="Epochs of phase 2, with the backbone's top layers unfrozen (0 skips it). (default: 5)")
]
PhaseOneEpochsOpt = Annotated[
    Optional[int], typer.Option("--epochs", "-e", min=1, metavar="N", help="Epochs of phase 1, training the new head on the frozen backbone. (default: 5)")
]
UnfreezeOpt = Annotated[
    Optional[str], typer.Option("--unfreeze", metavar="N|F", help="Phase 2: how many top backbone layers to unfreeze (20), or a fraction of them (0.3). (default: 0.3)")
]
ImageSizeOpt = Annotated[
    Optional[int], typer.Option("--image-size", min=1, metavar="N", help="Resize images to N x N. (default: the backbone's size)")
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", metavar="WEIGHTS", help="imagenet (through Keras's cache, ~/.keras/models), none (random), or a .h5 weights file. (default: imagenet)"),
]
AugmentOpt = Annotated[
    Optional[bool],
    typer.Option("--augment/--no-augment", help="Random flips, rotations and zooms of training images. (default: on for DATA_DIR)", show_default=False),
]
StrictOpt = Annotated[
    Optional[bool], typer.Option("--strict", metavar="", help="Unreadable image files are an error instead of being skipped.", show_default=False)
]
FinetuneConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", metavar="CONFIG", help="A YAML config merged under these options (callbacks, splits, optimizer, ...)."),
]


@handle_errors
def finetune(
    data_dir: DataDirArg = None, base: BaseOpt = None,
    # The two phases.
    epochs: PhaseOneEpochsOpt = None, fine_tune_epochs: FineTuneEpochsOpt = None, unfreeze: UnfreezeOpt = None,
    # The data and the backbone.
    image_size: ImageSizeOpt = None, batch_size: BatchSizeOpt = None, weights: WeightsOpt = None,
    augment: AugmentOpt = None, strict: StrictOpt = None, config: FinetuneConfigOpt = None, set_: SetOpt = None,
    # The options of every run (run_options), as in train.
    output: OutputRootOpt = None, name: NameOpt = None, resume: ResumeOpt = None,
    unsafe: UnsafeOpt = False, trust_module: TrustModuleOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False,
) -> None:
    """Fine-tune a pretrained backbone on an image folder, in two phases.

    Phase 1 trains a new head on the frozen backbone; phase 2 unfreezes the
    backbone's top layers at a tenth of the learning rate. The run folder's
    config.yaml repeats the run with `dlcli train`.

    Example: dlcli demo-data cats_dogs && dlcli finetune --base mobilenet cats_dogs/ --weights none
    """
    from dlcli import api

    result = api.finetune(
        base, data_dir, epochs=epochs, fine_tune_epochs=fine_tune_epochs, unfreeze=unfreeze, image_size=image_size,
        batch_size=batch_size, weights=weights, augment=augment, strict=True if strict else None, config=config,
        overrides=set_ or [], name=name, resume=resume, **run_options(output, quiet, unsafe, trust_module),
    )
    m = result.metrics
    if json_:
        print_json(m)
        return
    for phase in m.get("phases", []):
        what = phase.get("trains") or ("the head, backbone frozen" if phase["phase"] == 1 else "the top backbone layers")
        first, last = phase["epochs"]
        final = phase["final"]
        shown = ", ".join(f"{k} {final[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in final)
        err_console.print(f"phase {phase['phase']} ({what}), epochs {first}-{last}: {shown}")
    test = m.get("test") or {}
    if test:
        err_console.print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    err_console.print(f"run folder: [bold]{result.run_dir}[/]")
    err_console.print(f"repeat with: dlcli train {result.run_dir / 'config.yaml'}")


@handle_errors
def backbones(json_: JsonOpt = False) -> None:
    """List the pretrained backbones `--base` and `Backbone: {name: ...}` accept.

    Parameter counts exclude the ImageNet classifier; the first listing
    builds every model once (about a minute) and caches the counts.
    """
    from dlcli.model import list_backbones

    rows = list_backbones()
    if json_:
        print_json({"backbones": rows})
        return
    from rich.table import Table

    table = Table(title="Backbones (keras.applications)", title_justify="left")
    table.add_column("name")
    table.add_column("Keras name")
    table.add_column("default size", justify="right")
    table.add_column("params", justify="right")
    for r in rows:
        params = f"{r['params']:,}" if r.get("params") is not None else "?"
        table.add_row(r["name"], r["keras_name"], f"{r['default_size']}x{r['default_size']}", params)
    out_console.print(table)


@handle_errors
def demo_data(
    path: Annotated[Path, typer.Argument(help="The folder to write; must not exist or be empty. (default: cats_dogs)", metavar="DIR", show_default=False)] = Path("cats_dogs"),
    per_class: Annotated[int, typer.Option("--per-class", min=2, metavar="N", show_default=False, help="Images per class. (default: 60)")] = 60,
    size: Annotated[int, typer.Option("--size", min=8, metavar="PIXELS", show_default=False, help="Typical image side in pixels; each image varies by up to 25%. (default: 128)")] = 128,
    corrupt: Annotated[bool, typer.Option("--corrupt/--no-corrupt", show_default=False, help="Add three broken files, which image_dir skips (or refuses with --strict). (default: on)")] = True,
    seed: Annotated[int, typer.Option("--seed", metavar="N", show_default=False, help="Random seed; the same seed writes the same images. (default: 0)")] = 0,
    kind: Annotated[str, typer.Option("--kind", metavar="KIND", show_default=False, help="What to write: cats_dogs, shapes (images + masks), texts (.txt class folders), tones (.wav class folders), denoise or multi (an .npz in DIR). (default: cats_dogs)")] = "cats_dogs",
    json_: JsonOpt = False,
) -> None:
    """Write generated stand-in data (default: a two-class image folder, cats/ dogs/) for trying dlcli offline.

    Example: dlcli demo-data cats_dogs && dlcli finetune --base mobilenet cats_dogs/ --weights none
    """
    from dlcli.errors import DataError

    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataError(f"{path} already exists and is not an empty folder", hint="choose a new folder name")
    from dlcli.data.demo import KINDS

    if kind not in KINDS:
        from dlcli.errors import ConfigError

        raise ConfigError(f"--kind {kind!r} is not a demo kind", hint="kinds: " + ", ".join(KINDS))
    if kind != "cats_dogs":
        target = path / f"{kind}.npz" if kind in ("denoise", "multi") else path
        info = KINDS[kind](target, seed=seed)
        if json_:
            print_json(info)
        else:
            err_console.print(f"wrote {info['path']}")
        return
    info: dict[str, Any] = KINDS[kind](path, n_per_class=per_class, size=size, corrupt=corrupt, seed=seed)
    if json_:
        print_json(info)
        return
    counts = ", ".join(f"{n} {c}" for c, n in info["classes"].items())
    err_console.print(f"wrote {path}: {counts}" + (f", {len(info['corrupt'])} broken files" if info.get("corrupt") else ""))
    err_console.print(f"next: dlcli finetune --base mobilenet {path}/ --weights none")
