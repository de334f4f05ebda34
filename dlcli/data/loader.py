"""`load_data`: look `data.source` up in the registry and run its loader."""

from __future__ import annotations

import os
from typing import Any

from dlcli.data.bundle import DataBundle
from dlcli.data.registry import check_data_keys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_data(cfg: Any) -> DataBundle:
    """See `dlcli.data.load_data`."""
    return check_data_keys(cfg).load(cfg)
