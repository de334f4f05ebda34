"""`load_data`: look `data.source` up in the registry and run its loader."""

from __future__ import annotations

from typing import Any

from dlcli.data.bundle import DataBundle
from dlcli.data.registry import check_data_keys


def load_data(cfg: Any) -> DataBundle:
    """See `dlcli.data.load_data`."""
    return check_data_keys(cfg).load(cfg)
