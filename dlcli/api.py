"""dlcli's Python API: plain typed functions, one per command.

Each takes what the command takes and returns plain data or a result
object; nothing here prints or exits. Heavy modules (TensorFlow) are
imported inside the functions that need them.

    >>> from dlcli import api
    >>> result = api.train("configs/cnn_digits.yaml", overrides=["train.epochs=2"])
    >>> api.evaluate(result.run_dir)["metrics"]["accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from dlcli.runs import CONFIG_FILE

ConfigLike = Union[str, Path, Mapping[str, Any]]


def load(config: ConfigLike, overrides: Sequence[str] = ()) -> Any:
    """Load and validate a config file (or a dict) with `--set` overrides.

    Returns:
        A validated `dlcli.config.Config`.
    """
    from dlcli.config import config_from_dict, load_config

    if isinstance(config, Mapping):
        return config_from_dict(dict(config), overrides=tuple(overrides))
    return load_config(config, tuple(overrides))


def validate(config: ConfigLike, overrides: Sequence[str] = ()) -> Any:
    """Check a config without importing TensorFlow (keys, types, Keras
    names and arguments, the layer graph); `cfg.notices` says what could
    not be checked.

    Returns:
        The validated `dlcli.config.Config`.

    Raises:
        ConfigError: located at the file, line and key.
    """
    return load(config, overrides)


# The JSON Schema dialect pydantic's model_json_schema() follows.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema() -> dict[str, Any]:
    """The JSON Schema of a dlcli config, for YAML language servers."""
    from dlcli.config.schema import Config

    out = Config.model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "dlcli config", **{k: v for k, v in out.items() if k != "title"}}


def summary(config: ConfigLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Build the config's model and describe its layers and parameters.

    The input shape comes from `model.input_shape`, or from the data when
    that is cheap to read (built-in and file sources).
    """
    cfg = load(config, overrides)
    from dlcli.model import build_model, summarize

    input_shape = None
    num_classes = None
    from dlcli.config.graph import uses_num_classes

    if (not cfg.model.input_shape and not cfg.model.inputs) or uses_num_classes(cfg):
        from dlcli.data import load_data

        bundle = load_data(cfg)
        input_shape, num_classes = bundle.input_shape, bundle.num_classes
    model = build_model(cfg, input_shape, num_classes=num_classes)
    # TensorFlow is loaded now: make sure later `validate` runs can check
    # Keras names even when the shipped catalogue is for another version.
    from dlcli.config.catalog import ensure_catalog

    ensure_catalog()
    return summarize(model)


def train(
    config: Optional[ConfigLike] = None,
    overrides: Sequence[str] = (),
    *,
    output: Union[str, Path] = "runs",
    name: Optional[str] = None,
    epochs: Optional[int] = None,
    resume: Optional[Union[str, Path]] = None,
    distribute: Optional[str] = None,
    progress: str = "auto",
    console: Any = None,
    unsafe: bool = False,
    trust_modules: Sequence[str] = (),
) -> Any:
    """Train a config and write a run folder (`<output>/<name>/<N>/`).

    Args:
        config: a config file or dict; optional with `resume`.
        overrides: `key.path=value` strings, applied after `extends`.
        output: root folder of run folders.
        name: run name (default: the config's name).
        epochs: shorthand for `train.epochs=N`.
        resume: an interrupted (or finished) run folder to continue; its
            own config.yaml is used, with `overrides` and `epochs` applied.
        distribute: shorthand for `train.distribute=...`.
        progress: auto | progress | lines | none.
        unsafe, trust_modules: what a resumed run folder's config.yaml, or a
            run used as a Backbone, may import (see dlcli.model.trust).

    Returns:
        `dlcli.training.TrainResult` (run_dir, metrics, history).
    """
    from dlcli.errors import ConfigError, RunError

    extra = list(overrides)
    if epochs is not None:
        extra.append(f"train.epochs={int(epochs)}")
    if distribute is not None:
        extra.append(f"train.distribute={distribute}")
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunError(f"cannot resume {run_dir}: no {CONFIG_FILE} there", hint="pass a run folder such as runs/cnn_digits/1")
        config = run_dir / CONFIG_FILE
    elif config is None:
        raise ConfigError("a CONFIG file is needed (or --resume RUN)")
    cfg = load(config, extra)
    if name:
        cfg.name = name
    from dlcli.statusline import starting_tensorflow

    # Importing TensorFlow takes seconds: a terminal is not left blank.
    with starting_tensorflow(progress, console, cfg.train.verbose):
        from dlcli.model.trust import using
        from dlcli.runs import run_locks
        from dlcli.training import train as _train

    # The run folder is locked while this process trains in it.
    with using(unsafe, trust_modules, run_config=Path(resume) if resume is not None else None), run_locks(resume):
        return _train(cfg, output=output, name=name, resume=resume, progress=progress, console=console)


def evaluate(
    run: Union[str, Path], *, data: Optional[str] = None, unsafe: bool = False, trust_modules: Sequence[str] = ()
) -> dict[str, Any]:
    """Metrics of a run on its test split (or `data`); see dlcli.evaluation.
    `unsafe` and `trust_modules`: what the model file may use (see
    dlcli.model.trust)."""
    _quiet_tensorflow()
    from dlcli.evaluation import evaluate_run
    from dlcli.model.trust import using

    with using(unsafe, trust_modules):
        return evaluate_run(run, data=data)


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up log lines out of a notebook (only until
    TensorFlow is first imported; a value the user set is kept)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_model(run: Union[str, Path], *, unsafe: bool = False, trust_modules: Sequence[str] = ()) -> Any:
    """A run's model.keras (a run folder, a NAME folder for its latest run,
    or a .keras file), loaded under dlcli's trust policy.

    Returns:
        The `keras.Model`.
    """
    _quiet_tensorflow()
    from dlcli.model.io import open_run
    from dlcli.model.trust import using

    with using(unsafe, trust_modules):
        return open_run(run).model


def predict(
    run: Union[str, Path],
    inputs: Any,
    *,
    top_k: int = 1,
    batch_size: int = 64,
    unsafe: bool = False,
    trust_modules: Sequence[str] = (),
    save_dir: Optional[Union[str, Path]] = None,
) -> Any:
    """Predictions with a run's model, its training preprocessing applied.

    Args:
        run: a run folder, a NAME folder or a .keras file.
        inputs: paths (image files or folders, CSV or NPZ files), or data
            in memory: a pandas DataFrame (a table's columns) or a NumPy
            array of samples.
        top_k: also list the K most probable classes.
        save_dir: where predicted masks and reconstructions go as PNGs.

    Returns:
        For paths: an iterator of dicts, one per input (unreadable inputs
        as dicts with an `error` key), with `.fields`, `.predicted`,
        `.failed`. For a DataFrame or array: a list of dicts, one per row,
        `input` being the row number.
    """
    _quiet_tensorflow()
    from dlcli.model.io import open_run
    from dlcli.model.trust import using
    from dlcli.prediction import predict_inputs

    with using(unsafe, trust_modules):
        opened = open_run(run)
    if _in_memory(inputs):
        return _predict_in_memory(opened, inputs, top_k=top_k, batch_size=batch_size)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    return predict_inputs(opened, [str(p) for p in inputs], top_k=top_k, batch_size=batch_size, save_dir=save_dir)


def _in_memory(inputs: Any) -> bool:
    return hasattr(inputs, "to_csv") or (hasattr(inputs, "shape") and hasattr(inputs, "dtype"))


def _predict_in_memory(opened: Any, data: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Write the data where dlcli's readers take it (a CSV for a DataFrame,
    an npz for an array), so exactly the training preprocessing applies."""
    import tempfile

    from dlcli.prediction import predict_inputs

    with tempfile.TemporaryDirectory(prefix="dlcli-predict-") as tmp:
        if hasattr(data, "to_csv"):
            path = Path(tmp) / "rows.csv"
            data.to_csv(path, index=False)
        else:
            import numpy as np

            path = Path(tmp) / "rows.npz"
            np.savez(path, x=np.asarray(data))
        records = list(predict_inputs(opened, [str(path)], **kwargs))
    for i, r in enumerate(records):
        r["input"] = i
    return records


def finetune(
    base: Optional[str] = None,
    data_dir: Optional[Union[str, Path]] = None,
    *,
    unsafe: bool = False,
    trust_modules: Sequence[str] = (),
    **kwargs: Any,
) -> Any:
    """Two-phase transfer learning of a backbone (a keras.applications name,
    a run folder or a .keras file) on an image folder; the keyword options
    are those of `dlcli finetune`. See dlcli.finetune. `unsafe` and
    `trust_modules`: what a base run (or a resumed run's config) may use.

    Returns:
        `dlcli.training.TrainResult` of the fine-tune run.
    """
    from dlcli.finetune import finetune as _finetune
    from dlcli.runs import run_locks
    from dlcli.statusline import starting_tensorflow

    with starting_tensorflow(kwargs.get("progress", "auto"), kwargs.get("console")):
        from dlcli.model.trust import using

    resume = kwargs.get("resume")
    with using(unsafe, trust_modules, run_config=Path(resume) if resume is not None else None), run_locks(resume):
        return _finetune(base, data_dir, **kwargs)


def export(
    run: Union[str, Path],
    fmt: str,
    *,
    quantize: str = "none",
    min_agreement: Optional[float] = None,
    samples: int = 500,
    calibration_samples: int = 300,
    unsafe: bool = False,
    trust_modules: Sequence[str] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """Export a run's model (saved_model | tflite | onnx) with a parity
    check on held-out data; see dlcli.export.

    Bad options are refused before TensorFlow is imported. `unsafe` and
    `trust_modules`: what the model file may use.

    Raises:
        ConfigError: an unknown format, quantize mode or bad number.
        ExportError: the export disagrees with the Keras model (exit 1).
    """
    from dlcli.export import check_options

    check_options(fmt, quantize, min_agreement, samples, calibration_samples)
    from dlcli.export import export_run
    from dlcli.model.trust import using

    with using(unsafe, trust_modules):
        return export_run(run, fmt, quantize=quantize, min_agreement=min_agreement, samples=samples,
                          calibration_samples=calibration_samples, **kwargs)


def tune(
    config: Union[str, Path],
    overrides: Sequence[str] = (),
    *,
    output: Union[str, Path] = "runs",
    name: Optional[str] = None,
    storage: Optional[str] = None,
    workers: int = 1,
    trials: Optional[int] = None,
    heartbeat: int = 10,
    say: Optional[Callable[[str], None]] = None,
) -> Any:
    """Run (or resume, or join) the Optuna study of a config's `tune:`
    section; every trial is a run folder in `<output>/<name>/tune/`. The
    options are those of `dlcli tune`; `say` gets a one-line note per
    finished trial (default: nothing is printed). See dlcli.tune.

    Returns:
        `dlcli.tune.TuneResult`: `study_dir`, and `summary` (what `--json`
        prints: every trial's parameters, value and state, and the best).

    Raises:
        ConfigError: a bad config, tune: section or storage, or Optuna
            not installed.
        TrainingError: the workers stopped before the study was done.
    """
    _quiet_tensorflow()
    from dlcli.tune import tune as _tune

    return _tune(config, tuple(overrides), output=output, name=name, storage=storage, workers=workers,
                 trials=trials, heartbeat=heartbeat, say=say or (lambda text: None))


def runs(where: Sequence[Union[str, Path]] = ("runs",)) -> list[dict[str, Any]]:
    """Every run under each of `where` (a runs root, a NAME folder or a run
    folder): status, epochs, best, test metrics, duration; see
    dlcli.runlist."""
    from dlcli.runlist import list_runs

    return list_runs(where)


def compare_runs(runs: Sequence[Union[str, Path]], *, plot: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """Two or more run folders side by side: the config keys that differ
    and each run's results; with `plot`, their curves drawn into one PNG."""
    from dlcli.runlist import compare_runs as _compare, read_history

    result = _compare(runs)
    if plot is not None:
        from dlcli.report import plot_runs

        histories = {r["run"]: read_history(Path(r["run"])) for r in result["runs"]}
        result["plot"] = str(plot_runs(histories, plot))
    return result


def init(
    data: Union[str, Path],
    *,
    target: Optional[str] = None,
    output: Optional[Union[str, Path]] = None,
    name: Optional[str] = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write a commented starter config for a CSV/Parquet table (`target`
    names the label column), an image folder or an npz file; see
    dlcli.scaffold.

    Returns:
        {"config": path written, "name": the config's name}.

    Raises:
        ConfigError: no usable target, or `output` exists (without `force`).
        DataError: missing or unreadable data.
    """
    from dlcli.errors import ConfigError
    from dlcli.runs import atomic_write_text
    from dlcli.scaffold import starter_config

    cfg_name, text = starter_config(data, target=target, name=name)
    out = Path(output) if output is not None else Path(f"{cfg_name}.yaml")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists", key="--output", hint="choose another --output, or pass --force")
    if not out.parent.is_dir():
        raise ConfigError(f"folder {out.parent} does not exist", key="--output")
    atomic_write_text(out, text)
    return {"config": str(out), "name": cfg_name}
