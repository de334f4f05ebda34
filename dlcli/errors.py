"""The one error hierarchy of dlcli.

The library raises these; only the CLI layer turns them into a one-line
message and an exit code. Anything else that escapes is a bug and gets a
traceback.
"""

from __future__ import annotations

from pathlib import Path


class DlcliError(Exception):
    """Base class of every error dlcli raises for a user's input or run.

    Attributes:
        exit_code: the process exit code the CLI uses for this error.
        hint: an optional suggestion appended to the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(DlcliError, ValueError):
    """A config file, a `--set` override or a command option is wrong.

    Args:
        message: what is wrong.
        file: the config file, where known.
        line: the 1-based line in that file, where known.
        key: the dotted key path (`compile.optimizer.learning_rate`).
        hint: a suggestion ("did you mean 'filters'?").
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{super().__str__()}"



def cfg_error(cfg: object, key: str, message: str, hint: str | None = None) -> ConfigError:
    """Return a ConfigError located at `key` (file and line where known).

    The one constructor of located errors for config, data, model and
    training code: `cfg.error` (a loaded Config knows each key's line)
    where the config has it, else an error naming the key and the file.

    Args:
        cfg: the Config (or None for Python callers without one).
        key: the dotted key path, e.g. `model.layers.3`.
        message: what is wrong.
        hint: a suggestion.

    Returns:
        The error, for the caller to raise.
    """
    locate = getattr(cfg, "error", None)
    if callable(locate):
        return locate(key, message, hint=hint)
    return ConfigError(message, file=getattr(cfg, "source_file", None), key=key, hint=hint)


class DataError(DlcliError):
    """Data that cannot be read or does not fit the config (exit 2 before a
    run starts; the trainer re-raises mid-run failures as exit 1)."""

    exit_code = 2


class RunError(DlcliError):
    """A run folder or model file that is missing, unreadable or unsafe."""

    exit_code = 2


class TrainingError(DlcliError):
    """A failure while training: diverged loss, data unreadable mid-run."""

    exit_code = 1


class PredictionError(DlcliError):
    """predict read its inputs but could predict none of them (exit 1)."""

    exit_code = 1


class ExportError(DlcliError):
    """An export that failed or whose parity check fell below threshold."""

    exit_code = 1


class Interrupted(DlcliError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint."""

    exit_code = 130
