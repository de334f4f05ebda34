"""The parsed-CSV cache: a CSV's typed table kept as an Arrow IPC file.

Parsing a CSV is most of the time a table source takes to load, and a file
is parsed again by every run, evaluate and tune trial on it. So, as Ludwig
keeps a dataset's preprocessed copy and Ultralytics its label caches, the
table parsed from a CSV of at least `MIN_BYTES` is written once (Arrow's
uncompressed IPC format, by a background thread while the run goes on) and
the next read of the same, unchanged file maps it instead of parsing.

- Where: `$DLCLI_TABLE_CACHE`, else `$XDG_CACHE_HOME/dlcli/tables` (default
  `~/.cache/dlcli/tables`). `DLCLI_TABLE_CACHE=off` turns it off.
- Which file: the key hashes the CSV's absolute path, size, modification
  time, inode and its first and last 64 KiB, with what was asked of the
  read (encoding, columns, float32 columns) and the cache and pyarrow
  versions; the key is also kept in the cached file and checked on read. A
  changed file is a new key.
- Size: at most `$DLCLI_TABLE_CACHE_MB` MiB (default 4096) in all; after
  each write the least recently used tables go first. A table larger than
  the whole budget is not kept.
- Safety: a cached table is data only (Arrow IPC has no code in it);
  writes go to a temporary file renamed into place (atomic: two runs that
  parse the same file write the same table); a cache that cannot be read
  or written (full disk, read-only home) is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

# A CSV smaller than this parses in milliseconds: not worth a cache file.
MIN_BYTES = 1 << 20
DEFAULT_BUDGET_MB = 4096
VERSION = 1
_SAMPLE = 1 << 16
_KEY = b"dlcli.table_cache.key"
_SOURCE = b"dlcli.table_cache.source"
_ROWS = b"dlcli.table_cache.rows"
# Temporary files older than this are from a writer that died.
_STALE_TMP_S = 3600.0
_LOCK = threading.Lock()
_PENDING: list[threading.Thread] = []


def cache_dir() -> Optional[Path]:
    """The cache folder, or None when the cache is off."""
    raw = os.environ.get("DLCLI_TABLE_CACHE")
    if raw is not None and raw.strip().lower() in ("", "0", "off", "no", "false", "none"):
        return None
    if raw:
        return Path(raw).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "dlcli" / "tables"


def budget_bytes() -> int:
    raw = os.environ.get("DLCLI_TABLE_CACHE_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_BUDGET_MB
    except ValueError:
        mb = DEFAULT_BUDGET_MB
    return max(0, int(mb * (1 << 20)))


def cache_key(path: Path, encoding: Optional[str], columns: Optional[Sequence[str]],
              float32: Sequence[str]) -> Optional[str]:
    """The key of a CSV read, or None when the cache is off or the file is
    too small to cache (or cannot be opened)."""
    if cache_dir() is None:
        return None
    import pyarrow as pa

    try:
        st = os.stat(path)
        if st.st_size < MIN_BYTES:
            return None
        with open(path, "rb") as f:
            head = f.read(_SAMPLE)
            f.seek(max(0, st.st_size - _SAMPLE))
            tail = f.read(_SAMPLE)
    except OSError:
        return None
    what = {"v": VERSION, "pyarrow": pa.__version__, "path": str(Path(path).resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev, "encoding": encoding or "utf-8",
            "columns": list(columns) if columns else None, "float32": sorted(set(float32))}
    h = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    h.update(head)
    h.update(tail)
    return h.hexdigest()[:40]


def load(key: Optional[str]) -> Optional[Any]:
    """The cached table of `key` (memory-mapped), or None."""
    folder = cache_dir()
    if key is None or folder is None:
        return None
    import pyarrow as pa
    import pyarrow.ipc as ipc

    file = folder / f"{key}.arrow"
    try:
        with pa.memory_map(str(file)) as source:
            table = ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException):
        return None
    if (table.schema.metadata or {}).get(_KEY) != key.encode():
        return None
    try:
        os.utime(file)  # recently used: evicted last
    except OSError:
        pass
    return table.replace_schema_metadata(_without_key(table.schema.metadata))


def store(key: Optional[str], table: Any, path: Path) -> Any:
    """Keep `table` (read from `path`) under `key`; returns `table`. A
    background thread writes the file while the run goes on (the rest of a
    load and the model's build are one-threaded); `flush()` waits for it."""
    folder = cache_dir()
    if key is None or folder is None or table.nbytes > budget_bytes():
        return table
    source = str(Path(path).resolve())
    thread = threading.Thread(target=_write, args=(folder, key, source, table), name="dlcli-table-cache")
    with _LOCK:
        _PENDING.append(thread)
    thread.start()
    return table


def flush() -> None:
    """Wait for the tables being written."""
    with _LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    for thread in pending:
        thread.join()


def _write(folder: Path, key: str, source: str, table: Any) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
        os.close(fd)
        meta = {**(table.schema.metadata or {}), _KEY: key.encode(), _SOURCE: source.encode(),
                _ROWS: str(table.num_rows).encode()}
        with pa.OSFile(tmp, "wb") as sink, ipc.new_file(sink, table.schema.with_metadata(meta)) as writer:
            writer.write_table(table)
        os.replace(tmp, folder / f"{key}.arrow")
        tmp = None
        evict(folder, budget_bytes())
    except Exception:  # noqa: BLE001 - a cache is best effort: a table not kept is parsed next time
        pass
    finally:
        if tmp is not None:
            _remove(tmp)


def evict(folder: Path, budget: int) -> None:
    """Remove the least recently used tables until the rest fit `budget`
    bytes, and temporary files a dead writer left."""
    entries = []
    now = time.time()
    for entry in os.scandir(folder):
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.name.endswith(".tmp") and now - st.st_mtime > _STALE_TMP_S:
            _remove(entry.path)
        elif entry.name.endswith(".arrow"):
            entries.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, file in sorted(entries):
        if total <= budget:
            break
        _remove(file)
        total -= size


def _remove(file: str) -> None:
    try:
        os.unlink(file)
    except OSError:
        pass


def _without_key(meta: Optional[dict]) -> Optional[dict]:
    rest = {k: v for k, v in (meta or {}).items() if k not in (_KEY, _SOURCE, _ROWS)}
    return rest or None


def entries() -> list[dict[str, Any]]:
    """The cached tables, most recently used first: `{"file", "source",
    "rows", "columns", "bytes", "last_used"}` (source: the CSV it was parsed
    from; last_used: a POSIX time)."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return []
    import pyarrow as pa
    import pyarrow.ipc as ipc

    out = []
    for file in folder.glob("*.arrow"):
        try:
            st = file.stat()
            with pa.memory_map(str(file)) as source:
                schema = ipc.open_file(source).schema
        except (OSError, pa.ArrowException):
            continue
        meta = schema.metadata or {}
        if meta.get(_KEY) != file.stem.encode():
            continue
        out.append({"file": str(file), "source": meta.get(_SOURCE, b"").decode(errors="replace"),
                    "rows": int(meta[_ROWS]) if meta.get(_ROWS, b"").isdigit() else None, "columns": len(schema.names),
                    "bytes": st.st_size, "last_used": st.st_mtime})
    return sorted(out, key=lambda e: -e["last_used"])


def clear() -> tuple[int, int]:
    """Remove every cached table (and temporary file); (tables, bytes) removed."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return 0, 0
    tables = size = 0
    for entry in os.scandir(folder):
        if entry.name.endswith((".arrow", ".tmp")) and entry.is_file(follow_symlinks=False):
            try:
                n = entry.stat().st_size
                os.unlink(entry.path)
            except OSError:
                continue
            tables += entry.name.endswith(".arrow")
            size += n
    return tables, size
