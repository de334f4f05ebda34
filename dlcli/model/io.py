"""Opening model files and run folders: dlcli's one model loader.

Every command that reads a model it did not just build (evaluate, predict,
export, `finetune --base RUN`, a `Backbone: {weights: RUN}` entry) goes
through `load_model`, under the trust policy of `dlcli.model.trust`:

* Keras's `safe_mode` stays on unless the user says `--unsafe` (a `.keras`
  file can carry Python bytecode, a Lambda layer's lambda, that would run);
* a class the file names from a module other than Keras and dlcli is
  imported only if the user trusts that module (`--trust-module MOD`,
  DLCLI_TRUSTED_MODULES, `--unsafe`), is a subclass of the Keras base
  expected where it is used, and never replaces a name Keras resolves;
* a legacy HDF5 model is opened only with `--unsafe`.

Nothing in a run folder's config.yaml decides what is imported.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from dlcli.errors import RunError
from dlcli.model import trust as trust_policy
from dlcli.runs import Run, resolve_run

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.data.spec import DataSpec

# Keras's safe-mode refusals all say this (Lambda layers, bare lambdas in a
# config); matching the phrase keeps us independent of the exact wording.
_UNSAFE_PHRASE = "arbitrary code execution"
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Packages whose classes Keras (or dlcli, imported already) resolves itself.
_OWN_PACKAGES = {"keras", "keras_hub", "keras_cv", "keras_nlp", "builtins", "dlcli"}


def load_model(
    path: str | Path,
    *,
    unsafe: Optional[bool] = None,
    compile: bool = True,
    trust: Optional[trust_policy.Trust] = None,
) -> Any:
    """Load a model file under the trust policy.

    Args:
        path: the `.keras` file (or a legacy `.h5`, with `unsafe`).
        unsafe: trust the file completely (modules, Lambda code); default:
            the policy in force.
        compile: restore the loss, optimizer and metrics saved with the
            model (needed by evaluate; predict does not need them).
        trust: the policy (default: `dlcli.model.trust.current()`).

    Returns:
        The loaded `keras.Model`.

    Raises:
        RunError: the file is missing, not a Keras model, corrupt, names a
            class that is not available or not trusted, or holds code and
            the policy is not `unsafe`.
    """
    path = Path(path)
    policy = trust_policy.with_unsafe(trust or trust_policy.current(), unsafe)
    if not path.is_file():
        raise RunError(f"model file not found: {path}")
    if _is_hdf5(path):
        if not policy.unsafe:
            raise RunError(f"{path} is a legacy HDF5 model file; dlcli opens those only with --unsafe "
                           "(it may hold Lambda code)", hint="re-save it as .keras where you trust it")
        custom: dict[str, Any] = {}
    # Keras reports any unreadable archive as "File not found", which sends
    # the user looking in the wrong place.
    elif not zipfile.is_zipfile(path):
        raise RunError(f"{path} is not a Keras model file (not a .keras zip archive); it may be truncated or corrupt")
    else:
        custom = custom_objects(path, policy)

    import keras

    import dlcli.model  # noqa: F401 - registers dlcli's own serialisable classes

    try:
        with warnings.catch_warnings(), _keras_named(path) as keras_path:
            # "Skipping variable loading for optimizer": the optimizer's
            # slots are built lazily; nothing a user can act on.
            warnings.simplefilter("ignore", UserWarning)
            return keras.saving.load_model(keras_path, custom_objects=custom, compile=compile,
                                           safe_mode=not policy.unsafe)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _load_error(path, exc) from None


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


class _keras_named:
    """The path under a name Keras accepts for its content: a legacy HDF5
    file inside a run folder is still called model.keras."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp: Optional[tempfile.TemporaryDirectory] = None

    def __enter__(self) -> Path:
        if not _is_hdf5(self.path) or self.path.suffix in (".h5", ".hdf5"):
            return self.path
        self.tmp = tempfile.TemporaryDirectory(prefix="dlcli-h5-")
        link = Path(self.tmp.name) / "model.h5"
        os.symlink(self.path.resolve(), link)
        return link

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def custom_objects(path: Path, trust: trust_policy.Trust) -> dict[str, type]:
    """The classes a `.keras` archive needs besides Keras's and dlcli's own,
    as `keras.saving.load_model` takes them, under the policy.

    Read from the archive's config.json, where Keras writes each object's
    module and class: only trusted modules are imported.

    Raises:
        RunError: a class from a module the policy does not trust, or one
            that is not acceptable (see `trust.load_class`).
    """
    out: dict[str, type] = {}
    for module, name, key in _foreign_classes(_archive_config(path)):
        cls = trust_policy.load_class(module, name, _bases_for(key), source=path, trust=trust)
        out[trust_policy.registrable_name(cls)] = cls
    return out


def _archive_config(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    return config if isinstance(config, dict) else {}


def _foreign_classes(config: Any, key: str = "") -> Iterator[tuple[str, str, str]]:
    """(module, class name, key it is under) of every object in a model's
    config that comes from outside Keras and dlcli."""
    if isinstance(config, list):
        for item in config:
            yield from _foreign_classes(item, key)
        return
    if not isinstance(config, dict):
        return
    module, name = config.get("module"), config.get("class_name")
    if isinstance(module, str) and isinstance(name, str) and module.split(".")[0] not in _OWN_PACKAGES:
        yield module, name, key
    for k, v in config.items():
        # An object's own config belongs to the object's key.
        yield from _foreign_classes(v, key if k == "config" else str(k))


def _bases_for(key: str) -> tuple[type, ...]:
    """The Keras base a class must subclass where the config holds it."""
    import keras

    table = (
        ("initializer", keras.initializers.Initializer),
        ("regularizer", keras.regularizers.Regularizer),
        ("constraint", keras.constraints.Constraint),
        ("learning_rate", keras.optimizers.schedules.LearningRateSchedule),
        ("optimizer", keras.optimizers.Optimizer),
        ("loss", keras.losses.Loss),
        ("metric", keras.metrics.Metric),
    )
    for word, base in table:
        if word in key.lower():
            return (base,)
    return (keras.layers.Layer,)  # layers, wrapped layers, cells, the model


def _load_error(path: Path, exc: BaseException) -> RunError:
    """Turn what Keras raises while loading into one clear RunError."""
    text = str(exc)
    if _UNSAFE_PHRASE in text:
        return RunError(f"model file {path} contains arbitrary code (Lambda layer); load it only if you trust it: --unsafe")
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        return RunError(
            f"model file {path} uses {unknown.group(1)!r}, which is neither a Keras nor a dlcli object",
            hint="if it is your class, trust its installed module: --trust-module MOD (or --unsafe)",
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return RunError(f"cannot load model file {path}: {first[:300]}")


def saved_compile_config(path: str | Path) -> dict[str, Any]:
    """The `compile_config` stored in a `.keras` archive ({} if none).

    Read straight from the archive's config.json (no TensorFlow), so the
    loss can be inspected without compiling the model.
    """
    return _archive_config(Path(path)).get("compile_config") or {}


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


def open_run(run: str | Path | Run, *, unsafe: Optional[bool] = None, compile: bool = False) -> RunModel:
    """Resolve a run, load its model under the trust policy and work out
    its task.

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
