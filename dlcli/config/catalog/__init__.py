"""Keras names and arguments, checked without importing TensorFlow.

- `generate` (imports Keras): builds the catalogue from the installed
  Keras; `python -m dlcli.config.catalog` writes `keras_catalog.json`.
- `store`: finds the catalogue for the installed Keras (shipped, cached,
  or generated where Keras is loaded anyway).
- `check`, `check_layers`: the TensorFlow-free checks `dlcli validate`
  runs (names, arguments, values, nested layers, dotted paths).
"""

from __future__ import annotations

from dlcli.config.catalog.check import (
    EXTRA_LOSSES,
    EXTRA_METRICS,
    check_callback,
    check_config,
    check_data,
    check_loss,
    check_metric,
    check_optimizer,
    check_schedule,
)
from dlcli.config.catalog.check_layers import (
    BACKBONE,
    BACKBONE_ARGS,
    EXTRA_LAYERS,
    NESTED_LAYER_ARGS,
    NESTED_LAYER_LIST_ARGS,
    REF_KEYS,
    as_layer_entry,
    backbone_target,
    check_layer_kwargs,
    check_layer_name,
    value_problem,
)
from dlcli.config.catalog.store import FORMAT, SHIPPED_CATALOG, Catalog, cache_path, ensure_catalog, get_catalog
from dlcli.config.graph import parse_entry
from dlcli.config.imports import is_import_path

__all__ = [
    "BACKBONE", "BACKBONE_ARGS", "EXTRA_LAYERS", "EXTRA_LOSSES", "EXTRA_METRICS", "FORMAT", "NESTED_LAYER_ARGS",
    "NESTED_LAYER_LIST_ARGS", "REF_KEYS", "SHIPPED_CATALOG", "Catalog", "as_layer_entry", "backbone_target",
    "cache_path", "check_callback", "check_config", "check_data", "check_layer_kwargs", "check_layer_name",
    "check_loss", "check_metric", "check_optimizer", "check_schedule", "ensure_catalog", "get_catalog",
    "is_import_path", "parse_entry", "value_problem",
]
