"""Transfer learning: the config `dlcli finetune` writes, and running it.

`dlcli finetune --base NAME DATA_DIR` is `dlcli train` on a config built
from a few options, so the run folder's `config.yaml` repeats the run with
`dlcli train`. The config is, in order of precedence (last wins):

1. generated defaults: the image folder (`data.source: image_dir`), a
   frozen `Backbone`, a new head sized for the classes found in DATA_DIR,
   Adam at 1e-3, and a `finetune:` section for the second phase;
2. the `--config FILE` mapping (its `extends` resolved), which may supply
   or change anything (callbacks, splits, the whole layer stack);
3. the options given on the command line (`--epochs`, `--image-size`, ...);
4. `--set key.path=value` overrides.

Training itself is `dlcli.training.train`: phase 1 trains the head on the
frozen backbone; phase 2 unfreezes the backbone's top layers (keeping
BatchNormalization in inference mode) at a lower learning rate. With
`--weights none` there is nothing to freeze: the whole backbone and its
BatchNormalization train in both phases, and a warning says so.

    >>> from dlcli.finetune import finetune
    >>> result = finetune("mobilenet", "cats_dogs/", weights="none", epochs=2)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from dlcli.errors import ConfigError, RunError
from dlcli.finetune_base import BaseModel, count_classes, head_layers, parse_unfreeze, resolve_base

PathLike = Union[str, Path]

# Phase lengths when neither the options nor --config say: enough for a
# small folder on a CPU; real data sets usually want more.
DEFAULT_EPOCHS = 5
DEFAULT_FINE_TUNE_EPOCHS = 5
DEFAULT_UNFREEZE = 0.3
DEFAULT_LEARNING_RATE = 1e-3
LEARNING_RATE_FACTOR = 0.1
# Fine-tuning folders are often small: hold out enough to measure.
VALIDATION_SPLIT = 0.2
# Photos of objects: mirror, tilt and zoom slightly (Keras transfer guide).
DEFAULT_AUGMENT: list[Any] = [
    {"RandomFlip": {"mode": "horizontal"}},
    {"RandomRotation": {"factor": 0.1}},
    {"RandomZoom": {"height_factor": 0.1}},
]

# Where values given as command-line options come from, for error messages
# (`--image-size: data.image_size: ...`).
_DATA_DIR_SOURCE = "DATA_DIR"


def finetune_config(
    base: str,
    data_dir: Optional[PathLike] = None,
    *,
    epochs: Optional[int] = None,
    fine_tune_epochs: Optional[int] = None,
    unfreeze: Optional[Union[int, float, str]] = None,
    image_size: Optional[int] = None,
    batch_size: Optional[int] = None,
    weights: Optional[str] = None,
    augment: Optional[bool] = None,
    strict: Optional[bool] = None,
    config: Optional[PathLike] = None,
    overrides: Sequence[str] = (),
    name: Optional[str] = None,
) -> Any:
    """Build and validate the config of a two-phase fine-tune.

    Every option left None is taken from `config`, else from the
    generated defaults (see the module docstring for the precedence).

    Args:
        base: a backbone name, a dlcli run folder or a `.keras` file.
        data_dir: an image folder (one sub-folder per class); None takes
            the data from `config` (any data source, e.g. `digits`).
        epochs: phase 1 epochs (head only).
        fine_tune_epochs: phase 2 epochs (top backbone layers unfrozen).
        unfreeze: phase 2: how many top backbone layers, or a fraction.
        image_size: square input size (default: the backbone's).
        batch_size: the batch size.
        weights: imagenet | none | a .h5 weights file.
        augment: True/False to force the default augmentation on or off.
        strict: unreadable images are an error instead of skipped.
        config: a YAML file merged under the options.
        overrides: `key.path=value` strings applied last.
        name: the run name.

    Returns:
        A validated `dlcli.config.Config`.

    Raises:
        ConfigError: a bad option, config value or override (located).
        DataError: DATA_DIR is missing or has fewer than two classes.
        RunError: `base` is a path without a usable model.
    """
    from dlcli.config.catalog import check_config
    from dlcli.config.loader import apply_overrides, deep_merge, load_document
    from dlcli.config.validate import build_config

    if not str(base or "").strip():
        raise ConfigError("--base is required: a backbone name (`dlcli backbones`), a run folder or a .keras file", key="--base")
    source = str(config) if config is not None else None
    file_data: dict[str, Any] = {}
    positions: dict[tuple, tuple[Optional[str], Optional[int]]] = {}
    if config is not None:
        file_data, positions = load_document(config)

    info = resolve_base(base, weights)
    ft_unfreeze = parse_unfreeze(unfreeze) if unfreeze is not None else None
    _check_data_options(data_dir, image_size, strict, file_data)

    # 1. Generated defaults.
    generated = _defaults(info, data_dir, file_data)

    # 2. The --config file, over the defaults (its positions kept for errors).
    merged = deep_merge(generated, file_data)

    # 3. The options given on the command line, over both.
    options = _given_options(data_dir, name, image_size=image_size, batch_size=batch_size, strict=strict, epochs=epochs,
                             fine_tune_epochs=fine_tune_epochs, unfreeze=ft_unfreeze)
    merged = _put_options(merged, positions, options)
    _apply_augment(merged, positions, augment)
    _set_backbone(merged, positions, info, source)

    # 4. --set, last.
    apply_overrides(merged, positions, list(overrides))
    cfg = build_config(merged, positions, source)
    check_config(cfg)
    return cfg


def _given_options(data_dir: Optional[PathLike], name: Optional[str], **given: Any) -> dict[tuple, tuple[Any, str]]:
    """The config values the command-line options set: key path ->
    (value, the option to name in errors); options left None are absent."""
    def num(value: Any, kind: Any = int) -> Any:
        return kind(value) if value is not None else None

    options = {
        ("data", "source"): ("image_dir" if data_dir is not None else None, _DATA_DIR_SOURCE),
        ("data", "path"): (str(data_dir) if data_dir is not None else None, _DATA_DIR_SOURCE),
        ("data", "image_size"): ([int(given["image_size"])] * 2 if given["image_size"] is not None else None, "--image-size"),
        ("data", "batch_size"): (num(given["batch_size"]), "--batch-size"),
        ("data", "strict"): (num(given["strict"], bool), "--strict"),
        ("train", "epochs"): (num(given["epochs"]), "--epochs"),
        ("finetune", "fine_tune_epochs"): (num(given["fine_tune_epochs"]), "--fine-tune-epochs"),
        ("finetune", "unfreeze"): (given["unfreeze"], "--unfreeze"),
        ("name",): (str(name) if name else None, "--name"),
    }
    return {k: v for k, v in options.items() if v[0] is not None}


def _check_data_options(data_dir: Optional[PathLike], image_size: Optional[int], strict: Optional[bool],
                        file_data: dict[str, Any]) -> None:
    """Options that need an image folder, and data from somewhere.

    Raises:
        ConfigError: naming the option.
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"the image size must be positive, got {image_size}", key="--image-size")
    if data_dir is None:
        given = [opt for opt, v in (("--image-size", image_size), ("--strict", strict)) if v is not None]
        if given:
            raise ConfigError(f"{given[0]} applies to an image folder (DATA_DIR)", key=given[0])
        if not isinstance(file_data.get("data"), dict) or "source" not in file_data["data"]:
            raise ConfigError("finetune needs DATA_DIR (an image folder) or a data section with data.source in --config",
                              hint="e.g. dlcli finetune --base mobilenet cats_dogs/")


def _put_options(merged: dict[str, Any], positions: dict[tuple, Any], options: dict[tuple, tuple[Any, str]]) -> dict[str, Any]:
    """Merge command-line options over `merged`; errors about them name
    the option instead of a file line."""
    from dlcli.config.loader import deep_merge

    given: dict[str, Any] = {}
    for path, (value, _option) in options.items():
        node = given
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = value
    merged = deep_merge(merged, given)
    for path, (_value, option) in options.items():
        for p in [q for q in positions if q[: len(path)] == path]:
            del positions[p]
        positions[path] = (option, None)
    return merged


def _apply_augment(merged: dict[str, Any], positions: dict[tuple, Any], augment: Optional[bool]) -> None:
    """--no-augment clears data.augment; --augment fills it when empty."""
    data = merged.setdefault("data", {})
    if augment is False:
        data["augment"] = []
        positions[("data", "augment")] = ("--no-augment", None)
    elif augment is True and not data.get("augment"):
        data["augment"] = copy.deepcopy(DEFAULT_AUGMENT)
        positions[("data", "augment")] = ("--augment", None)


def _set_backbone(merged: dict[str, Any], positions: dict[tuple, Any], info: BaseModel, source: Optional[str]) -> None:
    """--base decides the Backbone entry, wherever the layer stack came from.

    Raises:
        ConfigError: the layer stack has no Backbone entry.
    """
    layers = (merged.get("model") or {}).get("layers")
    index = _backbone_index(layers)
    if index is None:
        where = positions.get(("model", "layers"), (source, None))
        raise ConfigError("finetune needs a Backbone layer in model.layers", file=where[0], line=where[1], key="model.layers",
                          hint="leave model.layers out of --config to get the generated Backbone and head")
    entry = layers[index]
    args = entry.get("Backbone")
    args = dict(args) if isinstance(args, dict) else {}
    if info.kind == "run":
        args.pop("name", None)
    args.update(info.backbone)
    entry["Backbone"] = args
    positions[("model", "layers", index)] = ("--base", None)


def _defaults(info: BaseModel, data_dir: Optional[PathLike], file_data: dict[str, Any]) -> dict[str, Any]:
    """The generated config: the backbone, a head for the classes found, the
    optimizer, the two phases, and for an image folder its data section."""
    file_classes = file_data["data"].get("classes") if isinstance(file_data.get("data"), dict) else None
    if isinstance(file_classes, list) and file_classes:
        num_classes: Optional[int] = len(file_classes)
    elif data_dir is not None:
        num_classes = len(count_classes(data_dir))
    else:
        num_classes = None  # the model builder fills `num_classes` in from the data
    head, loss = head_layers(info, num_classes)
    data_label = Path(data_dir).expanduser().resolve().name if data_dir is not None else str(file_data["data"]["source"])
    generated: dict[str, Any] = {
        "name": f"{info.label}_{data_label}",
        "data": {"validation_split": VALIDATION_SPLIT},
        "model": {"layers": [{"Backbone": dict(info.backbone)}, *head]},
        "compile": {
            "loss": loss,
            "optimizer": {"class_name": "adam", "config": {"learning_rate": DEFAULT_LEARNING_RATE}},
            "metrics": ["accuracy"],
        },
        "train": {"epochs": DEFAULT_EPOCHS},
        "finetune": {
            "fine_tune_epochs": DEFAULT_FINE_TUNE_EPOCHS,
            "unfreeze": DEFAULT_UNFREEZE,
            "learning_rate_factor": LEARNING_RATE_FACTOR,
        },
    }
    if data_dir is not None:
        size = info.image_size or (224, 224)
        generated["data"].update(
            source="image_dir",
            image_size=[int(size[0]), int(size[1])],
            color_mode="grayscale" if info.channels == 1 else "rgb",
            augment=copy.deepcopy(DEFAULT_AUGMENT),
        )
    return generated


def _backbone_index(layers: Any) -> Optional[int]:
    if not isinstance(layers, list):
        return None
    for i, entry in enumerate(layers):
        if isinstance(entry, dict) and "Backbone" in entry:
            return i
        if entry == "Backbone":
            layers[i] = {"Backbone": {}}
            return i
    return None


# The keyword options of `finetune_config` that `finetune` passes on.
CONFIG_OPTIONS = ("epochs", "fine_tune_epochs", "unfreeze", "image_size", "batch_size", "weights", "augment", "strict",
                  "config", "overrides")


def finetune(
    base: Optional[str] = None,
    data_dir: Optional[PathLike] = None,
    *,
    output: PathLike = "runs",
    name: Optional[str] = None,
    resume: Optional[PathLike] = None,
    progress: str = "auto",
    console: Any = None,
    **options: Any,
) -> Any:
    """Fine-tune a pretrained backbone on an image folder in two phases.

    Args:
        base, data_dir, name: see `finetune_config`.
        output: the root folder of run folders.
        resume: an interrupted fine-tune run folder to continue (its own
            config.yaml; only epochs, fine_tune_epochs and overrides apply).
        progress: auto | progress | lines | none.
        console: a Rich console for progress bars.
        **options: the keyword options of `finetune_config` (epochs,
            fine_tune_epochs, unfreeze, image_size, batch_size, weights,
            augment, strict, config, overrides).

    Returns:
        `dlcli.training.TrainResult`; `metrics["phases"]` summarises each
        phase's last epoch.

    Raises:
        ConfigError, DataError, RunError: bad options, config or data
            (nothing written).
        TrainingError: the loss diverged (exit 1).
        Interrupted: stopped by a signal (exit 130; resumable).
    """
    from dlcli.training import train

    unknown = sorted(set(options) - set(CONFIG_OPTIONS))
    if unknown:
        raise TypeError(f"finetune() got an unexpected keyword argument {unknown[0]!r}")
    if resume is not None:
        cfg = _resume_config(resume, base, data_dir, options)
    else:
        cfg = finetune_config(base or "", data_dir, name=name, **options)
    notes = from_scratch_notes(cfg)
    if notes and progress != "none":
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
    result = train(cfg, output=output, name=name, resume=resume, progress=progress, console=console)
    result.metrics["phases"] = phase_summary(result.history)
    for phase in result.metrics["phases"]:
        # What trained in each phase, as `dlcli finetune` reports it.
        phase["trains"] = ("the whole backbone (random weights) and the head" if notes else
                           "the head, backbone frozen" if phase["phase"] == 1 else "the head and the top backbone layers")
    if notes:
        from dlcli.runs import METRICS_FILE, atomic_write_json

        result.metrics["notes"] = [*result.metrics.get("notes", []), *notes]
        atomic_write_json(result.run_dir / METRICS_FILE, result.metrics)
    return result


def from_scratch_notes(cfg: Any) -> list[str]:
    """What to tell a user whose Backbone has no pretrained weights."""
    for entry in cfg.model.layers:
        spec = entry.get("Backbone") if isinstance(entry, dict) else None
        if isinstance(spec, dict) and "weights" in spec and spec["weights"] is None:
            return [
                "--weights none: the backbone starts from random weights, so there is nothing to transfer; "
                "the whole backbone trains in both phases (nothing to freeze, --unfreeze does not apply) and "
                "its BatchNormalization learns its statistics (momentum 0.9, so they keep up in a short run; "
                "frozen statistics only suit pretrained weights). Expect from-scratch accuracy, not transfer "
                "learning: give it more epochs and data than a pretrained fine-tune."
            ]
    return []


def _resume_config(resume: PathLike, base: Any, data_dir: Any, options: dict[str, Any]) -> Any:
    from dlcli.config import load_config
    from dlcli.runs import CONFIG_FILE

    flags = {"--base": base, "DATA_DIR": data_dir, **{
        "--augment/--no-augment" if k == "augment" else "--" + k.replace("_", "-"): v
        for k, v in options.items() if k not in ("epochs", "fine_tune_epochs", "overrides")}}
    for option, value in flags.items():
        if value is not None:
            raise ConfigError(f"{option} cannot change a run being resumed; --resume continues it with its own config.yaml",
                              key=option, hint="only --epochs, --fine-tune-epochs and --set apply with --resume")
    run_dir = Path(resume)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"cannot resume {run_dir}: no {CONFIG_FILE} there", hint="pass a run folder such as runs/mobilenet_cats_dogs/1")
    extra = list(options.get("overrides") or ())
    for key, path in (("epochs", "train.epochs"), ("fine_tune_epochs", "finetune.fine_tune_epochs")):
        if options.get(key) is not None:
            extra.append(f"{path}={int(options[key])}")
    return load_config(run_dir / CONFIG_FILE, extra)


def phase_summary(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Each phase's epochs and last-epoch metrics, from a run's history.

    Args:
        history: column -> per-epoch values (`epoch`, `phase`, metrics).

    Returns:
        `[{"phase": 1, "epochs": [first, last], "final": {metric: value}}, ...]`.
    """
    epochs = history.get("epoch") or []
    phases = history.get("phase") or [1] * len(epochs)
    skip = {"epoch", "phase", "epoch_time_s"}
    out: list[dict[str, Any]] = []
    for i, (ep, ph) in enumerate(zip(epochs, phases)):
        ph = int(ph) if ph == ph else 1  # NaN-safe
        if not out or out[-1]["phase"] != ph:
            out.append({"phase": ph, "epochs": [int(ep), int(ep)], "final": {}})
        out[-1]["epochs"][1] = int(ep)
        out[-1]["final"] = {
            k: float(v[i]) for k, v in history.items() if k not in skip and i < len(v) and v[i] == v[i]
        }
    return out
