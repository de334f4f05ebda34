"""Metrics of a run's model on its test split or on other data.

The Keras metrics come from `model.evaluate` with the loss and metrics the
model was trained with, so they equal what training reported. On top of
them: a per-class report and a confusion matrix for classifiers, MAE / MSE
/ R² and a predicted-vs-true plot for regression, and sequence accuracy and
character error rate for CTC models. Everything is saved as
`evaluation.json` (and `plots/`) in the run folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from dlcli.data.spec import DataSpec, Standardize
from dlcli.errors import DataError, RunError
from dlcli.model.io import RunModel, open_run
from dlcli.targets import Target, by_output, edit_distance, report, targets_of  # noqa: F401 (edit_distance re-exported)
from dlcli.data_option import parse_data_option  # noqa: F401 (re-exported)
from dlcli.runs import EVALUATION_FILE, PLOTS_DIR, Run, atomic_write_json, resolve_run, unwritable

# Data options that would change or subsample what is evaluated: with
# `--data`, every sample of the given source is evaluated, unaugmented.
_EVALUATE_ALL = {
    "validation_split": 0.0,
    "test_split": 0.0,
    "augment": [],
    "shuffle_buffer": 0,
    "limit": None,
    "samples_per_class": None,
}


def evaluate_run(
    run: str | Path | Run,
    *,
    data: Optional[str | Mapping[str, Any]] = None,
    unsafe: bool = False,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's model and save the results in the run folder.

    Args:
        run: a run folder, a `<name>` folder (latest run) or a `.keras`
            file.
        data: other data to evaluate on instead of the run's test split:
            a path (a folder is read as image_dir, `.csv` as csv, `.npz` as
            npz), `key=value,...` in the config's `data:` syntax, a YAML
            mapping string, or a mapping. It is merged over the run's
            `data:` section, so preprocessing (image size, colour mode,
            features, target) stays as in training; all of its samples are
            evaluated.
        unsafe: allow model files with arbitrary code (Lambda layers).
        write: save `evaluation.json` and the plots.

    Returns:
        A dict: `metrics` (Keras's, from `model.evaluate`), `task`,
        `data` (source, split, samples), and per task `classes` /
        `per_class` / `confusion_matrix` / `averages`, `regression`, or
        `ctc`; `plots` and `evaluation_file` when written.

    Raises:
        RunError: no run there, an unloadable model, or nothing to
            evaluate on (no test or validation split and no `data`).
        ConfigError: a bad `data` option.
        DataError: data that cannot be read or does not fit the model.
    """
    t0 = time.perf_counter()
    r = run if isinstance(run, Run) else resolve_run(run)
    rm = open_run(r, unsafe=unsafe, compile=True)
    cfg = _run_config(r)
    _ensure_compiled(rm, cfg)
    ds, data_info = evaluation_data(rm, cfg, data)
    t_load = time.perf_counter() - t0

    t1 = time.perf_counter()
    keras_metrics = {k: float(v) for k, v in rm.model.evaluate(ds, verbose=0, return_dict=True).items()}
    targets = targets_of(rm)
    y_true, y_pred, x = _collect(rm.model, ds, targets)
    data_info["samples"] = int(len(next(iter(y_pred.values()))))

    result: dict[str, Any] = {
        "run": str(r.path),
        "model": str(r.model_path),
        "task": rm.task,
        "data": data_info,
        "metrics": keras_metrics,
    }
    reports = {t.name: {"task": t.task, "kind": t.kind, **report(t, y_true[t.name], y_pred[t.name])} for t in targets}
    if len(targets) == 1:
        result.update({k: v for k, v in reports[None].items() if k != "task"})
    else:
        result["outputs"] = reports
    result["timings"] = {"load_s": round(t_load, 3), "evaluate_s": round(time.perf_counter() - t1, 3)}
    json_path, _ = _output_paths(r)
    problem = unwritable(json_path.parent) if write else None
    if problem:
        # A read-only run folder still evaluates: the results are shown, not saved.
        result["not_saved"] = f"{json_path.parent} is not writable ({problem}): evaluation.json and plots not saved"
    elif write:
        result["plots"] = _plots(r, targets, reports, (x, y_true, y_pred), data_info, rm.spec.pixel_range)
        result["evaluation_file"] = str(json_path)
        atomic_write_json(json_path, result)
    return result


def _plots(r: Run, targets: list[Target], reports: dict, arrays: tuple, data_info: dict, pixel_range: Any) -> dict[str, str]:
    """A confusion matrix per class output, a predicted-vs-true plot per
    regression output, sample grids for segmentation and reconstruction
    outputs (see dlcli.report_targets); named after the output where there
    are several."""
    from dlcli import report as plot
    from dlcli.report_targets import target_plots

    x, y_true, y_pred = arrays
    _, all_paths = _output_paths(r)
    caption = f"{data_info['split']}, {data_info['samples']} samples"
    out: dict[str, str] = {}
    for t in targets:
        rep, suffix = reports[t.name], "" if t.name is None else f"_{t.name}"
        paths = {k: p.with_name(p.name[: -len(".png")] + suffix + ".png") for k, p in all_paths.items()}
        if "confusion_matrix" in rep:
            title = f"Confusion matrix{' of ' + t.name if t.name else ''} ({caption})"
            out["confusion_matrix" + suffix] = str(plot.plot_confusion_matrix(rep["confusion_matrix"], rep["classes"], paths["confusion_matrix"], title=title))
        if t.kind == "regression":
            out["regression" + suffix] = str(plot.plot_regression(y_true[t.name], y_pred[t.name], paths["regression"]))
        pictures = target_plots(t, x, y_true[t.name], y_pred[t.name], paths, caption=caption, pixel_range=pixel_range)
        out.update({k + suffix: str(p) for k, p in pictures.items()})
    return out


# ------------------------------------------------------------------ data


def evaluation_data(rm: RunModel, cfg: Any, data: Optional[str | Mapping[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """The batched `(x, y)` dataset to evaluate on and a description of it.

    Without `data`: the run's test split, else its validation split. With
    `data`: every sample of that source, preprocessed as in training.

    Raises:
        RunError: nothing to evaluate on.
        ConfigError, DataError: see `evaluate_run`.
    """
    from dlcli.config import config_from_dict
    from dlcli.data import load_data

    if data is None:
        if cfg is None:
            raise RunError(
                f"{rm.run.model_path} has no run config (config.yaml) saying what data it was trained on",
                hint="pass --data PATH (a folder of images, a .csv or a .npz file)",
            )
        bundle = load_data(cfg)
        for split, ds, n in (("test", bundle.test, bundle.num_test), ("validation", bundle.val, bundle.num_val)):
            if ds is not None and n:
                return ds, {"source": cfg.data.source, "path": cfg.data.path, "split": split}
        raise RunError(
            f"the run's data ({cfg.data.source}) has no test or validation split to evaluate on",
            hint="pass --data with data to evaluate on",
        )

    given = parse_data_option(data)
    base = cfg.to_dict() if cfg is not None else _bare_config(rm)
    merged = _merge_data(base["data"], given, rm.spec)
    merged.update(_EVALUATE_ALL)
    base["data"] = merged
    new_cfg = config_from_dict(base)
    bundle = load_data(new_cfg)
    # A source with its own test set (mnist, an npz with x_test) keeps it
    # apart from its training set; otherwise everything is in `train`.
    if bundle.test is not None and bundle.num_test:
        ds, split = bundle.test, "test"
    else:
        ds, split = bundle.train, "all"
    ds = align_to_run(ds, bundle.spec, rm)
    return ds, {"source": new_cfg.data.source, "path": new_cfg.data.path, "split": split}


def align_to_run(ds: Any, spec: DataSpec, rm: RunModel) -> Any:
    """Make a dataset built from other data speak the run's language.

    A data source recomputes its class list, its category columns and its
    standardisation from the file it reads; evaluation data must instead
    use the run's. Labels are re-indexed by class name, feature columns
    re-ordered by name and re-standardised with the training statistics.

    Raises:
        DataError: a class or feature the run never saw, or a sample shape
            the model cannot take.
    """
    import tensorflow as tf

    run_spec = rm.spec
    names = spec.class_names
    if rm.inferred and names and rm.class_names and len(names) == len(rm.class_names):
        # A bare .keras file knows no class names: take the data's.
        rm.class_names = [str(n) for n in names]
    _check_input_shape(spec, rm)
    label_map = _label_map(spec, rm)
    feature_fix = _feature_map(spec, run_spec)
    if label_map is None and feature_fix is None:
        return ds
    mode = spec.label_mode

    def fix(x, y):
        if feature_fix is not None:
            index, scale, offset = feature_fix
            x = tf.gather(tf.cast(x, tf.float32), index, axis=-1) * scale + offset
        if label_map is not None:
            if mode == "onehot":
                y = tf.matmul(tf.cast(y, tf.float32), tf.one_hot(label_map, len(rm.class_names)))
            else:
                y = tf.cast(tf.gather(label_map, tf.cast(y, tf.int32)), y.dtype)
        return x, y

    return ds.map(fix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _check_input_shape(spec: DataSpec, rm: RunModel) -> None:
    want = rm.model.input_shape
    got = spec.input_shape
    if isinstance(want, list) or got is None:
        return
    want = list(want[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        # Feature columns are re-aligned below, which may fix the width.
        if spec.feature_names and rm.spec.feature_names:
            return
        raise DataError(f"the data's samples have shape {list(got)} but the model takes {want}")


def _label_map(spec: DataSpec, rm: RunModel) -> Optional[np.ndarray]:
    """Index i of the data's classes -> the run's index of that class name."""
    if rm.task not in ("classification", "binary") or spec.layout == "masks":
        return None  # a mask's value is its class, whatever the data names it
    names = [str(n) for n in (spec.class_names or [])]
    run_names = rm.class_names or []
    if not names or names == run_names:
        return None
    unknown = [n for n in names if n not in run_names]
    if unknown:
        raise DataError(
            f"the data has class(es) {', '.join(map(repr, unknown))} that the model was not trained on",
            hint=f"its classes are {', '.join(run_names)}",
        )
    return np.asarray([run_names.index(n) for n in names], dtype=np.int32)


def _feature_map(spec: DataSpec, run_spec: DataSpec) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(column index, scale, offset) taking the data's encoded features to
    the run's: same columns by name, the run's standardisation."""
    names, run_names = spec.feature_names, run_spec.feature_names
    std, run_std = spec.standardize, run_spec.standardize
    if names is None or run_names is None:
        if std is not None and run_std is not None and std != run_std:
            return _restandardise(np.arange(len(std.mean)), std, run_std)
        return None
    if names == run_names and std == run_std:
        return None
    missing = [n for n in run_names if n not in names and "=" not in n]
    if missing:
        raise DataError(f"the data lacks feature column(s) {', '.join(map(repr, missing))} the model was trained on")
    extra = [n for n in names if n not in run_names]
    if extra:
        raise DataError(
            f"the data has value(s) never seen in training: {', '.join(repr(n) for n in extra[:5])}",
            hint="categorical columns must use the training categories",
        )
    # A training category absent from this data is a column of raw zeros:
    # read any column, scale it by 0 and add the run's standardised zero.
    index = np.asarray([names.index(n) if n in names else 0 for n in run_names], dtype=np.int32)
    present = np.asarray([n in names for n in run_names])
    scale, offset = _restandardise(index, std, run_std)[1:]
    zero = _restandardise(index, None, run_std)[2]
    scale = np.where(present, scale, 0.0).astype(np.float32)
    offset = np.where(present, offset, zero).astype(np.float32)
    return index, scale, offset


def _restandardise(index: np.ndarray, std: Optional[Standardize], run_std: Optional[Standardize]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale and offset undoing the data's standardisation of column
    `index[j]` and applying the run's to column j: x_run = x * a + b."""
    n = len(index)
    mean_d = np.asarray(std.mean, np.float64)[index] if std else np.zeros(n)
    sd_d = np.asarray(std.std, np.float64)[index] if std else np.ones(n)
    mean_r = np.asarray(run_std.mean, np.float64) if run_std else np.zeros(n)
    sd_r = np.asarray(run_std.std, np.float64) if run_std else np.ones(n)
    # Categorical (one-hot) columns are not standardised: the spec keeps a
    # mean 0 / std 1 for them or leaves them out of the mask.
    scale = sd_d / sd_r
    offset = (mean_d - mean_r) / sd_r
    return index, scale.astype(np.float32), offset.astype(np.float32)


def _merge_data(run_data: dict[str, Any], given: dict[str, Any], run_spec: DataSpec) -> dict[str, Any]:
    """The run's `data:` section with `given` merged over it.

    When the source changes, settings of the old source that do not apply
    to the new one are dropped, while the preprocessing (image size,
    colour mode, sequence, target and feature columns) is kept.
    """
    merged = dict(run_data)
    new_source = given.get("source", merged.get("source"))
    if new_source != run_data.get("source"):
        for key in ("path", "classes", "ctc"):
            merged.pop(key, None)
    if run_spec.features and "features" not in given:
        merged["features"] = list(run_spec.features)
    if run_spec.target and "target" not in given and not merged.get("target"):
        merged["target"] = run_spec.target
    if run_spec.image_size and "image_size" not in given:
        merged["image_size"] = list(run_spec.image_size)
    if run_spec.color_mode and "color_mode" not in given:
        merged["color_mode"] = run_spec.color_mode
    merged.update(given)
    return merged


def _bare_config(rm: RunModel) -> dict[str, Any]:
    """A config dict for a bare `.keras` file: data settings from the model.

    The model section is never built (the model is already loaded); it
    only has to validate.
    """
    data: dict[str, Any] = {}
    if rm.spec.image_size:
        data["image_size"] = rm.spec.image_size
        data["color_mode"] = rm.spec.color_mode or "rgb"
    from dlcli.model.io import saved_compile_config, saved_loss

    # The data source shapes labels for the loss (one-hot, 0/1, indices).
    compile_cfg: dict[str, Any] = {}
    loss = saved_loss(saved_compile_config(rm.run.model_path))
    if loss is not None:
        compile_cfg["loss"] = loss
    return {
        "name": rm.run.model_path.stem,
        "data": data,
        "model": {"layers": ["Identity"]},
        "compile": compile_cfg,
    }


def _run_config(r: Run) -> Any:
    if not r.is_folder or not r.config_path.is_file():
        return None
    from dlcli.config import load_config

    return load_config(r.config_path)


def _ensure_compiled(rm: RunModel, cfg: Any) -> None:
    """A model saved without its loss and metrics gets the run config's."""
    if getattr(rm.model, "compiled", False) and getattr(rm.model, "loss", None) is not None:
        return
    if cfg is None:
        raise RunError(
            f"{rm.run.model_path} was saved without a loss and metrics, and no run config says which to use",
            hint="evaluate a run folder, or save the model after model.compile(...)",
        )
    from dlcli.model import compile_model

    compile_model(rm.model, cfg)


def _collect(model: Any, ds: Any, targets: list[Target]) -> tuple[dict, dict, Optional[np.ndarray]]:
    """All labels and model outputs of a dataset in one pass, keyed by
    target name (None for a model with one output), and the inputs the
    pictures need (a single-input model's: the first samples for
    segmentation, all of them for reconstruction; else None)."""
    from dlcli.report_targets import SEGMENTATION_SAMPLES

    kinds = {t.kind for t in targets}
    keep = 10**12 if "reconstruction" in kinds else SEGMENTATION_SAMPLES if "segmentation" in kinds else 0
    ys: dict = {t.name: [] for t in targets}
    ps: dict = {t.name: [] for t in targets}
    xs: list = []
    for batch in ds:
        x, y = batch[0], batch[1]
        for name, out in by_output(model, model.predict_on_batch(x), targets).items():
            ps[name].append(out)
            ys[name].append(np.asarray(y if name is None else y[name]))
        if sum(map(len, xs)) < keep and not isinstance(x, (dict, list, tuple)):
            xs.append(np.asarray(x))
    if not any(ps.values()):
        raise DataError("the evaluation data is empty")
    inputs = np.concatenate(xs) if xs and len({a.shape[1:] for a in xs}) == 1 else None
    return {k: _stack(v) for k, v in ys.items()}, {k: np.concatenate(v) for k, v in ps.items()}, inputs


def _stack(ys: list[np.ndarray]) -> np.ndarray:
    if ys[0].ndim >= 2 and len({a.shape[1:] for a in ys}) > 1:
        # CTC labels are padded per batch: pad to one width.
        width = max(a.shape[1] for a in ys)
        ys = [np.pad(a, [(0, 0), (0, width - a.shape[1])]) for a in ys]
    return np.concatenate(ys)


def _output_paths(r: Run) -> tuple[Path, dict[str, Path]]:
    """Where evaluation.json and the plots go: inside the run folder, or
    beside a bare `.keras` file (named after it)."""
    if r.is_folder:
        plots = r.path / PLOTS_DIR
        return r.path / EVALUATION_FILE, {k: plots / f"{k}.png" for k in _PLOTS}
    stem, parent = r.model_path.stem, r.model_path.parent
    return parent / f"{stem}.{EVALUATION_FILE}", {k: parent / f"{stem}.{k}.png" for k in _PLOTS}


# The plots evaluate may write (each file is named after its key).
_PLOTS = ("confusion_matrix", "regression", "segmentation", "reconstructions", "reconstruction_error")
