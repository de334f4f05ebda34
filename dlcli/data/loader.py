"""`load_data`: pick the source named in `data.source` and load it."""

from __future__ import annotations

import os
from typing import Any

from dlcli.data._util import cfg_error, did_you_mean, short_list
from dlcli.data.bundle import DataBundle
from dlcli.data.sources import KERAS_SOURCES, SKLEARN_SOURCES, SOURCES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_data(cfg: Any) -> DataBundle:
    """See `dlcli.data.load_data`."""
    source = cfg.data.source
    if source not in SOURCES:
        raise cfg_error(
            cfg, "data.source", f"unknown data source {source!r}",
            hint=did_you_mean(source, SOURCES) or f"sources are {short_list(list(SOURCES), 20)}",
        )
    if cfg.data.ctc is not None and source != "ctc_digits":
        raise cfg_error(cfg, "data.ctc", f"data.ctc configures the ctc_digits source, not {source}")
    if source in SKLEARN_SOURCES:
        from dlcli.data.builtin import sklearn_source

        return sklearn_source(cfg, source)
    if source in KERAS_SOURCES:
        from dlcli.data.keras_sets import keras_source

        return keras_source(cfg, source)
    if source == "image_dir":
        from dlcli.data.images import image_dir_source

        return image_dir_source(cfg)
    if source == "csv":
        from dlcli.data.tabular import csv_source

        return csv_source(cfg)
    if source == "npz":
        from dlcli.data.tabular import npz_source

        return npz_source(cfg)
    from dlcli.data.ctc import ctc_digits_source

    return ctc_digits_source(cfg)
