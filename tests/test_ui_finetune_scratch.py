"""`finetune --weights none`: a warning and a note that nothing is
transferred, and BatchNormalization that trains in phase 2 (frozen
statistics only make sense for pretrained weights)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image
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
    # Moving statistics that keep up with a short run (the application's own 0.99 would not).
    assert all(layer.momentum == 0.9 for layer in bns)


def test_a_random_backbone_is_not_frozen(tmp_path):
    cfg = finetune_config("mobilenet", _folder(tmp_path), weights="none", image_size=32)
    model = build_model(cfg, (32, 32, 3), num_classes=2)
    backbone = find_backbone(model)
    assert backbone.trainable and all(layer.trainable for layer in backbone.layers)
    # Phase 2 keeps every layer training: --unfreeze protects pretrained layers, and there are none.
    compile_model(model, cfg)
    _enter_fine_tune_phase(model, cfg)
    assert all(layer.trainable for layer in backbone.layers)


def _red_blue(root, per_class=150, size=32):
    """Two classes a from-scratch network can learn in a few epochs: a red
    or a blue cast over the same noise."""
    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.uniform(40, 120, size=(size, size, 3))
            img[..., channel] += rng.uniform(80, 130)
            Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_weights_none_learns_from_scratch(tmp_path):
    """Before: frozen random backbone (head on random features) and
    BatchNormalization statistics that never caught up: val_accuracy 0.5
    for every epoch. Now the validation accuracy climbs well above chance."""
    folder = _red_blue(tmp_path / "colours")
    res = CliRunner().invoke(app, ["finetune", "--base", "mobilenet", str(folder), "--weights", "none",
                                   "--image-size", "32", "-e", "8", "--fine-tune-epochs", "0", "-b", "16",
                                   "--no-augment", "--set", "model.layers.0.Backbone.alpha=0.25",
                                   "-o", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    assert "nothing to transfer" in res.stderr
    (run,) = (tmp_path / "runs").glob("*/1")
    history = (run / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    val = [float(row.split(",")[header.index("val_accuracy")]) for row in history[1:]]
    assert val[0] <= 0.6 and val[-1] >= 0.7, val


@pytest.mark.slow
def test_weights_none_warns_and_notes_it(tmp_path):
    folder = _folder(tmp_path)
    res = CliRunner().invoke(app, ["finetune", "--base", "mobilenet", str(folder), "--weights", "none", "-e", "1",
                                   "--fine-tune-epochs", "1", "--image-size", "32", "-o", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "warning: --weights none" in res.stderr and "nothing to transfer" in res.stderr
    assert "phase 1 (the whole backbone (random weights) and the head)" in res.stderr  # not "backbone frozen"
    (run,) = (tmp_path / "runs").glob("*/1")
    notes = json.loads((run / "metrics.json").read_text())["notes"]
    assert any("BatchNormalization" in n for n in notes)
