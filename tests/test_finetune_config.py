"""`dlcli finetune` options -> the config it trains, and its usage errors.

Nothing here trains: these check the config a fine-tune would run (head,
loss, phases, precedence of defaults < --config < options < --set) and
that bad usage exits 2 with one line naming the problem and writes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from dlcli.errors import ConfigError, DataError  # noqa: E402
from dlcli.finetune import DEFAULT_AUGMENT, count_classes, finetune_config, parse_unfreeze, phase_summary  # noqa: E402


def image_folder(root: Path, classes=("cats", "dogs"), per_class=3) -> Path:
    """Class folders of tiny PNGs (enough for listing; nothing trains)."""
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (12, 10), (40 * c, 20 * i, 90)).save(root / name / f"{i}.png")
    return root


def layers_of(cfg) -> list:
    return cfg.to_dict()["model"]["layers"]


def test_two_classes_get_a_sigmoid_head_and_binary_loss(tmp_path):
    cfg = finetune_config("mobilenet", image_folder(tmp_path / "pets"))
    d = cfg.to_dict()
    assert layers_of(cfg) == [
        {"Backbone": {"name": "mobilenet", "weights": "imagenet", "trainable": False}},
        "GlobalAveragePooling2D",
        {"Dropout": {"rate": 0.2}},
        {"Dense": {"units": 1, "activation": "sigmoid"}},
    ]
    assert d["compile"]["loss"] == "binary_crossentropy"
    assert d["compile"]["optimizer"] == {"class_name": "adam", "config": {"learning_rate": 0.001}}
    assert d["compile"]["metrics"] == ["accuracy"]
    assert d["data"]["source"] == "image_dir"
    assert d["data"]["path"] == str(tmp_path / "pets")
    assert d["data"]["image_size"] == [224, 224]  # MobileNet's ImageNet size
    assert d["data"]["color_mode"] == "rgb"
    assert d["data"]["augment"] == DEFAULT_AUGMENT
    assert d["finetune"] == {"fine_tune_epochs": 5, "unfreeze": 0.3, "learning_rate_factor": 0.1}
    assert d["name"] == "mobilenet_pets"


def test_more_classes_get_a_softmax_head_sized_from_the_folder(tmp_path):
    cfg = finetune_config("MobileNetV2", image_folder(tmp_path / "flowers", classes=("a", "b", "c", "d")), weights="none")
    assert layers_of(cfg)[0] == {"Backbone": {"name": "mobilenet_v2", "weights": None, "trainable": True}}  # random weights: nothing to freeze
    assert layers_of(cfg)[-1] == {"Dense": {"units": 4, "activation": "softmax"}}
    assert cfg.compile.loss == "sparse_categorical_crossentropy"


def test_split_folders_are_counted_like_image_dir(tmp_path):
    root = tmp_path / "splits"
    image_folder(root / "train", classes=("x", "y", "z"))
    image_folder(root / "val", classes=("x", "y", "z"))
    assert count_classes(root) == ["x", "y", "z"]


def test_options_set_their_keys(tmp_path):
    cfg = finetune_config(
        "mobilenet", image_folder(tmp_path / "pets"), epochs=2, fine_tune_epochs=3, unfreeze="12",
        image_size=96, batch_size=8, augment=False, strict=True, name="mine",
    )
    assert cfg.train.epochs == 2
    assert cfg.finetune.fine_tune_epochs == 3
    assert cfg.finetune.unfreeze == 12 and isinstance(cfg.finetune.unfreeze, int)
    assert cfg.data.image_size == [96, 96]
    assert cfg.data.batch_size == 8
    assert cfg.data.augment == []
    assert cfg.data.strict is True
    assert cfg.name == "mine"


def test_config_file_fills_in_and_options_win(tmp_path, write_file):
    extra = write_file("extra.yaml", """
seed: 7
data:
  image_size: [160, 160]
  validation_split: 0.3
  augment: [{RandomFlip: {mode: vertical}}]
train:
  epochs: 9
  callbacks:
    - EarlyStopping: {monitor: val_loss, patience: 2}
finetune:
  unfreeze: 20
""")
    folder = image_folder(tmp_path / "pets")
    cfg = finetune_config("mobilenet", folder, config=extra, epochs=4, overrides=["finetune.learning_rate_factor=0.05"])
    assert cfg.seed == 7  # from the file
    assert cfg.data.image_size == [160, 160]  # the file over the backbone's size
    assert cfg.data.validation_split == 0.3
    assert cfg.data.augment == [{"RandomFlip": {"mode": "vertical"}}]
    assert cfg.train.callbacks == [{"EarlyStopping": {"monitor": "val_loss", "patience": 2}}]
    assert cfg.finetune.unfreeze == 20
    assert cfg.train.epochs == 4  # --epochs over the file's 9
    assert cfg.finetune.learning_rate_factor == 0.05  # --set last
    assert cfg.data.path == str(folder)  # DATA_DIR over everything
    assert layers_of(cfg)[0]["Backbone"]["name"] == "mobilenet"


def test_config_layers_replace_the_head_and_base_fills_their_backbone(tmp_path, write_file):
    extra = write_file("head.yaml", """
model:
  layers:
    - Backbone: {name: resnet50, pooling: avg}
    - Dense: {units: 1, activation: sigmoid}
""")
    cfg = finetune_config("mobilenet", image_folder(tmp_path / "pets"), config=extra)
    assert layers_of(cfg) == [
        {"Backbone": {"name": "mobilenet", "pooling": "avg", "weights": "imagenet", "trainable": False}},
        {"Dense": {"units": 1, "activation": "sigmoid"}},
    ]


def test_data_can_come_from_the_config_file(write_file):
    digits = write_file("digits.yaml", "data: {source: digits, classes: [5, 6, 7], samples_per_class: 4}\n")
    cfg = finetune_config("mobilenet", None, config=digits, weights="none")
    assert cfg.data.source == "digits"
    assert cfg.data.augment == []  # no photo augmentation for other sources
    assert layers_of(cfg)[-1] == {"Dense": {"units": 3, "activation": "softmax"}}


def test_saved_config_loads_back_to_the_same_config(tmp_path):
    from dlcli.config import load_config

    cfg = finetune_config("mobilenet", image_folder(tmp_path / "pets"), weights="none", epochs=2, unfreeze="0.5")
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_config(path).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("text, expected", [("20", 20), ("1", 1), ("0.3", 0.3), ("1.0", 1.0)])
def test_unfreeze_reads_layers_or_a_fraction(text, expected):
    value = parse_unfreeze(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "0.0", "half", "nan"])
def test_unfreeze_rejects_the_rest(text):
    with pytest.raises(ConfigError) as info:
        parse_unfreeze(text)
    assert info.value.key == "--unfreeze"


def test_phase_summary_splits_history_by_phase():
    history = {
        "epoch": [1, 2, 3],
        "phase": [1, 1, 2],
        "loss": [0.9, 0.5, 0.3],
        "val_accuracy": [0.6, 0.8, 0.95],
        "epoch_time_s": [1.0, 1.0, 1.0],
    }
    assert phase_summary(history) == [
        {"phase": 1, "epochs": [1, 2], "final": {"loss": 0.5, "val_accuracy": 0.8}},
        {"phase": 2, "epochs": [3, 3], "final": {"loss": 0.3, "val_accuracy": 0.95}},
    ]


# --------------------------------------------------------------- CLI errors


def run_cli(runner, app, args):
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["finetune", "--base", "mobilenett", "{pets}"], ["--base", "unknown backbone 'mobilenett'", "mobilenet"]),
        (["finetune", "--base", "mobilenet", "{tmp}/nowhere"], ["nowhere", "does not exist"]),
        (["finetune", "--base", "mobilenet", "{one}"], ["single class folder"]),
        (["finetune", "--base", "mobilenet"], ["DATA_DIR"]),
        (["finetune", "{pets}"], ["--base is required"]),
        (["finetune", "--base", "mobilenet", "{pets}", "--unfreeze", "2.5"], ["--unfreeze", "(0, 1]"]),
        (["finetune", "--base", "mobilenet", "{pets}", "--weights", "{tmp}/w.h5"], ["--weights", "w.h5"]),
        (["finetune", "--base", "{tmp}/runs/none/1", "{pets}"], ["run not found"]),
        (["finetune", "--base", "mobilenet", "{pets}", "--set", "data.batch_sise=4"], ["--set", "batch_size"]),
        (["finetune", "--base", "mobilenet", "{pets}", "--config", "{tmp}/bad.yaml"], ["bad.yaml:2", "trian", "train"]),
        (["finetune", "--base", "mobilenet", "{pets}", "--config", "{tmp}/nohead.yaml"], ["nohead.yaml", "Backbone"]),
        (["finetune", "--base", "mobilenet", "--config", "{tmp}/nohead.yaml", "--image-size", "64"], ["--image-size", "DATA_DIR"]),
        (["finetune", "--resume", "{tmp}/runs/x/1", "--base", "mobilenet"], ["--base", "resume"]),
    ],
)
def test_bad_usage_exits_2_with_one_line_and_writes_nothing(runner, app, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    pets = image_folder(tmp_path / "pets")
    one = image_folder(tmp_path / "one", classes=("only",))
    (tmp_path / "bad.yaml").write_text("seed: 1\ntrian:\n  epochs: 2\n")
    (tmp_path / "nohead.yaml").write_text("model:\n  layers: [Flatten, {Dense: {units: 2}}]\n")
    args = [a.format(tmp=tmp_path, pets=pets, one=one) for a in args]
    before = sorted(p for p in tmp_path.rglob("*"))
    code, out, err = run_cli(runner, app, args)
    assert code == 2, err
    assert out == ""
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "runs").exists()


def test_count_classes_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError):
        count_classes(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError):
        count_classes(tmp_path / "file.txt")


# ---------------------------------------------------------------- demo-data


def test_demo_data_writes_two_classes_and_refuses_a_used_folder(runner, app, tmp_path):
    target = tmp_path / "cats_dogs"
    result = runner.invoke(app, ["demo-data", str(target), "--per-class", "4", "--size", "32", "--json"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["classes"] == {"cats": 4, "dogs": 4}
    assert len(info["corrupt"]) == 3
    assert count_classes(target) == ["cats", "dogs"]
    assert len(list((target / "cats").iterdir())) == 4 + 2  # + a truncated JPEG and an empty PNG

    before = sorted(target.rglob("*"))
    again = runner.invoke(app, ["demo-data", str(target)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert sorted(target.rglob("*")) == before


def test_demo_data_human_output_says_what_to_run_next(runner, app, tmp_path):
    result = runner.invoke(app, ["demo-data", str(tmp_path / "demo"), "--per-class", "2", "--size", "16", "--no-corrupt"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"dlcli finetune --base mobilenet {tmp_path / 'demo'}/" in result.stderr
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["cats", "dogs"]


@pytest.mark.slow
def test_backbones_lists_keras_applications_with_sizes_and_params(runner, app, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = runner.invoke(app, ["backbones", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)["backbones"]}
    assert rows["mobilenet"] == {"name": "mobilenet", "keras_name": "MobileNet", "default_size": 224, "params": 3228864}
    assert rows["mobilenet_v2"]["keras_name"] == "MobileNetV2"
    assert rows["inception_v3"]["default_size"] == 299
    table = runner.invoke(app, ["backbones"])
    assert table.exit_code == 0
    assert "MobileNetV2" in table.stdout and "3,228,864" in table.stdout  # a result table: stdout


def test_shipped_config_is_what_the_documented_command_writes(tmp_path, monkeypatch):
    from dlcli.config import load_config

    shipped = Path(__file__).resolve().parent.parent / "configs" / "finetune_cats_dogs.yaml"
    monkeypatch.chdir(tmp_path)
    image_folder(tmp_path / "cats_dogs")
    generated = finetune_config(
        "mobilenet_v2", "cats_dogs", image_size=160, epochs=10, fine_tune_epochs=10, unfreeze="54", name="finetune_cats_dogs"
    )
    # The shipped file's relative data path is resolved when it is loaded;
    # the generated config holds the folder as given on the command line.
    expected = generated.to_dict()
    expected["data"]["path"] = str((tmp_path / "cats_dogs").resolve())
    assert load_config(shipped).to_dict() == expected


def test_a_run_as_base_keeps_its_input_and_its_way_to_vectors(tmp_path):
    import keras

    from dlcli.config import config_from_dict
    from dlcli.model import build_model

    cnn = config_from_dict({"name": "digits_cnn", "model": {"layers": [
        {"Rescaling": {"scale": 0.0625}},
        {"Conv2D": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}},
        {"MaxPooling2D": {"pool_size": 2}},
        "Flatten",
        {"Dense": {"units": 16, "activation": "relu"}},
        {"Dense": {"units": 5, "activation": "softmax"}},
    ]}})
    keras.utils.set_random_seed(0)
    run = tmp_path / "runs" / "digits_cnn" / "1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cnn.to_yaml())
    build_model(cnn, (8, 8, 1)).save(run / "model.keras")

    cfg = finetune_config(str(run), image_folder(tmp_path / "digits", classes=("5", "6", "7")), weights=None)
    d = cfg.to_dict()
    assert d["model"]["layers"] == [
        {"Backbone": {"weights": str(run), "trainable": False}},
        "Flatten",  # as the run's own model turned its feature maps into vectors
        {"Dropout": {"rate": 0.2}},
        {"Dense": {"units": 3, "activation": "softmax"}},
    ]
    assert d["data"]["image_size"] == [8, 8] and d["data"]["color_mode"] == "grayscale"
    assert d["name"] == "digits_cnn_digits"
    with pytest.raises(ConfigError) as info:
        finetune_config(str(run), tmp_path / "digits", weights="none")
    assert info.value.key == "--weights"
