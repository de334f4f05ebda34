"""Continuing a run folder: what state to resume from, and the folder's
tidy-up after a killed process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.errors import RunError
from dlcli.runs import CONFIG_FILE, DATA_SPEC_FILE, HISTORY_FILE, MODEL_FILE, RunFolder
from dlcli.training import checkpoint as ckpt
from dlcli.training import preflight
from dlcli.training.phases import total_epochs


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
