"""Fit a model described by a config and write its run folder.

`Trainer.run` reads top to bottom: check, prepare the data, build the
model, open the run folder, fit each phase, finish. Its order keeps two
promises of the run-folder contract:

* Bad input writes nothing. The data is loaded, the model built, compiled
  and checked against the data before the run folder is created, and a
  model that fails on its very first batch (a loss that does not fit the
  labels) removes the folder again and is reported as a config error.
* Nothing is lost. After every epoch a checkpoint (weights, optimizer
  state, RNG and callback state, history) is committed atomically; a run
  killed at any moment continues with `dlcli train --resume RUN` and sees
  the same batches in the same order as a run that was never stopped.

A subclass may override any step; `callbacks=` adds Keras callbacks (a
TensorBoard writer, a tuner's pruning callback) to every phase's fit.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli.runs import RunFolder, check_run_name
from dlcli.training import checkpoint as ckpt
from dlcli.training import failures, phases, preflight, prepare, resume as resuming, tracking


# Keras sessions this process has started (runs of the API, a tuner, tests).
_SESSIONS = 0


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run folder.
        metrics: what metrics.json holds.
        history: history.csv's columns.
        resumed: the run continued an earlier one.
    """

    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    resumed: bool = False


class Trainer:
    """One training run of a validated config.

    Args:
        cfg: a validated `dlcli.config.Config`.
        output: the root holding run folders (`<output>/<name>/<N>/`).
        name: the run name (default: the config's name).
        resume: a run folder to continue in place from its last checkpoint;
            `cfg` must then be that run's config (epochs may be raised).
        progress: auto | progress | lines | none (where progress goes, on
            stderr).
        console: a Rich console for progress bars.
        callbacks: extra Keras callbacks for every fit, called after the
            run's own each epoch (they see each epoch once it is
            checkpointed).
    """

    def __init__(
        self,
        cfg: Any,
        *,
        output: str | Path = "runs",
        name: Optional[str] = None,
        resume: Optional[str | Path] = None,
        progress: str = "auto",
        console: Any = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.cfg = cfg
        self.output = output
        self.name = name
        self.resume_dir = Path(resume) if resume is not None else None
        self.progress = progress
        self.console = console
        self.extra_callbacks = list(callbacks)
        self.phases = phases.phases(cfg)
        self.state: Optional[ckpt.TrainState] = None
        self.timings: dict[str, float] = {}

    # -- the run, top to bottom ----------------------------------------------

    def run(self) -> TrainResult:
        """Train and write the run folder.

        Raises:
            ConfigError, DataError: bad config or data (exit 2, nothing
                written).
            RunError: a run folder that cannot be resumed or written (exit 2).
            TrainingError: the loss diverged, the data failed mid-run or a
                file could not be written (exit 1; the last good checkpoint
                is kept).
            Interrupted: SIGINT/SIGTERM (exit 130; resumable checkpoint kept).
        """
        self.timings["start"] = time.perf_counter()
        self.check()
        self.setup_keras()
        self.prepare_data()
        self.build()
        self.open_run_folder()
        self.fit()
        metrics = self.finish()
        return TrainResult(
            run_dir=self.folder.path, metrics=metrics, history=self.state.history, resumed=self.resume_dir is not None
        )

    def check(self) -> None:
        """What can be checked before any work: the run to resume, or the
        root and the name of a new run folder."""
        if self.resume_dir is not None:
            self.state = resuming.resume_state(self.resume_dir, self.cfg)
        else:
            RunFolder.check_root(self.output)
            # A run name never leaves --output.
            check_run_name(self.name or self.cfg.name or "run", cfg=self.cfg, key="--name" if self.name else "name")

    def setup_keras(self) -> None:
        """A fresh Keras state, seeded: a run in a long-lived process (the
        Python API, a tuner, tests) starts exactly like one in a new
        process."""
        import keras

        from dlcli.training.distribute import get_strategy

        from dlcli.data.pipeline import set_epoch

        global _SESSIONS
        # Freeing memory is Python's gc over all of TensorFlow's objects
        # (~0.3 CPU s): worth it only where an earlier run left some.
        keras.backend.clear_session(free_memory=_SESSIONS > 0)
        _SESSIONS += 1
        keras.utils.set_random_seed(self.cfg.seed)
        policy = self.cfg.train.mixed_precision
        keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)
        # The strategy first: a multi-worker strategy must be made before any
        # TensorFlow variable exists (collective ops are set up at start-up).
        self.strategy, self.is_chief = get_strategy(self.cfg)
        # What reads the training data before fit (adapt, class weights)
        # sees epoch 0's order, in a fresh run as in a resumed one.
        set_epoch(0)

    def prepare_data(self) -> None:
        """Load the data; say what was found and what the data check
        skipped."""
        from dlcli.data import load_data
        from dlcli.training.progress import describe_data, loading

        t0 = time.perf_counter()
        shown = self.progress_mode() if self.is_chief else "none"
        with loading(shown, self.console):
            self.bundle = load_data(self.cfg)
        self.timings["load_data_s"] = time.perf_counter() - t0
        # A single class; data changed since a resumed run started.
        preflight.check_data(self.cfg, self.bundle, self.resume_dir)
        if shown != "none":
            # Before training starts (also kept in metrics.json's data section).
            for line in [describe_data(self.bundle), *(f"data: {n}" for n in self.bundle.notes)]:
                print(line, file=sys.stderr, flush=True)

    def build(self) -> None:
        """Build, check against the data, adapt and compile the model
        (restoring a resumed run's checkpoint), and make the user's
        callbacks."""
        from dlcli.model import build_model, compile_model
        from dlcli.model.adapt import adapt_model
        from dlcli.training.distribute import scale_learning_rate, steps_per_epoch
        from dlcli.training.user_callbacks import build_callbacks

        cfg, bundle, state = self.cfg, self.bundle, self.state
        with self.strategy.scope():
            self.model = build_model(cfg, bundle.input_shape, num_classes=bundle.num_classes)
            self.model = bundle.attach(self.model)  # raw-row preprocessing in front (CSV / Parquet)
            prepare.check_output_matches_data(self.model, cfg, bundle.spec)
            adapt_model(self.model, bundle)  # preprocessing layers learn their state before fit
            compile_model(self.model, cfg, steps_per_epoch=steps_per_epoch(bundle.train, self.strategy))
            scale_learning_rate(self.model, self.strategy, cfg)
            if state is not None and state.phase > 1:
                phases.enter_fine_tune_phase(self.model, cfg)
            if state is not None:
                ckpt.restore(self.resume_dir, self.model, state, data_rng=prepare.data_rng(bundle))
            self.user_callbacks = build_callbacks(cfg)
        tracking.check(cfg, self.user_callbacks)  # a missing package: exit 2, nothing written
        self.class_weight = prepare.class_weight(cfg, bundle)
        self.monitor = prepare.monitor(cfg, bundle)
        preflight.check(cfg, self.model, bundle, self.user_callbacks)  # what would fail mid-run: a config error now

    def open_run_folder(self) -> None:
        """Everything the user could have got wrong is checked: create (or
        reopen) the run folder and write config.yaml and data_spec.json."""
        if self.resume_dir is not None:
            self.folder = RunFolder.reopen(self.resume_dir)
        elif self.is_chief:
            self.folder = RunFolder.create(self.output, self.name or self.cfg.name or "run")
        else:
            self.folder = RunFolder.temporary()
        with self.folder.starting():
            text = self.cfg.to_yaml()
            spec = self.bundle.spec.copy_with(fingerprint=preflight.fingerprint(self.cfg, text))  # --resume compares it
            self.folder.write_start(text, spec.to_json())
            if self.folder.resumed:
                resuming.tidy_resumed_folder(self.folder, self.state)
        resuming_unfinished = self.state is not None and not self.state.finished
        if self.state is None:
            self.state = ckpt.TrainState()
        self.state.total_epochs = self.phases[-1][1]
        self.state.finished = False
        self.state.history = phases.label_phases(self.state.history, self.phases)
        self.recorder = self.make_recorder(restore=resuming_unfinished)

    def make_recorder(self, restore: bool) -> Any:
        """The RunRecorder: history, checkpoints, best epoch, stops."""
        from dlcli.training.callbacks import RunRecorder

        state, ranges = self.state, self.phases
        return RunRecorder(
            self.folder.path,
            state,
            monitor=self.monitor,
            keep_best=bool(self.cfg.train.monitor),
            checkpoint_every=self.cfg.train.checkpoint_every,
            last_epoch=ranges[-1][1],
            user_callbacks=self.user_callbacks,
            # Extending a finished run starts its callbacks afresh: an
            # EarlyStopping that stopped it would otherwise stop it at once.
            restore_callbacks=(state.callbacks, ckpt.load_callback_arrays(self.folder.path, state))
            if restore and state.callbacks
            else None,
            extra_columns=(lambda e: {"phase": phases.phase_of(ranges, e)}) if len(ranges) > 1 else None,
            has_validation=self.bundle.val is not None,
            data_rng=prepare.data_rng(self.bundle),
        )

    def callbacks(self) -> list[Any]:
        """Every fit's callbacks: the data's epoch order, the user's (the
        recorder checkpoints what they did), trackers (TensorBoard, MLflow), the recorder, the
        progress display, extra ones (`dlcli tune` reports to Optuna and
        prunes with one)."""
        from dlcli.training.callbacks import EpochOrder
        from dlcli.training.distribute import steps_per_epoch
        from dlcli.training.progress import Progress

        progress = Progress(
            self.progress_mode(), self.phases[-1][1], steps_per_epoch(self.bundle.train, self.strategy),
            self.console, self.recorder,
        )
        self.trackers = tracking.callbacks(self.cfg, self.folder.path, self.user_callbacks)
        return [EpochOrder(), *self.user_callbacks, *self.trackers, self.recorder, progress, *self.extra_callbacks]

    def fit(self) -> None:
        """Fit each phase not done yet, under a signal guard; a failure or
        a stop becomes the right dlcli error."""
        from dlcli.training.callbacks import SignalGuard

        recorder, failure = self.recorder, None
        callbacks = self.callbacks()
        with SignalGuard(recorder):
            for phase_no, (start, end) in enumerate(self.phases, start=1):
                if self.state.epoch >= end:
                    continue
                if recorder.stop_reason:
                    break
                try:
                    self.fit_phase(phase_no, start, end, callbacks)
                except KeyboardInterrupt:
                    recorder.interrupted = recorder.interrupted or "SIGINT"
                except Exception as exc:  # noqa: BLE001 - sorted out just below
                    failure = exc
                    break
                if recorder.stop_reason:
                    break
                if self.model.stop_training and self.state.epoch < end:
                    if phase_no == len(self.phases):
                        break
                    self.model.stop_training = False  # early stopping ends this phase, not the fine-tune
        if failure is not None or recorder.stop_reason:
            tracking.finish(self.trackers, ok=False)
        if failure is not None:
            failures.raise_failure(failure, self.cfg, self.bundle.spec, self.folder, recorder)
        if recorder.stop_reason:
            failures.raise_stop(recorder, self.cfg, self.model, self.folder, self.monitor)

    def fit_phase(self, phase_no: int, start: int, end: int, callbacks: list[Any]) -> None:
        """One `fit` call: epochs [max(done, start), end) of one phase."""
        from dlcli.training.distribute import run_fit

        if phase_no > 1 and self.state.phase < phase_no:
            with self.strategy.scope():
                phases.enter_fine_tune_phase(self.model, self.cfg)
            self.state.phase = phase_no
        with warnings.catch_warnings():
            # Keras warns that fit's default shuffle=True is ignored for a
            # tf.data dataset: dlcli's pipeline shuffles.
            warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
            run_fit(
                self.model,
                self.strategy,
                self.bundle.train,
                validation_data=self.bundle.val,
                epochs=end,
                initial_epoch=max(self.state.epoch, start),
                callbacks=callbacks,
                class_weight=self.class_weight,
                verbose=0,
                per_replica_batch=self.cfg.data.batch_size,
            )

    def finish(self) -> dict[str, Any]:
        """Write model.keras, metrics.json, history and plots; mark the
        checkpoint finished last, so a run killed in here is resumed (and
        finished) rather than taken as done.

        Returns:
            What metrics.json holds.
        """
        from dlcli.training.results import write_results

        try:
            metrics = write_results(self)
            self.state.finished = True
            ckpt.write_state(self.folder.path, self.state)
        except OSError as exc:
            tracking.finish(self.trackers, ok=False)
            raise failures.write_error(exc, self.folder.path) from None
        if self.is_chief:  # model.keras must reload as trained (exit 1 and metrics.json's reload if not)
            from dlcli.model.reload import check_reload

            check_reload(self.folder.path, self.model, self.bundle.val if self.bundle.val is not None else self.bundle.train)
        tracking.finish(self.trackers, ok=True)
        if self.resume_dir is None:
            # A non-chief worker's folder was scratch space: the chief's run
            # folder is the run's record.
            self.folder.discard()
        return metrics

    # -- helpers --------------------------------------------------------------

    def progress_mode(self) -> str:
        """progress | lines | none, `auto` settled by the terminal."""
        mode = self.progress
        if mode == "auto":
            mode = self.cfg.train.verbose
        if mode == "auto":
            tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
            return "progress" if tty else "lines"
        return mode


def train(
    cfg: Any,
    *,
    output: str | Path = "runs",
    name: Optional[str] = None,
    resume: Optional[str | Path] = None,
    progress: str = "auto",
    console: Any = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train the model of `cfg` and write a run folder (see `Trainer` for
    the arguments, `Trainer.run` for the errors).

    Returns:
        A TrainResult with the run folder, final metrics and history.
    """
    trainer = Trainer(
        cfg, output=output, name=name, resume=resume, progress=progress, console=console, callbacks=callbacks
    )
    return trainer.run()
