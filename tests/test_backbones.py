"""Backbone entries: keras.applications by name, weights, preprocessing, runs."""

from __future__ import annotations

import os
import urllib.error

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlcli.config.schema import Config  # noqa: E402
from dlcli.errors import ConfigError, DataError  # noqa: E402
from dlcli.model import BackbonePreprocess, build_model, find_backbone, list_backbones, summarize  # noqa: E402
from dlcli.model.backbone_build import cut_before_head  # noqa: E402
from dlcli.model.backbones import backbone_registry, find_info  # noqa: E402


def make_cfg(layers, name="bb"):
    return Config.model_validate({"name": name, "model": {"layers": layers}})


def head(backbone_args, units=3):
    return [{"Backbone": backbone_args}, "GlobalAveragePooling2D", {"Dense": {"units": units, "activation": "softmax"}}]


def build_error(layers, input_shape) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_model(make_cfg(layers), input_shape)
    return info.value


def test_every_keras_application_is_a_backbone_with_a_snake_name():
    reg = backbone_registry()
    keras_functions = {n for n in dir(keras.applications) if n[:1].isupper()}
    assert {i.keras_name for i in reg.values()} == keras_functions
    expected = {
        "mobilenet": "MobileNet", "mobilenet_v2": "MobileNetV2", "mobilenet_v3_small": "MobileNetV3Small",
        "mobilenet_v3_large": "MobileNetV3Large", "efficientnet_b0": "EfficientNetB0", "efficientnet_v2_s": "EfficientNetV2S",
        "efficientnet_v2_b0": "EfficientNetV2B0", "resnet50": "ResNet50", "resnet50_v2": "ResNet50V2", "xception": "Xception",
        "vgg16": "VGG16", "densenet121": "DenseNet121", "convnext_tiny": "ConvNeXtTiny", "nasnet_mobile": "NASNetMobile",
        "inception_v3": "InceptionV3", "inception_resnet_v2": "InceptionResNetV2",
    }
    for name, keras_name in expected.items():
        assert reg[name].keras_name == keras_name


@pytest.mark.parametrize("written", ["mobilenet_v2", "MobileNetV2", "mobilenetv2", "MOBILENET_V2"])
def test_backbone_names_in_any_spelling(written):
    assert find_info(written).keras_name == "MobileNetV2"


def test_unknown_backbone_suggests_a_name():
    err = build_error(head({"name": "mobilenet_v22", "weights": None}), (32, 32, 3))
    assert err.key == "model.layers.0"
    assert err.message == "unknown backbone 'mobilenet_v22'"
    assert err.hint == "did you mean 'mobilenet_v2'?"


def test_unknown_backbone_argument_is_named():
    err = build_error(head({"name": "mobilenet_v2", "weights": None, "alhpa": 0.35}), (32, 32, 3))
    assert err.message == "Backbone mobilenet_v2 has no argument 'alhpa'"
    assert err.hint == "did you mean 'alpha'?"


def test_preprocess_layer_applies_each_module_preprocess_input():
    x = np.random.RandomState(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    for module in sorted({i.module for i in backbone_registry().values()}):
        want = getattr(keras.applications, module).preprocess_input(x.copy())
        got = keras.ops.convert_to_numpy(BackbonePreprocess(module)(x))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=module)
    gray = x[..., :1]
    rgb = keras.ops.convert_to_numpy(BackbonePreprocess("mobilenet_v2", to_rgb=True)(gray))
    np.testing.assert_allclose(rgb, np.repeat(gray / 127.5 - 1.0, 3, axis=-1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        BackbonePreprocess("os")


def test_input_smaller_than_the_application_allows_is_located():
    err = build_error(head({"name": "mobilenet_v2", "weights": None}), (16, 16, 3))
    assert err.key == "model.layers.0"
    assert "at least 32x32" in err.message
    assert "image_size" in err.hint


def test_backbone_on_vectors_is_refused():
    err = build_error(head({"name": "mobilenet_v2", "weights": None}), (13,))
    assert "takes images" in err.message


def test_backbone_model_loads_in_safe_mode_and_predicts_the_same(tmp_path):
    # Grayscale data on an RGB backbone: preprocessing repeats the channel.
    model = build_model(make_cfg(head({"name": "mobilenet", "weights": "none", "alpha": 0.25})), (32, 32, 1))
    backbone = find_backbone(model)
    assert backbone is model.get_layer("mobilenet_0.25_32")
    assert backbone.trainable  # random weights: trained with the head
    assert isinstance(model.get_layer("mobilenet_preprocess"), BackbonePreprocess)
    x = np.random.RandomState(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    # Called directly (eagerly): predict() would spend seconds on XLA compilation.
    want = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), want, rtol=1e-5, atol=1e-6)
    assert find_backbone(loaded).name == "mobilenet_0.25_32"


def test_weights_file_trainable_and_fine_tune_at(tmp_path):
    source = keras.applications.MobileNet(include_top=False, weights=None, alpha=0.25, input_shape=(32, 32, 3))
    weights = tmp_path / "mine.weights.h5"
    source.save_weights(weights)
    model = build_model(make_cfg(head({"name": "MobileNet", "alpha": 0.25, "weights": str(weights), "trainable": False})), (32, 32, 3))
    backbone = find_backbone(model)
    for got, want in zip(backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert backbone.trainable_weights == []
    assert len(model.trainable_weights) == 2  # the head's Dense
    summary = summarize(model)
    row = next(r for r in summary["layers"] if r["name"] == backbone.name)
    assert row["class_name"] == "Functional" and row["output_shape"] == [None, 1, 1, 256]
    assert row["params"] == source.count_params()
    assert summary["trainable_params"] == 256 * 3 + 3
    assert summary["total_params"] == source.count_params() + 256 * 3 + 3

    model = build_model(make_cfg(head({"name": "mobilenet", "alpha": 0.25, "weights": None, "fine_tune_at": "conv_dw_13"})), (32, 32, 3))
    layers = find_backbone(model).layers
    start = [layer.name for layer in layers].index("conv_dw_13")
    assert not any(layer.trainable for layer in layers[:start])
    assert all(layer.trainable for layer in layers[start:])
    err = build_error(head({"name": "mobilenet", "alpha": 0.25, "weights": None, "fine_tune_at": "conv_dw_13x"}), (32, 32, 3))
    assert err.hint == "did you mean 'conv_dw_13'?"


@pytest.fixture
def offline_keras_home(tmp_path, monkeypatch):
    """An empty KERAS_HOME and no network: Keras's downloader fails at once."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    from keras.src.utils import file_utils

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return home


def test_imagenet_weights_come_from_keras_cache_and_offline_errors_name_the_file(offline_keras_home):
    cfg = make_cfg(head({"name": "mobilenet_v2", "weights": "imagenet", "alpha": 0.35}))
    expected = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    folder = offline_keras_home / "models"
    with pytest.raises(DataError) as info:
        build_model(cfg, (96, 96, 3))
    assert info.value.exit_code == 2
    assert f"Keras expects the file {expected} in {folder}" in info.value.message
    assert "network is unreachable" in info.value.message
    assert not (folder / expected).exists()

    # Put a weights file where Keras looks (written in the legacy .h5 layout
    # Keras's own files use) and build again: those weights are loaded.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(96, 96, 3))
    with h5py.File(folder / expected, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    model = build_model(cfg, (96, 96, 3))
    backbone = find_backbone(model)
    for got, want in zip(backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert backbone.trainable_weights == []  # pretrained: frozen by default


def write_run(root, name, layers, input_shape, seed=0):
    """A run folder as dlcli train leaves it: config.yaml and model.keras."""
    cfg = make_cfg(layers, name=name)
    keras.utils.set_random_seed(seed)
    model = build_model(cfg, input_shape)
    run = root / name / "1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    model.save(run / "model.keras")
    return run, model


CNN = [
    {"Rescaling": {"scale": 0.0625}},
    {"Conv2D": {"filters": 6, "kernel_size": 3, "activation": "relu"}, "name": "conv"},
    {"MaxPooling2D": {"pool_size": 2}, "name": "pool"},
    "Flatten",
    {"Dropout": {"rate": 0.2}},
    {"Dense": {"units": 10, "activation": "softmax"}},
]


def test_backbone_from_a_run_is_the_model_cut_before_its_head(tmp_path):
    run, trained = write_run(tmp_path / "runs", "cnn", CNN, (8, 8, 1))
    cfg = make_cfg([{"Backbone": {"weights": str(run.parent)}}, "GlobalAveragePooling2D", {"Dense": {"units": 4}}])
    model = build_model(cfg, (12, 12, 1))  # a new input size: convolutions do not mind
    backbone = find_backbone(model)
    assert backbone.name == "cnn_backbone"
    assert backbone.layers[-1].name == "pool"
    assert backbone.output_shape == (None, 5, 5, 6)
    np.testing.assert_array_equal(backbone.get_layer("conv").get_weights()[0], trained.get_layer("conv").get_weights()[0])
    assert backbone.trainable_weights == []
    assert model.output_shape == (None, 4)


def test_vector_models_are_cut_at_their_penultimate_dense(tmp_path):
    mlp = [{"Dense": {"units": 16, "activation": "relu"}, "name": "h1"}, {"Dense": {"units": 8, "activation": "relu"}, "name": "h2"},
           {"Dropout": {"rate": 0.1}}, {"Dense": {"units": 3, "activation": "softmax"}}]
    run, _ = write_run(tmp_path / "runs", "mlp", mlp, (4,))
    cut = cut_before_head(keras.saving.load_model(run / "model.keras"))
    assert cut.layers[-1].name == "h2" and cut.output_shape == (None, 8)
    only_head = write_run(tmp_path / "runs", "tiny", [{"Dense": {"units": 3}}], (4,))[0]
    err = build_error([{"Backbone": {"weights": str(only_head / "model.keras")}}, {"Dense": {"units": 2}}], (4,))
    assert "nothing before its head" in err.message
    err = build_error([{"Backbone": {"weights": str(tmp_path / "nowhere")}}, {"Dense": {"units": 2}}], (4,))
    assert err.key == "model.layers.0" and "run not found" in err.message


def test_run_backbone_with_other_channels_is_located(tmp_path):
    run, _ = write_run(tmp_path / "runs", "cnn", CNN, (8, 8, 1))
    err = build_error([{"Backbone": {"weights": str(run)}}, "Flatten", {"Dense": {"units": 2}}], (8, 8, 3))
    assert err.key == "model.layers.0"
    assert "trained on inputs (8, 8, 1) and cannot take (8, 8, 3)" in err.message


def test_find_backbone_is_none_without_one():
    assert find_backbone(build_model(make_cfg(CNN), (8, 8, 1))) is None


def test_list_backbones_reads_default_sizes_from_keras_and_caches_params(tmp_path, monkeypatch):
    from dlcli.model import backbones

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "SHIPPED_PARAMS", tmp_path / "absent.json")
    fast = {b["name"]: b for b in list_backbones(count_params=False)}
    assert len(fast) == len(backbone_registry())
    assert fast["mobilenet_v2"]["default_size"] == 224
    assert fast["inception_v3"]["default_size"] == 299
    assert fast["nasnet_large"]["default_size"] == 331
    assert fast["efficientnet_b7"]["default_size"] == 600
    assert fast["mobilenet_v2"]["params"] is None

    (row,) = list_backbones(["MobileNetV3Small"])
    direct = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(224, 224, 3)).count_params()
    assert row == {"name": "mobilenet_v3_small", "keras_name": "MobileNetV3Small", "default_size": 224, "params": direct}
    # Cached: the fast listing now knows it too.
    assert {b["name"]: b for b in list_backbones(count_params=False)}["mobilenet_v3_small"]["params"] == direct
    with pytest.raises(ConfigError, match="did you mean 'mobilenet_v3_small'"):
        list_backbones(["mobilenet_v3_smal"])


def test_shipped_parameter_counts_match_the_installed_keras(tmp_path, monkeypatch):
    import json

    from dlcli.model import backbones

    shipped = json.loads(backbones.SHIPPED_PARAMS.read_text())
    if shipped["keras"] != keras.__version__:
        pytest.skip(f"shipped counts are for keras {shipped['keras']}; `python -m dlcli.model.backbones` regenerates them")
    assert set(shipped["params"]) == set(backbone_registry())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rows = {b["name"]: b["params"] for b in list_backbones(count_params=False)}
    assert rows == shipped["params"]
    direct = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(224, 224, 3)).count_params()
    assert rows["mobilenet"] == direct
