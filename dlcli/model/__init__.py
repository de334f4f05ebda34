"""The model stage: build, compile and describe Keras models from a config.

Importing this package imports Keras (the CLI imports it lazily) and
registers dlcli's serialisable objects (`BackbonePreprocess`,
`CTCSequenceAccuracy`, `PositionEmbedding`), so models dlcli saved load with `safe_mode=True`.
"""

from __future__ import annotations

from dlcli.model.backbones import BackbonePreprocess, find_backbone, list_backbones
from dlcli.model.builder import build_model, make_layer
from dlcli.model.ctc import BLANK_INDEX, PAD_VALUE, CTCSequenceAccuracy, ctc_greedy_decode
from dlcli.model.io import load_model
from dlcli.model.layers import PositionEmbedding
from dlcli.model.resolve import compile_model, resolve_loss, resolve_metrics, resolve_optimizer
from dlcli.model.summary import summarize

__all__ = [
    "BLANK_INDEX",
    "PAD_VALUE",
    "PositionEmbedding",
    "BackbonePreprocess",
    "CTCSequenceAccuracy",
    "build_model",
    "compile_model",
    "ctc_greedy_decode",
    "find_backbone",
    "list_backbones",
    "load_model",
    "make_layer",
    "resolve_loss",
    "resolve_metrics",
    "resolve_optimizer",
    "summarize",
]
