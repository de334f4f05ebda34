"""The shipped data configs (segmentation, denoising autoencoder, text,
audio, two inputs and two outputs) train, evaluate and predict on the
stand-in data `dlcli demo-data --kind ...` writes, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


def _lines(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _demo(runner, app, tmp: Path, kind: str) -> Path:
    result = runner.invoke(app, ["demo-data", str(tmp / kind), "--kind", kind, "--json"])
    return Path(_json(result)["path"])


def _train(runner, app, tmp: Path, config: str, *sets: str, epochs: int) -> tuple[Path, dict]:
    args = ["train", str(CONFIGS / config), "--output", str(tmp / "runs"), "--epochs", str(epochs), "--json"]
    for s in sets:
        args += ["--set", s]
    info = _json(runner.invoke(app, args))
    return tmp / "runs" / info["name"] / "1", info


@pytest.mark.slow
def test_unet_segments_generated_shapes(runner, app, tmp_path):
    from PIL import Image

    data = _demo(runner, app, tmp_path, "shapes")
    run, _ = _train(runner, app, tmp_path, "unet_shapes.yaml", f"data.path={data}/images", f"data.masks={data}/masks",
                    epochs=12)
    seg = _json(runner.invoke(app, ["evaluate", str(run), "--json"]))["segmentation"]
    background = seg["per_class"][0]["pixels"] / seg["pixels"]
    assert seg["pixel_accuracy"] > background + 0.03  # beyond calling every pixel background
    assert seg["mean_iou"] > 0.4 and all(c["iou"] is not None for c in seg["per_class"])
    image = data / "images" / "shape_0000.png"
    (rec,) = _lines(runner.invoke(app, ["predict", str(run), str(image), "--save-dir", str(tmp_path / "masks"), "--json"]))
    mask = np.asarray(Image.open(rec["mask"]))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1, 2}
    assert sum(rec["pixels"].values()) == pytest.approx(1.0, abs=1e-3)
    # Without --json the predictions table is what the command prints: on stdout, whole cells.
    res = runner.invoke(app, ["predict", str(run), str(image), "--save-dir", str(tmp_path / "masks2")])
    assert res.exit_code == 0 and str(image) in res.stdout and "shape_0000.mask.png" in res.stdout
    assert "1 prediction(s)" in res.stderr and "shape_0000" not in res.stderr


@pytest.mark.slow
def test_denoising_autoencoder_reconstructs_better_than_its_noisy_input(runner, app, tmp_path):
    data = _demo(runner, app, tmp_path, "denoise")
    run, _ = _train(runner, app, tmp_path, "denoise_digits.yaml", f"data.path={data}", epochs=5)
    out = _json(runner.invoke(app, ["evaluate", str(run), "--json"]))
    assert out["kind"] == "reconstruction"
    with np.load(data) as f:
        noisy_mse = float(np.mean((f["x_test"] - f["clean_test"]) ** 2))
    assert out["reconstruction"]["mse"] < 0.8 * noisy_mse
    records = _lines(runner.invoke(app, ["predict", str(run), str(data), "--json"]))
    assert len(records) == 1437 and all(r["reconstruction_error"] >= 0 for r in records[:5])


@pytest.mark.slow
def test_text_classifier_on_raw_strings(runner, app, tmp_path):
    data = _demo(runner, app, tmp_path, "texts")
    run, info = _train(runner, app, tmp_path, "text_reviews.yaml", f"data.path={data}", epochs=15)
    assert info["test"]["accuracy"] >= 0.9
    assert any("adapted text_vectorization" in n for n in info["data"]["notes"])
    review = tmp_path / "mine.txt"
    review.write_text("A superb and wonderful film, the actors were brilliant.\n")
    (rec,) = _lines(runner.invoke(app, ["predict", str(run), str(review), "--json"]))
    assert rec["class"] == "pos"


@pytest.mark.slow
def test_audio_classifier_on_generated_tones(runner, app, tmp_path):
    data = _demo(runner, app, tmp_path, "tones")
    run, info = _train(runner, app, tmp_path, "audio_tones.yaml", f"data.path={data}", epochs=5)
    assert info["test"]["accuracy"] >= 0.9
    records = _lines(runner.invoke(app, ["predict", str(run), str(data / "high" / "high_0000.wav"),
                                         str(data / "low" / "low_0003.wav"), "--json"]))
    assert [r["class"] for r in records] == ["high", "low"]


@pytest.mark.slow
def test_two_input_two_output_config(runner, app, tmp_path):
    data = _demo(runner, app, tmp_path, "multi")
    run, info = _train(runner, app, tmp_path, "multi_output.yaml", f"data.path={data}", epochs=8)
    assert info["test"]["kind_accuracy"] > 0.9 and info["test"]["value_mae"] < 0.6
    out = _json(runner.invoke(app, ["evaluate", str(run), "--json"]))
    assert set(out["outputs"]) == {"kind", "value"}
    # What a person reads: each output's figures under its own name.
    shown = runner.invoke(app, ["evaluate", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "output kind: per class" in shown.stdout and "macro avg" in shown.stdout
    r2 = out["outputs"]["value"]["regression"]["r2"]
    assert "output value: regression" in shown.stdout and f"{r2:.4f}" in shown.stdout
    records = _lines(runner.invoke(app, ["predict", str(run), str(data), "--json"]))
    assert set(records[0]["outputs"]) == {"kind", "value"}
