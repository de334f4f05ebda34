"""Loading model files safely.

Every command that reads a model a user hands it (evaluate, predict,
export, finetune) goes through `load_model`, which keeps Keras's
`safe_mode=True` unless the user says `--unsafe`: a `.keras` file can carry
Python bytecode (a `Lambda` layer's lambda) that would run on load.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from dlcli.errors import RunError
from dlcli.runs import CONFIG_FILE, Run, resolve_run

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.data.spec import DataSpec

# Keras's safe-mode refusals all say this (Lambda layers, bare lambdas in a
# config); matching the phrase keeps us independent of the exact wording.
_UNSAFE_PHRASE = "arbitrary code execution"
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


def load_model(path: str | Path, *, unsafe: bool = False, compile: bool = True) -> Any:
    """Load a `.keras` model file with Keras's safe mode on.

    dlcli's own custom objects (backbones, CTC pieces) are registered with
    Keras first, so every model `dlcli train` writes loads in safe mode.

    Args:
        path: the `.keras` file.
        unsafe: allow arbitrary code in the file (Lambda layers holding a
            Python lambda). Only for files the user trusts.
        compile: restore the loss, optimizer and metrics saved with the
            model (needed by evaluate; predict does not need them).

    Returns:
        The loaded `keras.Model`.

    Raises:
        RunError: the file is missing, not a Keras archive, corrupt, uses a
            class that is not available, or holds code and `unsafe` is
            False.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"model file not found: {path}")
    # Keras reports any unreadable archive as "File not found", which sends
    # the user looking in the wrong place.
    if not zipfile.is_zipfile(path):
        raise RunError(f"{path} is not a Keras model file (not a .keras zip archive); it may be truncated or corrupt")

    import keras

    custom = _custom_objects(path)
    try:
        with warnings.catch_warnings():
            # "Skipping variable loading for optimizer": the optimizer's
            # slots are built lazily; nothing a user can act on.
            warnings.simplefilter("ignore", UserWarning)
            return keras.saving.load_model(path, custom_objects=custom, compile=compile, safe_mode=not unsafe)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _load_error(path, exc) from None


def _custom_objects(path: Path) -> dict[str, Any]:
    """Classes the model may need besides Keras's own.

    Importing dlcli.model registers dlcli's serialisable objects (backbone
    preprocessing, the CTC metric) with Keras. A user's layer named by
    dotted path in the run's config.yaml is imported from its installed
    module (nothing stored in the model file runs).
    """
    from dlcli.model import custom_objects

    config = path.parent / CONFIG_FILE
    if not config.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    layers = (data.get("model") or {}).get("layers") if isinstance(data, dict) else None
    return custom_objects(layers or [])


def _load_error(path: Path, exc: BaseException) -> RunError:
    """Turn what Keras raises while loading into one clear RunError."""
    text = str(exc)
    if _UNSAFE_PHRASE in text:
        return RunError(f"model file {path} contains arbitrary code (Lambda layer); load it only if you trust it: --unsafe")
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        return RunError(
            f"model file {path} uses {unknown.group(1)!r}, which is neither a Keras nor a dlcli object",
            hint="register the custom class with keras.saving.register_keras_serializable before loading",
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return RunError(f"cannot load model file {path}: {first[:300]}")


def saved_compile_config(path: str | Path) -> dict[str, Any]:
    """The `compile_config` stored in a `.keras` archive ({} if none).

    Read straight from the archive's config.json (no TensorFlow), so the
    loss can be inspected without compiling the model.
    """
    import json

    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    return config.get("compile_config") or {}


@dataclass
class RunModel:
    """A run's model plus what is needed to feed it and read its outputs.

    Attributes:
        run: the resolved run (folder or bare `.keras` file).
        model: the loaded `keras.Model`.
        spec: the run's DataSpec (data_spec.json), or one inferred from
            the model for a bare `.keras` file (`inferred` is then True).
        task: classification | binary | regression | ctc.
        class_names: one name per class (classification, binary), else None.
        from_logits: the outputs are logits (the loss says `from_logits`),
            so probabilities need a softmax / sigmoid.
    """

    run: Run
    model: Any
    spec: "DataSpec"
    task: str
    class_names: Optional[list[str]]
    from_logits: bool
    inferred: bool = False


def open_run(run: str | Path | Run, *, unsafe: bool = False, compile: bool = False) -> RunModel:
    """Resolve a run, load its model safely and work out its task.

    Args:
        run: a run folder, a `<name>` folder (its latest run) or a `.keras`
            file.
        unsafe: see `load_model`.
        compile: restore the saved loss and metrics (evaluate).

    Returns:
        A RunModel.

    Raises:
        RunError: no run there, or the model cannot be loaded.
    """
    r = run if isinstance(run, Run) else resolve_run(run)
    model = load_model(r.model_path, unsafe=unsafe, compile=compile)
    compile_config = saved_compile_config(r.model_path)
    spec = r.data_spec
    inferred = spec is None
    if spec is None:
        spec = infer_spec(model, compile_config)
    task = spec.task
    names = spec.class_names
    if task in ("classification", "binary"):
        width = _output_width(model)
        if not names:
            names = ["0", "1"] if task == "binary" else [str(i) for i in range(width or 0)]
        names = [str(n) for n in names]
    else:
        names = None
    return RunModel(
        run=r,
        model=model,
        spec=spec,
        task=task,
        class_names=names,
        from_logits=_from_logits(compile_config),
        inferred=inferred,
    )


def infer_spec(model: Any, compile_config: dict[str, Any]) -> "DataSpec":
    """A data spec for a bare `.keras` file, from the model itself.

    Images are resized to the model's input height and width (one channel
    means grayscale); the task follows the saved loss, or the output layer
    when the model was saved uncompiled.
    """
    shape = [None if d is None else int(d) for d in model.input_shape[1:]] if _single_input(model) else None
    spec: dict[str, Any] = {"source": "model", "input_shape": shape, "inferred": True}
    if shape and len(shape) == 3 and shape[-1] in (1, 3) and shape[0] and shape[1]:
        spec.update(input_kind="image", image_size=shape[:2], color_mode="grayscale" if shape[-1] == 1 else "rgb")
    elif shape and len(shape) == 1:
        spec["input_kind"] = "vector"
    else:
        spec["input_kind"] = "array"
    mode = None
    loss = saved_loss(compile_config)
    if loss is not None:
        from dlcli.data.labels import loss_label_mode

        mode = loss_label_mode(loss)
    if mode is None:
        width = _output_width(model)
        activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
        if width == 1 and activation == "sigmoid":
            mode = "binary"
        elif width and width > 1 and activation == "softmax":
            mode = "int"
        else:
            mode = "float"
    from dlcli.data.labels import TASKS
    from dlcli.data.spec import DataSpec

    spec["label_mode"] = mode
    spec["task"] = TASKS.get(mode, "regression")
    return DataSpec(**spec)


def _single_input(model: Any) -> bool:
    return len(getattr(model, "inputs", None) or [None]) == 1


def _output_width(model: Any) -> Optional[int]:
    shape = model.output_shape
    if isinstance(shape, list):
        return None
    return shape[-1] if shape and shape[-1] is not None else None


def saved_loss(compile_config: dict[str, Any]) -> Any:
    """The saved loss as `keras.losses.get` takes it: a name, or
    `{class_name, config}`; None when the model was saved uncompiled."""
    loss = compile_config.get("loss")
    if isinstance(loss, dict):
        config = loss.get("config")
        # A loss given as a function is saved as {class_name: "function",
        # config: "<its name>"}.
        if isinstance(config, str):
            return config
        return {"class_name": loss.get("class_name"), "config": config or {}}
    return loss


def _from_logits(compile_config: dict[str, Any]) -> bool:
    loss = saved_loss(compile_config)
    if isinstance(loss, dict):
        return bool(loss["config"].get("from_logits", False))
    return False
