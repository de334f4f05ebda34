"""Every shipped config in configs/ trains for one epoch with `dlcli train`
and leaves a complete run folder (slow: one real training per config).

Offline stand-ins where a config needs a download: a small random
mnist.npz in a temporary KERAS_HOME (Keras's loader pointed at it, as its
checksum would reject it), a generated image folder for the fine-tune
config, whose backbone then starts from random weights (`weights: null`:
ImageNet weights are a download), and for the Xception and transformer
configs; random token ids and series in the npz layout their comments
describe.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import install_fake_mnist

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# Per config: overrides that keep one epoch short on 2 CPU cores (fewer
# samples or pixels; the layers, loss, optimizer and metrics stay).
QUICK: dict[str, list[str]] = {
    "ctc_digits": ["data.ctc.samples=600"],
    "finetune_cats_dogs": [
        "model.layers.0.Backbone.weights=null",
        "data.image_size=[96, 96]",
        "data.batch_size=8",
        "finetune.fine_tune_epochs=1",
    ],
    # The parameter counts at the examples' own shapes: test_model_configs.py.
    "xception_cats_dogs": ["data.image_size=[32, 32]", "data.batch_size=8"],
    "transformer_text": ["data.batch_size=16"],
}


@pytest.fixture
def offline_inputs(tmp_path, monkeypatch):
    """Work in tmp_path with the offline stand-ins in place."""
    from dlcli.data import make_demo_image_folder

    monkeypatch.chdir(tmp_path)
    install_fake_mnist(tmp_path, monkeypatch)
    make_demo_image_folder(tmp_path / "cats_dogs", n_per_class=12, size=64)
    make_demo_image_folder(tmp_path / "PetImages", n_per_class=12, size=40, corrupt=False)
    rng = np.random.default_rng(0)
    # IMDB reviews as token ids (200 per review), FordA as short series.
    np.savez(tmp_path / "imdb_200.npz", x=rng.integers(1, 20000, (48, 200)), y=rng.integers(0, 2, 48))
    np.savez(tmp_path / "forda.npz", x=rng.normal(size=(48, 40, 1)).astype("float32"), y=rng.integers(0, 2, 48))
    return tmp_path


def test_every_config_is_covered():
    names = {c.stem for c in CONFIGS}
    assert len(names) >= 8 and set(QUICK) <= names


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_config_trains_one_epoch(config, runner, app, offline_inputs):
    import keras
    import yaml

    args = ["train", str(config), "--epochs", "1", "--json"]
    for override in QUICK.get(config.stem, []):
        args += ["--set", override]
    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    name = yaml.safe_load(config.read_text())["name"]
    run_dir = offline_inputs / "runs" / name / "1"
    assert Path(out["run_dir"]) == Path("runs") / name / "1"
    for f in ("config.yaml", "model.keras", "history.csv", "metrics.json", "data_spec.json", "plots/history.png"):
        assert (run_dir / f).is_file(), f
    assert (run_dir / "checkpoints" / "state.json").is_file()
    epochs = 1 + (1 if config.stem in QUICK and "finetune.fine_tune_epochs=1" in QUICK[config.stem] else 0)
    with open(run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    if epochs == 2:  # two phases: the phase column says which
        assert [r["phase"] for r in rows] == ["1", "2"]
    assert out["epochs_completed"] == epochs
    assert out["test"] and all(np.isfinite(v) for v in out["test"].values())
    # The model loads as any Keras user would load it: no code runs.
    import dlcli.model  # noqa: F401 - registers dlcli's serialisable classes

    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.count_params() == out["params"]["total"]
