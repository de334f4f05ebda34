"""`dlcli finetune` end to end: ImageNet weights from Keras's cache, the two
phases (what is frozen, what changes), resume into phase 2, repeating a
fine-tune with `dlcli train`, and the accuracy a fine-tune reaches.

Everything runs offline: the "ImageNet" file is one the test writes into a
temporary KERAS_HOME under the name Keras asks for, and Keras's downloader
is replaced by one that fails, so a file that is not there cannot be
fetched behind the test's back.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import urllib.error
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.slow

IMAGE_SIZE = 128  # a size Keras has MobileNet ImageNet weights for
IMAGENET_FILE = f"mobilenet_1_0_{IMAGE_SIZE}_tf_no_top.h5"  # keras/src/applications/mobilenet.py


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty temporary KERAS_HOME, and no network for Keras's downloader."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    from keras.src.utils import file_utils

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return home


def cache_imagenet_mobilenet(home: Path):
    """Write MobileNet weights where Keras looks for the ImageNet ones.

    Returns the model whose weights were written (Keras's own file layout:
    a legacy .h5 model file, which `load_weights` reads by layer order).
    """
    import keras

    keras.utils.set_random_seed(123)
    model = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    # Keras initialises BatchNormalization statistics to 0 and 1; give them
    # distinct values so the test can tell if phase 2 moved them.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(np.random.default_rng(0).normal(0, 0.1, mean.shape).astype("float32"))
            var.assign(np.random.default_rng(1).uniform(0.5, 2.0, var.shape).astype("float32"))
    (home / "models").mkdir(parents=True, exist_ok=True)
    model.save(home / "models" / IMAGENET_FILE)
    return model


def read_history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def backbone_of(path: Path):
    from dlcli.model import find_backbone, load_model

    model = load_model(path, compile=False)
    return model, find_backbone(model)


def invoke(runner, app, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_imagenet_from_cache_phase_one_freezes_phase_two_trains_top_layers(runner, app, tmp_path, keras_home, monkeypatch):
    import keras

    from dlcli.data import make_demo_image_folder

    monkeypatch.chdir(tmp_path)
    make_demo_image_folder(tmp_path / "pets", n_per_class=6, size=64, corrupt=True)

    # No weights file in the cache: a clear error naming the file, nothing written.
    missing = runner.invoke(app, ["finetune", "--base", "mobilenet", "pets", "--image-size", str(IMAGE_SIZE), "-o", "runs"])
    assert missing.exit_code == 2
    assert IMAGENET_FILE in missing.stderr and str(keras_home / "models") in missing.stderr
    assert not (tmp_path / "runs").exists()

    imagenet = cache_imagenet_mobilenet(keras_home)

    # Phase 1 only: the head trains, the backbone is frozen.
    m1 = invoke(runner, app, [
        "finetune", "--base", "mobilenet", "pets", "--image-size", str(IMAGE_SIZE), "--epochs", "1",
        "--fine-tune-epochs", "0", "--unfreeze", "10", "--batch-size", "4", "-o", "runs", "--json",
    ])
    run = Path(m1["run_dir"])
    assert run == Path("runs/mobilenet_pets/1")
    assert [p["phase"] for p in m1["phases"]] == [1]
    assert m1["data"]["num_train"] + m1["data"]["num_val"] + m1["data"]["num_test"] == 12  # 3 broken files skipped
    phase1_model = tmp_path / "phase1.keras"
    shutil.copyfile(run / "model.keras", phase1_model)
    _, bb1 = backbone_of(phase1_model)
    assert len(bb1.weights) == len(imagenet.weights)
    for got, want in zip(bb1.weights, imagenet.weights):
        # the cached "ImageNet" weights were loaded, and phase 1 left them alone
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=got.path)

    # Resume the finished run into phase 2: the top 10 layers of the backbone
    # train (BatchNormalization excepted), at a tenth of the learning rate.
    m2 = invoke(runner, app, ["finetune", "--resume", str(run), "--fine-tune-epochs", "1", "--json"])
    assert [p["phase"] for p in m2["phases"]] == [1, 2]
    rows = read_history(run)
    assert [(r["epoch"], r["phase"]) for r in rows] == [("1", "1"), ("2", "2")]
    assert float(rows[1]["learning_rate"]) == pytest.approx(float(rows[0]["learning_rate"]) * 0.1)
    assert (run / "plots" / "history.png").exists()

    model2, bb2 = backbone_of(run / "model.keras")
    top = {layer.name for layer in bb2.layers[-10:]}
    changed, unchanged = set(), set()
    for layer1, layer2 in zip(bb1.layers, bb2.layers):
        for w1, w2 in zip(layer1.weights, layer2.weights):
            same = np.array_equal(np.asarray(w1), np.asarray(w2))
            (unchanged if same else changed).add(layer2.name)
            if isinstance(layer2, keras.layers.BatchNormalization):
                assert same, f"phase 2 changed {w2.path}: BatchNormalization must stay in inference mode"
    assert changed == {"conv_dw_13", "conv_pw_13", "conv_pw_12"}  # the convolutions among the top 10
    assert not changed - top
    assert "conv1" in unchanged and "conv_dw_12" in unchanged

    # The run's config.yaml repeats the whole fine-tune with `dlcli train`.
    m3 = invoke(runner, app, ["train", str(run / "config.yaml"), "-o", "again", "--json"])
    again = Path(m3["run_dir"])
    assert [(r["epoch"], r["phase"]) for r in read_history(again)] == [("1", "1"), ("2", "2")]
    _, bb3 = backbone_of(again / "model.keras")
    np.testing.assert_array_equal(bb3.get_layer("conv1").get_weights()[0], imagenet.get_layer("conv1").get_weights()[0])
    assert not np.array_equal(bb3.get_layer("conv_pw_13").get_weights()[0], imagenet.get_layer("conv_pw_13").get_weights()[0])


def train_pets_cnn(runner, app, folder: Path, output: Path) -> Path:
    """Pretrain a small CNN on a generated pets folder with `dlcli train`."""
    config = output.parent / "pets_cnn.yaml"
    config.write_text(f"""
name: pets_cnn
data: {{source: image_dir, path: {folder}, image_size: [48, 48], color_mode: rgb, batch_size: 8, validation_split: 0.2}}
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 32, kernel_size: 3, activation: relu}}
    - MaxPooling2D: {{pool_size: 2}}
    - Conv2D: {{filters: 64, kernel_size: 3, activation: relu}}
    - MaxPooling2D: {{pool_size: 2}}
    - Conv2D: {{filters: 64, kernel_size: 3, activation: relu}}
    - GlobalAveragePooling2D
    - Dense: {{units: 2, activation: softmax}}
compile: {{optimizer: {{class_name: adam, config: {{learning_rate: 0.003}}}}}}
train: {{epochs: 20}}
""", encoding="utf-8")
    m = invoke(runner, app, ["train", str(config), "-o", str(output), "--json"])
    return Path(m["run_dir"])


def test_two_phase_fine_tune_of_a_pretrained_run_reaches_high_accuracy(runner, app, tmp_path):
    from dlcli.data import make_demo_image_folder

    make_demo_image_folder(tmp_path / "source", n_per_class=100, size=48, corrupt=False, seed=1)
    make_demo_image_folder(tmp_path / "pets", n_per_class=100, size=48, corrupt=True, seed=2)
    base = train_pets_cnn(runner, app, tmp_path / "source", tmp_path / "runs")

    m = invoke(runner, app, [
        # 128 training images are 16 steps an epoch: enough epochs, a brisk rate.
        "finetune", "--base", str(base), str(tmp_path / "pets"), "--epochs", "15", "--fine-tune-epochs", "5",
        "--batch-size", "8", "--set", "compile.optimizer.config.learning_rate=0.01", "-o", str(tmp_path / "runs"), "--json",
    ])
    run = Path(m["run_dir"])
    config = (run / "config.yaml").read_text(encoding="utf-8")
    assert f"weights: {base}" in config and "binary_crossentropy" in config
    phase1, phase2 = m["phases"]
    assert phase1["epochs"] == [1, 15] and phase2["epochs"] == [16, 20]
    assert phase2["final"]["val_accuracy"] >= 0.9
    assert m["test"]["accuracy"] >= 0.9
    assert m["data"]["num_val"] >= 30
