"""The run-folder contract: layout, numbering and atomic writes.

A run lives in `<root>/<name>/<N>/`, N counting up from 1; no run ever
reuses another's folder. Every file is written to a temporary name in the
same folder and renamed into place, so a killed process never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

from dlcli.errors import ConfigError, RunError

if TYPE_CHECKING:  # pragma: no cover
    from dlcli.data.spec import DataSpec

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
DATA_SPEC_FILE = "data_spec.json"
EVALUATION_FILE = "evaluation.json"
CHECKPOINT_DIR = "checkpoints"
PLOTS_DIR = "plots"
EXPORT_DIR = "export"
TENSORBOARD_DIR = "tensorboard"  # event logs, appended as training runs


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary file keeps `path`'s suffix (Keras checks `.keras`), lives
    in the same folder (so the rename is atomic) and is removed on failure,
    leaving any previous `path` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        if tmp_path.is_file():
            # mkstemp creates 0600; give the file the usual umask permissions.
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """`json.dumps(default=...)` for what run files and exports carry:
    numpy scalars and arrays as lists, anything else (paths) as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


# -- run names ---------------------------------------------------------------

MAX_NAME_LENGTH = 100
_NAME_RULE = "a folder name: no / or \\, no leading '.', at most 100 characters"


def name_problem(name: str) -> Optional[str]:
    """What makes `name` unusable as a run name (it must stay one folder
    inside --output), or None."""
    if not name or not name.strip():
        return "is empty"
    if "/" in name or "\\" in name or os.path.isabs(name):
        return "is a path, not a name"
    if name.startswith("."):
        return "starts with '.' (a hidden folder, or '..' leaving --output)"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "holds control characters"
    return None


def check_run_name(name: str, *, cfg: Any = None, key: str = "name") -> None:
    """Refuse a run name that would leave --output or not be one folder.

    Args:
        name: the run name (`--name`, the config's `name:`, or its stem).
        cfg: the Config, so that an error names its file and line.
        key: `name` or `--name`, for the message.

    Raises:
        ConfigError: the name and what is wrong with it (exit 2).
    """
    problem = name_problem(name)
    if problem is None:
        return
    message = f"run name {name!r} {problem}"
    hint = f"a run name is {_NAME_RULE}"
    locate = getattr(cfg, "error", None) if key == "name" else None
    if callable(locate):
        raise locate(key, message, hint=hint)
    raise ConfigError(message, key=key, hint=hint)


def keras_name(name: str) -> str:
    """A Keras model name from a run name: TensorFlow takes only ASCII
    letters, digits and `_.-` in names, not starting with `_` or `-`
    (`my iris` -> `my_iris`, `_base` -> `m_base`, `über` -> `uber`)."""
    ascii_text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_text)
    if not safe:
        return "model"
    return safe if safe[0].isalnum() else f"m{safe}"


# -- run-folder lock ----------------------------------------------------------

_LOCKS: contextvars.ContextVar[Optional[list[int]]] = contextvars.ContextVar("dlcli_run_locks", default=None)


@contextlib.contextmanager
def run_locks(resume: Optional[str | Path] = None) -> Iterator[None]:
    """Hold a lock on every run folder trained inside the block: `resume`
    at once, and each folder `new_run_dir` creates. The lock is an flock
    on the folder itself (nothing is written into it), released when the
    block ends or the process dies.

    Raises:
        RunError: `resume` is being trained by another process.
    """
    held: list[int] = []
    token = _LOCKS.set(held)
    try:
        if resume is not None and Path(resume).is_dir():
            lock_run_folder(Path(resume))
        yield
    finally:
        _LOCKS.reset(token)
        for fd in held:
            os.close(fd)


def lock_run_folder(folder: Path) -> None:
    """Lock `folder` for the enclosing `run_locks` block (no-op outside one).

    Raises:
        RunError: another process (or another run in this one) holds it.
    """
    import fcntl

    held = _LOCKS.get()
    if held is None:
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunError(f"run folder {folder} is being trained by another process",
                       hint="wait for it to finish (or stop it), then --resume") from None
    held.append(fd)


def run_number(name: str) -> Optional[int]:
    """N of a numbered run folder's name, or None: only ASCII digits count
    (`"²".isdigit()` is True, but `int("²")` fails)."""
    return int(name) if name.isascii() and name.isdigit() else None


def unwritable(folder: str | Path) -> Optional[str]:
    """Why files cannot be created in `folder` (read-only, no permission),
    or None when they can: a temporary file is made and removed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dlcli-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def run_folder_of(path: str | Path) -> Optional[Path]:
    """The run folder `path` lies in (a folder with config.yaml beside a
    model.keras or checkpoints/), or None."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / CONFIG_FILE).is_file() and ((folder / MODEL_FILE).exists() or (folder / CHECKPOINT_DIR).is_dir()):
            return folder
    return None


def new_run_dir(root: str | Path, name: str) -> Path:
    """Create and return a fresh numbered folder `<root>/<name>/<N>/`.

    Creation is race-free: `mkdir` without `exist_ok` claims the number, so
    two runs started at once never share a folder.

    Raises:
        RunError: the root cannot be created or written.
    """
    check_run_name(name)
    base = Path(root) / name
    if Path(os.path.abspath(base)).parent != Path(os.path.abspath(root)):
        raise RunError(f"run name {name!r} would leave {root}")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create run folder {base}: {exc.strerror or exc}") from None
    if not os.access(base, os.W_OK):
        raise RunError(f"run folder {base} is not writable", hint="choose another --output")
    existing = [n for n in (run_number(p.name) for p in base.iterdir()) if n is not None]
    n = max(existing, default=0) + 1
    while True:
        candidate = base / str(n)
        try:
            candidate.mkdir()
            lock_run_folder(candidate)
            return candidate
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise RunError(f"cannot create run folder {candidate}: {exc.strerror or exc}") from None


class RunFolder:
    """The life of one training run's folder.

    A run folder is created (or reopened, to resume) only once everything a
    user could have got wrong has been checked; a run that then fails at
    its very first step leaves nothing behind (`undo`); a resumed folder
    is tidied of what a killed process left half-done.

    Attributes:
        path: the folder.
        resumed: it was reopened to continue an earlier run.
        scratch: a throw-away folder (a non-chief worker's).
    """

    def __init__(
        self,
        path: Path,
        *,
        created: Sequence[Path] = (),
        old_files: Optional[dict[str, Optional[bytes]]] = None,
        resumed: bool = False,
        scratch: bool = False,
    ) -> None:
        self.path = Path(path)
        self.resumed = resumed
        self.scratch = scratch
        # Folders made for this run, deepest first; removed by `undo`.
        self._created = list(created)
        # A resumed run's files as they were: `undo` puts them back.
        self._old_files = dict(old_files or {})
        # TensorBoard event files already there: `undo` removes only newer ones.
        self._old_events = set(self._events())

    @staticmethod
    def check_root(output: str | Path) -> None:
        """Fail before any work when run folders cannot be created under
        `output` (a path below a regular file, a read-only folder).

        Raises:
            RunError: naming the path that blocks it.
        """
        p = Path(output).absolute()
        anc = p
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise RunError(f"cannot create run folders under {output}: {anc} is not a folder", hint="choose another --output")
        if not os.access(anc, os.W_OK):
            raise RunError(f"cannot create run folders under {output}: {anc} is not writable", hint="choose another --output")

    @classmethod
    def create(cls, output: str | Path, name: str) -> "RunFolder":
        """Create `<output>/<name>/<N>/`, remembering every folder made."""
        root = Path(output)
        missing = [p for p in (root / name, root, *root.parents) if not p.exists()]
        path = new_run_dir(output, name)
        return cls(path, created=[path, *missing])

    @classmethod
    def reopen(cls, path: str | Path, keep: Iterable[str] = (CONFIG_FILE, DATA_SPEC_FILE)) -> "RunFolder":
        """An existing run folder, to continue; the files `keep` names are
        remembered so that `undo` can put them back."""
        path = Path(path)
        return cls(path, old_files={f: _read_bytes(path / f) for f in keep}, resumed=True)

    @classmethod
    def temporary(cls) -> "RunFolder":
        """A scratch folder outside any run root, removed by `discard`."""
        return cls(Path(tempfile.mkdtemp(prefix="dlcli-worker-")), scratch=True)

    @contextlib.contextmanager
    def starting(self) -> Iterator["RunFolder"]:
        """Around the first writes (config.yaml, data_spec.json, a resumed
        folder's tidy-up): a write that fails undoes the start.

        Raises:
            RunError: a file could not be written.
        """
        try:
            yield self
        except OSError as exc:
            self.undo()
            raise RunError(
                f"cannot write the run folder {self.path}: {exc.strerror or exc}", hint="choose another --output"
            ) from None

    def write_start(self, config_text: str, data_spec: dict[str, Any]) -> None:
        """Write config.yaml and data_spec.json, the files a run starts with."""
        atomic_write_text(self.path / CONFIG_FILE, config_text)
        atomic_write_json(self.path / DATA_SPEC_FILE, data_spec)

    def undo(self) -> None:
        """Leave nothing behind: a folder made for this run is removed, a
        resumed run's starting files are put back."""
        if self._created:
            import shutil

            shutil.rmtree(self._created[0], ignore_errors=True)
            for p in self._created[1:]:
                try:
                    p.rmdir()  # only while empty: another run may have started
                except OSError:
                    break
        for name, data in self._old_files.items():
            if data is not None:
                atomic_write_bytes(self.path / name, data)
        if self.resumed:
            for p in set(self._events()) - self._old_events:
                p.unlink(missing_ok=True)

    def _events(self) -> Iterator[Path]:
        folder = self.path / TENSORBOARD_DIR
        return (p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else iter(())

    def discard(self) -> None:
        """Remove a scratch folder once its run is over."""
        if self.scratch:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)

    def remove_temporaries(self) -> None:
        """Remove the temporary files of writes a killed process left
        unfinished (`atomic_path`'s ".<stem>.<random><suffix>")."""
        stems = {Path(f).name.split(".")[0] for f in (CONFIG_FILE, MODEL_FILE, HISTORY_FILE, METRICS_FILE, DATA_SPEC_FILE)}
        for folder in (self.path, self.path / PLOTS_DIR):
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file() and p.name.startswith(".") and (folder != self.path or p.name[1:].split(".")[0] in stems):
                        p.unlink(missing_ok=True)


def _read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


@dataclass
class Run:
    """A finished or interrupted run folder (or a bare `.keras` file)."""

    path: Path
    model_path: Path

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def file(self, name: str) -> Path:
        """A file inside the run folder."""
        return self.path / name

    def read_json(self, name: str) -> dict[str, Any]:
        """Read a JSON file of the run; an empty dict if it is absent."""
        p = self.path / name
        if not self.is_folder or not p.exists():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{p}: unreadable ({exc})") from None

    @property
    def data_spec(self) -> Optional["DataSpec"]:
        """What predict/evaluate need to preprocess inputs like training did
        (None without a data_spec.json: a bare model file)."""
        raw = self.read_json(DATA_SPEC_FILE)
        if not raw:
            return None
        from dlcli.data.spec import DataSpec

        try:
            return DataSpec.read(raw)
        except ValueError as exc:
            raise RunError(f"{self.path / DATA_SPEC_FILE}: not a data spec ({str(exc).splitlines()[0]})") from None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.read_json(METRICS_FILE)


def resolve_run(path: str | Path) -> Run:
    """Find the run a user names: a run folder, a `<name>` folder holding
    numbered runs (the latest is taken), or a bare `.keras` file.

    Raises:
        RunError: nothing usable is there.
    """
    p = Path(path)
    if not p.exists():
        raise RunError(f"run not found: {p}", hint="pass a run folder such as runs/cnn_digits/1 or a .keras file")
    if p.is_file():
        if p.suffix != ".keras":
            raise RunError(f"{p} is not a .keras model file or a run folder")
        # model.keras inside a run folder is that run; any other file stands alone
        return Run(path=p.parent if p.name == MODEL_FILE else p, model_path=p)
    if (p / MODEL_FILE).exists():
        return Run(path=p, model_path=p / MODEL_FILE)
    numbered = sorted((c for c in p.iterdir() if run_number(c.name) is not None and (c / MODEL_FILE).exists()),
                      key=lambda c: int(c.name))
    if numbered:
        return resolve_run(numbered[-1])
    raise RunError(f"{p} holds no {MODEL_FILE}", hint="is the run finished? `dlcli train --resume` continues an interrupted one")
