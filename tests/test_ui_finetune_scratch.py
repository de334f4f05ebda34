"""`finetune --weights none`: a warning and a note that nothing is
transferred, and BatchNormalization that trains in phase 2 (frozen
statistics only make sense for pretrained weights)."""

from __future__ import annotations

import json

import keras
import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.finetune import finetune_config, from_scratch_notes
from dlcli.model import build_model, compile_model, find_backbone
from dlcli.training.phases import enter_fine_tune_phase as _enter_fine_tune_phase


def _folder(tmp_path):
    res = CliRunner().invoke(app, ["demo-data", str(tmp_path / "pets"), "--per-class", "6", "--size", "32", "--no-corrupt"])
    assert res.exit_code == 0
    return tmp_path / "pets"


def test_phase_two_trains_batchnorm_of_a_random_backbone(tmp_path):
    cfg = finetune_config("mobilenet", _folder(tmp_path), weights="none", image_size=32, unfreeze="1.0")
    assert from_scratch_notes(cfg)
    model = build_model(cfg, (32, 32, 3), num_classes=2)
    compile_model(model, cfg)
    _enter_fine_tune_phase(model, cfg)
    bns = [layer for layer in find_backbone(model).layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.trainable for layer in bns)


@pytest.mark.slow
def test_weights_none_warns_and_notes_it(tmp_path):
    folder = _folder(tmp_path)
    res = CliRunner().invoke(app, ["finetune", "--base", "mobilenet", str(folder), "--weights", "none", "-e", "1",
                                   "--fine-tune-epochs", "1", "--image-size", "32", "-o", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "warning: --weights none" in res.stderr and "nothing to transfer" in res.stderr
    (run,) = (tmp_path / "runs").glob("*/1")
    notes = json.loads((run / "metrics.json").read_text())["notes"]
    assert any("BatchNormalization" in n for n in notes)
