"""Experiment tracking: TensorBoard event files in the run folder, and an
optional MLflow logger.

* TensorBoard (`pip install 'dlcli[tensorboard]'`): with `train.tensorboard`
  unset, every run writes its events into `<run>/tensorboard/` when the
  package is installed; `true` requires it, `false` turns it off. A user's
  own `TensorBoard` callback is pointed at the run folder too (its
  default `logs` becomes `<run>/tensorboard`, another relative folder is
  taken inside the run folder), so runs never share one `./logs`.
* MLflow (`pip install 'dlcli[mlflow]'`): `train.mlflow: {tracking_uri,
  experiment}` logs the resolved config as parameters, every epoch's
  metrics, and at the end metrics.json, history.csv, the plots and
  model.keras as artifacts of one MLflow run named after the run folder.

A missing package is found before anything is written (exit 2), with the
pip command that installs it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import keras

from dlcli.errors import ConfigError
from dlcli.runs import TENSORBOARD_DIR


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing(what: str, extra: str, key: str, cfg: Any) -> ConfigError:
    return cfg.error(key, f"{what} needs the {extra} package, which is not installed",
                     hint=f"pip install 'dlcli[{extra}]'")


def check(cfg: Any, user_callbacks: Sequence[Any]) -> None:
    """Refuse, before anything is written, tracking whose package is
    missing.

    Raises:
        ConfigError: naming `pip install 'dlcli[tensorboard]'` (or mlflow).
    """
    has_tb = _installed("tensorboard")
    for i, cb in enumerate(cfg.train.callbacks):
        name = cb if isinstance(cb, str) else next(iter(cb), "")
        if str(name).split(".")[-1] == "TensorBoard" and not has_tb:
            raise _missing("the TensorBoard callback", "tensorboard", f"train.callbacks.{i}", cfg)
    if cfg.train.tensorboard is True and not has_tb:
        raise _missing("train.tensorboard: true", "tensorboard", "train.tensorboard", cfg)
    if cfg.train.mlflow is not None and not _installed("mlflow"):
        raise _missing("train.mlflow", "mlflow", "train.mlflow", cfg)


def callbacks(cfg: Any, run_dir: Path, user_callbacks: Sequence[Any]) -> list[Any]:
    """Point the user's TensorBoard callbacks at the run folder and return
    the tracking callbacks dlcli adds (TensorBoard, MLflow)."""
    extra: list[Any] = []
    user_tb = [cb for cb in user_callbacks if isinstance(cb, keras.callbacks.TensorBoard)]
    for cb in user_tb:
        log_dir = Path(cb.log_dir)
        if not log_dir.is_absolute():
            cb.log_dir = str(run_dir / (TENSORBOARD_DIR if str(log_dir) in ("logs", "./logs") else log_dir))
    if not user_tb and cfg.train.tensorboard is not False and _installed("tensorboard"):
        extra.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR)))
    if cfg.train.mlflow is not None:
        extra.append(MLflowLogger(cfg, run_dir))
    return extra


def _flat_params(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flat_params(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: str(obj)[:500]}


class MLflowLogger(keras.callbacks.Callback):
    """Log one dlcli run to MLflow: parameters when training starts,
    metrics every epoch, artifacts when the run is finished (`finish`).

    One MLflow run spans every fit of the dlcli run (both fine-tuning
    phases); `finish` ends it, with FAILED status when training failed.
    """

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        super().__init__()
        self.settings = cfg.train.mlflow
        self.cfg = cfg
        self._config = cfg.to_dict()
        self.run_dir = Path(run_dir)
        self.run_id: Optional[str] = None

    def _client(self) -> Any:
        import mlflow

        if self.settings.tracking_uri:
            mlflow.set_tracking_uri(self.settings.tracking_uri)
        return mlflow

    def on_train_begin(self, logs=None):
        if self.run_id is not None:
            return
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - MLflow's errors vary by store
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise self.cfg.error("train.mlflow", f"MLflow cannot log this run: {first[:300]}",
                                 hint="check tracking_uri (a folder, sqlite:///file.db or http://host:port)") from None

    def _start(self) -> None:
        mlflow = self._client()
        exp = mlflow.set_experiment(self.settings.experiment)
        name = f"{self.run_dir.parent.name}/{self.run_dir.name}"
        run = mlflow.MlflowClient().create_run(exp.experiment_id, run_name=name, tags={"dlcli.run_dir": str(self.run_dir)})
        self.run_id = run.info.run_id
        client = mlflow.MlflowClient()
        for k, v in _flat_params(self._config).items():
            client.log_param(self.run_id, k, v)

    def on_epoch_end(self, epoch, logs=None):
        if self.run_id is None:
            return
        client = self._client().MlflowClient()
        for k, v in (logs or {}).items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                client.log_metric(self.run_id, k, value, step=epoch + 1)

    def finish(self, ok: bool) -> None:
        """Log the run folder's results and end the MLflow run."""
        if self.run_id is None:
            return
        client = self._client().MlflowClient()
        if ok:
            for name in ("metrics.json", "history.csv", "config.yaml", "model.keras"):
                if (self.run_dir / name).is_file():
                    client.log_artifact(self.run_id, str(self.run_dir / name))
            if (self.run_dir / "plots").is_dir():
                client.log_artifacts(self.run_id, str(self.run_dir / "plots"), artifact_path="plots")
        client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")
        self.run_id = None


def finish(extra: Sequence[Any], ok: bool) -> None:
    """End the trackers of a run (after model.keras and metrics.json)."""
    for cb in extra:
        if isinstance(cb, MLflowLogger):
            cb.finish(ok)


__all__ = ["TENSORBOARD_DIR", "MLflowLogger", "callbacks", "check", "finish"]
