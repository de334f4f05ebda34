"""Continuing a run folder: what state to resume from, and the folder's
tidy-up after a killed process."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from dlcli.errors import RunError
from dlcli.runs import CONFIG_FILE, DATA_SPEC_FILE, HISTORY_FILE, MODEL_FILE, RunFolder
from dlcli.training import checkpoint as ckpt
from dlcli.training import preflight
from dlcli.training.phases import Phases, phase_of, total_epochs


def resume_state(run_dir: Path, cfg: Any) -> ckpt.TrainState:
    """The state to continue `run_dir` from (checked before any work).

    A run folder killed before its first checkpoint has config.yaml and
    data_spec.json but no state: it starts over in place.

    Raises:
        RunError: not a run folder, unreadable, or nothing left to train.
    """
    if not run_dir.is_dir():
        raise RunError(f"cannot resume {run_dir}: no such run folder", hint="pass a run folder such as runs/cnn_digits/1")
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / DATA_SPEC_FILE).is_file():
        raise RunError(
            f"cannot resume {run_dir}: not a dlcli run folder (no {CONFIG_FILE} and {DATA_SPEC_FILE})",
            hint="pass a run folder such as runs/cnn_digits/1",
        )
    preflight.check_config_unedited(run_dir)
    state = ckpt.read_state(run_dir)
    if state is None:
        if (run_dir / MODEL_FILE).exists():
            raise RunError(f"cannot resume {run_dir}: it has a {MODEL_FILE} but no checkpoints/", hint="train a new run")
        return ckpt.TrainState()
    total = total_epochs(cfg)
    if state.finished and total <= max(state.total_epochs, state.epoch):
        planned = max(state.total_epochs, state.epoch)
        raise RunError(
            f"cannot resume {run_dir}: it already finished ({state.epoch} of {planned} epochs)",
            hint=f"pass --epochs larger than {planned} to train it further",
        )
    if state.epoch > total:
        raise RunError(
            f"cannot resume {run_dir} for {total} epochs: it has completed {state.epoch}",
            hint=f"pass --epochs larger than {state.epoch}",
        )
    return state


def tidy_resumed_folder(folder: RunFolder, state: ckpt.TrainState) -> None:
    """Remove what a killed process left half-done: temporary files of
    interrupted writes, checkpoint files state.json does not name, history
    rows past the checkpoint."""
    ckpt.prune(folder.path, state)
    folder.remove_temporaries()
    from dlcli.training.callbacks import write_history

    if state.history:
        write_history(folder.path, state.history)
    else:
        (folder.path / HISTORY_FILE).unlink(missing_ok=True)


def position_training_data(ds: Any, model: Any, state: ckpt.TrainState, ranges: Phases, strategy: Any = None) -> None:
    """Make the next epoch see the batches, in the order, that it would
    have seen had the run never stopped.

    A shuffled tf.data pipeline draws a new order each time an iterator is
    created from it, so epoch k's order is that of the n-th iterator, n
    counted from the start of the run. Keras 3's fit creates two per epoch
    when the epoch length is known (one as the epoch starts, one when it
    ends; keras/src/trainers/epoch_iterator.py), one otherwise, plus one
    per fit call to build the model under a distribution strategy.
    Creating the same number of iterators without reading them moves the
    order on at no cost (no batch is produced).
    """
    if state.epoch == 0:
        return
    per_epoch = 2 if _cardinality(ds) is not None else 1
    # Keras records the strategy a model was built under; fit then peeks
    # at one batch per call (`_maybe_symbolic_build`).
    # dlcli's multi-worker loop (distribute.run_fit) builds without a peek.
    import tensorflow as tf

    own_loop = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    per_fit = 1 if getattr(model, "_distribute_strategy", None) is not None and not own_loop else 0
    n = state.epoch * per_epoch + (phase_of(ranges, state.epoch) - 1) * per_fit
    for _ in range(n):
        iter(ds)


def _cardinality(ds: Any) -> Optional[int]:
    try:
        n = int(ds.cardinality())
    except Exception:  # noqa: BLE001 - not a tf.data dataset
        return None
    return n if n > 0 else None
