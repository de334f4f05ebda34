"""Evaluate and predict work on a run of every shipped config (slow: each
config trains for one epoch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from conftest import install_fake_mnist
from typer.testing import CliRunner

from dlcli.cli import app

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
# Per config: the overrides of tests/test_train_configs.py that keep one
# epoch short on 2 CPU cores and offline; the layers, loss and metrics stay.
from test_train_configs import QUICK  # noqa: E402

runner = CliRunner()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Work in tmp_path, with a small random mnist.npz standing in for
    Keras's download and a generated cats_dogs/ image folder.

    Keras's loader checks the file's SHA-256 against the real MNIST and
    re-downloads on a mismatch (impossible offline), so the loader itself is
    pointed at the fake file; dlcli.data still goes through
    `keras.datasets.mnist.load_data` as it would with the real one.
    """
    from dlcli.data import make_demo_image_folder

    monkeypatch.chdir(tmp_path)
    make_demo_image_folder(tmp_path / "cats_dogs", n_per_class=12, size=64, corrupt=False)
    make_demo_image_folder(tmp_path / "PetImages", n_per_class=12, size=40, corrupt=False)
    rng = np.random.default_rng(0)
    # IMDB reviews as token ids (200 per review), FordA as short series.
    np.savez(tmp_path / "imdb_200.npz", x=rng.integers(1, 20000, (48, 200)), y=rng.integers(0, 2, 48))
    np.savez(tmp_path / "forda.npz", x=rng.normal(size=(48, 40, 1)).astype("float32"), y=rng.integers(0, 2, 48))
    path = install_fake_mnist(tmp_path, monkeypatch)
    return path


def _raw_samples(spec: dict, fake_mnist: Path) -> np.ndarray:
    """A few samples of the run's source as a user would have them (raw
    pixels or unscaled features)."""
    import sklearn.datasets as skd

    source = spec["source"]
    if source == "image_dir":
        files = sorted(Path(spec["path"]).rglob("*.*"))[:6]
        return _tf_images(files, spec["image_size"])
    if source == "ctc_digits":
        # Strings of handwritten digits side by side, as the source builds them.
        digits = skd.load_digits().images
        n = int(spec["ctc"]["length"])
        return np.stack([np.hstack(digits[i : i + n]) for i in range(0, 6 * n, n)])[..., None].astype(np.float32)
    if source == "mnist":
        with np.load(fake_mnist) as f:
            return f["x_test"][:6].astype(np.float32)
    if source == "npz":
        with np.load(spec["path"]) as f:
            return f["x"][:6]
    if source == "digits":
        return skd.load_digits().images[:6].astype(np.float32)
    return getattr(skd, f"load_{source}")().data[:6].astype(np.float32)


def _tf_images(files, size):
    import tensorflow as tf

    return np.stack([
        tf.image.resize(tf.io.decode_image(tf.io.read_file(str(f)), channels=3, expand_animations=False), size).numpy()
        for f in files
    ])


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_evaluate_and_predict_every_shipped_config(config, tmp_path, fake_mnist):
    args = ["train", str(config), "--epochs", "1", "--output", str(tmp_path / "runs"), "--json"]
    for override in QUICK.get(config.stem, []):
        args += ["--set", override]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    run = Path(trained["run_dir"])

    res = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert set(result["metrics"]) == set(trained["test"])
    for k, v in trained["test"].items():
        assert result["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-6)
    assert (run / "evaluation.json").is_file()
    spec = json.loads((run / "data_spec.json").read_text())
    if spec["task"] in ("classification", "binary"):
        assert (run / "plots" / "confusion_matrix.png").is_file()
        assert sum(map(sum, result["confusion_matrix"])) == result["data"]["samples"]
    elif spec["task"] == "ctc":
        assert 0.0 <= result["ctc"]["sequence_accuracy"] <= 1.0 and result["ctc"]["character_error_rate"] >= 0
    else:
        assert result["regression"]["mse"] >= 0

    x = _raw_samples(spec, fake_mnist)
    np.savez(tmp_path / "inputs.npz", x=x)
    inputs = [str(tmp_path / "inputs.npz")]
    if spec.get("input_kind") == "image" and spec["source"] != "image_dir":
        from PIL import Image

        low, high = spec.get("pixel_range") or (0, 255)
        folder = tmp_path / "images"
        folder.mkdir()
        for i, img in enumerate(x[:3]):
            pixels = np.clip((img.reshape(img.shape[:2]) - low) * 255.0 / (high - low), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"sample{i}.png")
        inputs.append(str(folder))
    res = runner.invoke(app, ["predict", str(run), *inputs, "--json", "--top-k", "2"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == len(x) + (3 if len(inputs) > 1 else 0)
    assert not any("error" in r for r in records)
    if spec["task"] in ("classification", "binary"):
        assert all(r["class"] in spec["class_names"] and 0.0 <= r["probability"] <= 1.0 for r in records)
    elif spec["task"] == "ctc":
        assert all(set(r["text"]) <= set("0123456789") for r in records)
    else:
        assert all(np.isfinite(r["value"]) for r in records)
