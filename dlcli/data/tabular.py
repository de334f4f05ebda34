"""A helper the file sources share: `data.path` as an existing file.

(The csv and parquet sources are `dlcli.data.tables`; npz is
`dlcli.data.npz`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from dlcli.data._util import cfg_error


def _data_path(cfg: Any, kind: str, suffixes: Sequence[str]) -> Path:
    if not cfg.data.path:
        raise cfg_error(cfg, "data.path", f"data.source {kind} needs data.path: the {kind} file to read")
    path = Path(cfg.data.path).expanduser()
    if not path.exists():
        raise cfg_error(cfg, "data.path", f"{path} does not exist")
    if not path.is_file():
        raise cfg_error(cfg, "data.path", f"{path} is not a file (data.source {kind} reads one {' / '.join(suffixes)} file)")
    return path
