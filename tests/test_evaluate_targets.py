"""`dlcli evaluate` on a segmentation run (U-Net on generated shapes) and
an autoencoder run (denoising digits), the shipped configs on the demo-data
generator's stand-ins: per-class IoU under the masks' class names, sample
grids, reconstruction error pictures; class names from data.classes or the
mask folder's classes.txt."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli import app

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NAMES = ["background", "disc", "square"]
runner = CliRunner()


def _ok(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


def _train(root: Path, config: str, epochs: int, *sets: str) -> Path:
    args = ["train", str(CONFIGS / config), "--output", str(root / "runs"), "--epochs", str(epochs), "--json"]
    for s in sets:
        args += ["--set", s]
    return Path(_ok(runner.invoke(app, args))["run_dir"])


def _png(path: Path, min_size: tuple[int, int]) -> np.ndarray:
    """The PNG's RGB pixels, after checking it is a PNG at least this big."""
    from PIL import Image

    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1], im.size
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from dlcli.data.demo import make_demo_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_demo_shapes(root / "shapes", n=40)
    return root / "shapes"


@pytest.fixture(scope="module")
def seg_run(shapes, tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("seg"), "unet_shapes.yaml", 3, f"data.path={shapes}/images",
                  f"data.masks={shapes}/masks")


def _test_predictions(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(true masks, predicted classes) of the run's test split, straight
    from Keras: the saved model's predict on the split's images."""
    import keras

    from dlcli.config import load_config
    from dlcli.data import load_data

    bundle = load_data(load_config(run / "config.yaml"))
    model = keras.models.load_model(run / "model.keras")
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in bundle.test))
    return np.concatenate(ys)[..., 0], model.predict(np.concatenate(xs), verbose=0).argmax(-1)


@pytest.mark.slow
def test_segmentation_iou_per_named_class_table_and_sample_grid(seg_run):
    result = _ok(runner.invoke(app, ["evaluate", str(seg_run), "--json"]))
    seg = result["segmentation"]
    truth, predicted = _test_predictions(seg_run)
    assert result["data"]["samples"] == len(truth) and seg["pixels"] == truth.size
    assert [c["class"] for c in seg["per_class"]] == NAMES  # from the demo's masks/classes.txt
    for k, row in enumerate(seg["per_class"]):
        union = np.sum((truth == k) | (predicted == k))
        assert row["iou"] == pytest.approx(np.sum((truth == k) & (predicted == k)) / union)
        assert row["pixels"] == int(np.sum(truth == k))
    assert seg["pixel_accuracy"] == pytest.approx(np.mean(truth == predicted))
    saved = json.loads((seg_run / "evaluation.json").read_text())
    assert saved["segmentation"] == seg and saved["plots"]["segmentation"] == str(seg_run / "plots" / "segmentation.png")

    pixels = _png(seg_run / "plots" / "segmentation.png", (400, 800))  # 6 samples x (image | true | predicted)
    tab10 = {"background": (31, 119, 180), "disc": (255, 127, 14), "square": (44, 160, 44)}
    for name, colour in tab10.items():  # every class occurs in the true masks drawn
        assert np.all(pixels == colour, axis=-1).sum() > 200, name

    table = runner.invoke(app, ["evaluate", str(seg_run)])
    assert table.exit_code == 0, table.output
    for row in seg["per_class"]:
        assert f"{row['class']}" in table.output and f"{row['iou']:.3f}" in table.output
    assert "mean_iou" in table.output and "plots/segmentation.png" in table.output


@pytest.mark.slow
def test_bare_model_file_segmentation_pictures_beside_it_with_the_datas_names(seg_run, shapes, tmp_path):
    model = tmp_path / "seg.keras"
    shutil.copy(seg_run / "model.keras", model)
    data = f"source=image_dir,path={shapes}/images,masks={shapes}/masks"
    result = _ok(runner.invoke(app, ["evaluate", str(model), "--data", data, "--json"]))
    assert result["kind"] == "segmentation" and result["data"]["samples"] == 40
    assert [c["class"] for c in result["segmentation"]["per_class"]] == NAMES
    assert result["plots"] == {"segmentation": str(tmp_path / "seg.segmentation.png")}
    _png(tmp_path / "seg.segmentation.png", (400, 800))
    assert (tmp_path / "seg.evaluation.json").is_file()


def test_mask_class_names_from_config_file_or_values(shapes, tmp_path):
    from dlcli.config import config_from_dict
    from dlcli.data import load_data

    masks = tmp_path / "masks"
    shutil.copytree(shapes / "masks", masks)
    base = {"name": "seg", "model": {"layers": ["Identity"]},
            "data": {"source": "image_dir", "path": str(shapes / "images"), "masks": str(masks), "image_size": [32, 32]}}

    def names(**data) -> list[str]:
        return load_data(config_from_dict({**base, "data": {**base["data"], **data}})).spec.class_names

    assert names() == NAMES  # classes.txt beside the masks
    assert names(classes=["bg", "round", "box", "unused"]) == ["bg", "round", "box", "unused"]  # the config wins
    (masks / "classes.txt").unlink()
    assert names() == ["0", "1", "2"]


@pytest.mark.parametrize("case", ["too_few", "twice", "file_twice"])
def test_bad_mask_class_names_are_one_line_exit_2_nothing_written(case, shapes, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(shapes / "masks", masks)
    sets = [f"data.path={shapes}/images", f"data.masks={masks}"]
    if case == "too_few":
        sets.append("data.classes=[bg, disc]")
    elif case == "twice":
        sets.append("data.classes=[bg, disc, disc]")
    else:
        (masks / "classes.txt").write_text("bg\ndisc\nbg\n")
    args = ["train", str(CONFIGS / "unet_shapes.yaml"), "--output", str(tmp_path / "runs"), "--epochs", "1"]
    for s in sets:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    assert ("values up to 2" if case == "too_few" else "twice") in lines[0]
    assert ("classes.txt" in lines[0]) == (case == "file_twice")
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def denoise(tmp_path_factory) -> tuple[Path, Path]:
    from dlcli.data.demo import make_demo_denoise

    root = tmp_path_factory.mktemp("denoise")
    make_demo_denoise(root / "denoise.npz")
    return root / "denoise.npz", _train(root, "denoise_digits.yaml", 2, f"data.path={root / 'denoise.npz'}")


@pytest.mark.slow
def test_autoencoder_error_matches_numpy_and_pictures_best_and_worst(denoise):
    import keras

    data, run = denoise
    result = _ok(runner.invoke(app, ["evaluate", str(run), "--json"]))
    with np.load(data) as f:
        x, clean = f["x_test"], f["clean_test"]
    recon = keras.models.load_model(run / "model.keras").predict(x, verbose=0)
    per_sample = np.mean((recon.reshape(len(x), -1) - clean.reshape(len(x), -1)) ** 2, axis=1)
    rec = result["reconstruction"]
    assert rec["mse"] == pytest.approx(per_sample.mean(), rel=1e-4)
    assert rec["sample_mse_p90"] == pytest.approx(np.quantile(per_sample, 0.9), rel=1e-4)
    plots = run / "plots"
    assert result["plots"] == {"reconstructions": str(plots / "reconstructions.png"),
                               "reconstruction_error": str(plots / "reconstruction_error.png")}
    _png(plots / "reconstructions.png", (500, 1500))  # 4 best + 4 worst rows, input | target | reconstruction
    _png(plots / "reconstruction_error.png", (500, 300))

    table = runner.invoke(app, ["evaluate", str(run)])
    assert table.exit_code == 0, table.output
    assert f"{rec['sample_mse_median']:.4f}" in table.output and "reconstruction mae" in table.output


def test_extremes_are_the_lowest_then_highest_errors_each_once():
    from dlcli.report_targets import _extremes

    errors = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    assert _extremes(errors, 2) == [("best 1", 1), ("best 2", 5), ("worst 1", 2), ("worst 2", 4)]
    assert _extremes(errors[:3], 4) == [("best 1", 1), ("worst 1", 2)]


def test_reconstruction_pictures_of_sequences_and_plain_autoencoders(tmp_path):
    from dlcli.report_targets import plot_error_histogram, plot_reconstructions

    rng = np.random.default_rng(0)
    series = rng.normal(size=(10, 30, 1))
    errors = rng.uniform(size=10)
    plot_reconstructions(None, series, series + 0.1, errors, tmp_path / "curves.png", title="curves")
    curves = _png(tmp_path / "curves.png", (500, 600))
    images = rng.uniform(size=(10, 8, 8, 1))
    plot_reconstructions(images, images, images * 0.9, errors, tmp_path / "images.png", title="images")
    two_columns = _png(tmp_path / "images.png", (200, 800))
    assert two_columns.shape[1] < curves.shape[1]  # input == target: no input column
    plot_error_histogram(errors, tmp_path / "hist.png", title="hist")
    _png(tmp_path / "hist.png", (500, 300))
