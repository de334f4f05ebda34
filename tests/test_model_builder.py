"""build_model: stacks, graphs, custom layers, nested configs and located errors."""

from __future__ import annotations

import os
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlcli.config import config_from_dict, load_config  # noqa: E402
from dlcli.config.schema import Config  # noqa: E402
from dlcli.errors import ConfigError  # noqa: E402
from dlcli.model import build_model, compile_model, load_model, summarize  # noqa: E402


def make_cfg(layers, *, checked=True, **model):
    """A Config around `layers`. checked=False skips dlcli.config's static
    Keras-name checks, so the builder's own errors are what a test sees
    (as for a Python user who builds a Config by hand)."""
    d = {"name": "t", "data": {"source": "digits"}, "model": {"layers": layers, **model},
         "compile": {"optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}}}}
    return config_from_dict(d) if checked else Config.model_validate(d)


def build_error(layers, input_shape=(8, 8, 1), **model) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_model(make_cfg(layers, checked=False, **model), input_shape)
    return info.value


MNIST_CONVNET = [
    {"Conv2D": {"filters": 32, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Conv2D": {"filters": 64, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    "Flatten",
    {"Dropout": {"rate": 0.5}},
    {"Dense": {"units": 10, "activation": "softmax"}},
]


def test_simple_mnist_convnet_has_the_keras_example_parameter_count():
    model = build_model(make_cfg(MNIST_CONVNET), (28, 28, 1))
    summary = summarize(model)
    assert summary["total_params"] == 34_826
    assert summary["trainable_params"] == 34_826 and summary["non_trainable_params"] == 0
    rows = {r["class_name"]: r for r in summary["layers"]}
    assert rows["Flatten"]["output_shape"] == [None, 1600]
    assert rows["Dense"]["params"] == 16_010
    assert summary["layers"][0]["output_shape"] == [None, 28, 28, 1]


def test_model_input_shape_overrides_the_data():
    model = build_model(make_cfg(MNIST_CONVNET, input_shape=[28, 28, 1]), (8, 8, 1))
    assert model.input_shape == (None, 28, 28, 1)


def test_no_input_shape_anywhere_is_a_located_error():
    err = build_error(["Flatten"], input_shape=None)
    assert err.key == "model.input_shape"
    assert "input shape" in err.message


def test_config_model_trains_to_the_same_weights_as_hand_written_keras():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 16, (48, 8, 8, 1)).astype("float32")
    y = rng.randint(0, 10, 48)
    layers = [
        {"Rescaling": {"scale": 0.0625}},
        {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}},
        {"MaxPooling2D": {"pool_size": 2}},
        "Flatten",
        {"Dropout": {"rate": 0.25}},
        {"Dense": {"units": 10, "activation": "softmax"}},
    ]
    cfg = make_cfg(layers)

    keras.utils.set_random_seed(7)
    from_config = build_model(cfg, (8, 8, 1))
    compile_model(from_config, cfg)
    from_config.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Rescaling(0.0625)(inputs)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.25)(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    by_hand = keras.Model(inputs, outputs)
    by_hand.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    by_hand.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    got, want = from_config.get_weights(), by_hand.get_weights()
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Training moved the weights: the comparison is not between two fresh inits.
    keras.utils.set_random_seed(7)
    fresh = build_model(cfg, (8, 8, 1)).get_weights()
    assert not np.allclose(fresh[0], got[0])


RESIDUAL = [
    {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}, "name": "stem"},
    {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}, "name": "branch_a"},
    {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same"}, "name": "branch_b", "inputs": "branch_a"},
    {"Add": None, "name": "join", "inputs": ["stem", "branch_b"]},
    {"Activation": {"activation": "relu"}},
    "GlobalAveragePooling2D",
    {"Dense": {"units": 10, "activation": "softmax"}},
]


def inbound_layer_names(layer) -> list[str]:
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def test_residual_graph_joins_two_branches_at_add():
    model = build_model(make_cfg(RESIDUAL), (8, 8, 1))
    join = model.get_layer("join")
    assert isinstance(join, keras.layers.Add)
    assert inbound_layer_names(join) == ["stem", "branch_b"]
    assert inbound_layer_names(model.get_layer("branch_a")) == ["stem"]
    assert model.output_shape == (None, 10)


def test_names_and_inputs_inside_the_arguments_work_like_beside_them():
    cfg = load_config("configs/resnet_digits.yaml")
    model = build_model(cfg, (8, 8, 1))
    assert inbound_layer_names(model.get_layer("b1_add")) == ["stem", "b1_conv2"]
    assert inbound_layer_names(model.get_layer("b2_add")) == ["b1_out", "b2_conv2"]


def test_forward_references_are_built_in_dependency_order():
    layers = [
        {"Dense": {"units": 3}, "name": "late", "inputs": "early"},
        {"Dense": {"units": 4}, "name": "early", "inputs": "input"},
    ]
    model = build_model(make_cfg(layers, checked=False, outputs=["late"]), (5,))
    assert inbound_layer_names(model.get_layer("late")) == ["early"]
    assert model.output_shape == (None, 3)


def test_several_inputs_and_outputs_build_compile_and_train():
    layers = [
        {"Flatten": None, "name": "flat", "inputs": "image"},
        {"Concatenate": None, "name": "joined", "inputs": ["flat", "meta"]},
        {"Dense": {"units": 16, "activation": "relu"}, "name": "hidden"},
        {"Dense": {"units": 10, "activation": "softmax"}, "name": "digit"},
        {"Dense": {"units": 1}, "name": "size", "inputs": "hidden"},
    ]
    cfg = make_cfg(layers, checked=False, inputs={"image": [8, 8, 1], "meta": [3]}, outputs=["digit", "size"])
    cfg.compile.loss = {"digit": "sparse_categorical_crossentropy", "size": "mse"}
    model = build_model(cfg)
    assert [t.name for t in model.inputs] == ["image", "meta"]
    assert model.output_names == ["digit", "size"]
    compile_model(model, cfg)
    rng = np.random.RandomState(0)
    x = {"image": rng.rand(32, 8, 8, 1).astype("float32"), "meta": rng.rand(32, 3).astype("float32")}
    y = {"digit": rng.randint(0, 10, 32), "size": rng.rand(32, 1).astype("float32")}
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0).history
    assert {"digit_loss", "size_loss", "digit_accuracy"} <= set(history)
    # No accuracy for the regression output when compile.metrics is left out.
    assert "size_accuracy" not in history
    assert np.isfinite(history["loss"][0])


def test_first_layer_of_a_several_input_model_must_say_which_input():
    err = build_error(["Flatten"], inputs={"a": [3], "b": [4]})
    assert err.key == "model.layers.0"
    assert "inputs: a" in (err.hint or "")


def test_cycle_names_the_layers_in_it():
    layers = [
        {"Dense": {"units": 4}, "name": "a", "inputs": "c"},
        {"Dense": {"units": 4}, "name": "b", "inputs": "a"},
        {"Dense": {"units": 4}, "name": "c", "inputs": "b"},
    ]
    err = build_error(layers, input_shape=(4,))
    assert "cycle" in err.message
    assert err.message == "layers form a cycle: a -> b -> c -> a"
    assert err.key == "model.layers.0.inputs"
    assert err.key.startswith("model.layers.")


def test_dangling_input_suggests_the_close_name():
    layers = list(RESIDUAL)
    layers[3] = {"Add": None, "name": "join", "inputs": ["stem", "branch_c"]}
    err = build_error(layers)
    assert err.key == "model.layers.3.inputs"
    assert "inputs names an unknown layer 'branch_c'" in err.message
    assert err.hint == "did you mean 'branch_a'?" or err.hint == "did you mean 'branch_b'?"


def test_duplicate_name_is_an_error_at_the_second_entry():
    layers = [{"Dense": {"units": 4}, "name": "d"}, {"Dense": {"units": 4}, "name": "d"}]
    err = build_error(layers, input_shape=(4,))
    assert err.key == "model.layers.1.name"
    assert "duplicate layer name 'd' (also model.layers.0)" in err.message


def test_unknown_layer_suggests_the_keras_spelling():
    err = build_error([{"Conv2d": {"filters": 3, "kernel_size": 3}}])
    assert err.key == "model.layers.0"
    assert err.message == "unknown layer 'Conv2d'"
    assert err.hint == "did you mean 'Conv2D'?"
    assert str(err) == "model.layers.0: unknown layer 'Conv2d' (did you mean 'Conv2D'?)"


def test_unknown_argument_names_it_and_suggests_the_real_one():
    err = build_error(["Flatten", {"Dense": {"unit": 3}}])
    assert err.key == "model.layers.1"
    assert err.message == "Dense has no argument 'unit'"
    assert err.hint == "did you mean 'units'?"
    err = build_error([{"Conv2D": {"filtres": 32, "kernel_size": 3}}])
    assert err.message == "Conv2D has no argument 'filtres'" and err.hint == "did you mean 'filters'?"


def test_missing_required_argument_is_named():
    err = build_error(["Flatten", "Dense"])
    assert err.key == "model.layers.1"
    assert err.message == "Dense needs argument 'units'"


def test_value_keras_rejects_shows_keras_message_located():
    err = build_error(["Flatten", {"Dense": {"units": -1}}])
    assert err.key == "model.layers.1"
    assert "Dense rejected its arguments" in err.message
    assert "units" in err.message and "-1" in err.message


def test_unknown_initializer_name_is_named_with_a_suggestion():
    err = build_error(["Flatten", {"Dense": {"units": 3, "kernel_initializer": "he_normall"}}])
    assert err.message == "Dense: unknown initializer 'he_normall' for kernel_initializer"
    assert err.hint == "did you mean 'he_normal'?"


def test_recurrent_layer_on_vectors_is_a_located_shape_error():
    err = build_error([{"LSTM": {"units": 4}}], input_shape=(13,))
    assert err.key == "model.layers.0"
    assert "LSTM cannot take its input of shape (None, 13)" in err.message
    assert "ndim=3" in err.message
    assert "sequences" in err.hint


def test_shape_errors_carry_the_config_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: bad
        data: {source: iris}
        model:
          layers:
            - Dense: {units: 8}
            - Conv2D: {filters: 4, kernel_size: 3}
            - Dense: {units: 3, activation: softmax}
        """))
    cfg = load_config(path)
    with pytest.raises(ConfigError) as info:
        build_model(cfg, (4,))
    text = str(info.value)
    assert text.startswith(f"{path}:6: model.layers.1: Conv2D cannot take its input of shape (None, 8)")


def test_kernel_too_large_for_the_input_is_a_located_error():
    err = build_error([{"Conv2D": {"filters": 2, "kernel_size": 5}}], input_shape=(3, 3, 1))
    assert err.key == "model.layers.0"
    assert "Conv2D cannot take its input of shape (None, 3, 3, 1)" in err.message


def test_input_is_not_a_layer_entry():
    err = build_error([{"Input": {"shape": [3]}}, {"Dense": {"units": 2}}])
    assert "Input is not a layer entry" in err.message
    assert "model.input_shape" in err.hint


def test_misindented_arguments_are_explained():
    err = build_error([{"Conv2D": None, "filters": 3}])
    assert "unexpected key 'filters' beside layer 'Conv2D'" in err.message
    assert "arguments go under Conv2D" in err.hint


def test_nested_layers_regularizers_and_initializers_resolve():
    layers = [
        {"TimeDistributed": {"layer": {"Dense": {"units": 5, "kernel_regularizer": {"L2": {"l2": 0.01}}}}}, "name": "td"},
        {"Bidirectional": {"layer": {"LSTM": {"units": 4, "return_sequences": True}}, "merge_mode": "sum"}, "name": "bi"},
        {"RNN": {"cell": {"GRUCell": {"units": 3}}}, "name": "rnn"},
        {"Dense": {"units": 2, "kernel_regularizer": "l2", "bias_initializer": {"Constant": {"value": 0.5}},
                   "kernel_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.5, "seed": 3}}}, "name": "out"},
    ]
    model = build_model(make_cfg(layers), (6, 7))
    td = model.get_layer("td")
    assert isinstance(td.layer, keras.layers.Dense) and td.layer.units == 5
    assert isinstance(td.layer.kernel_regularizer, keras.regularizers.L2)
    assert td.layer.kernel_regularizer.l2 == pytest.approx(0.01)
    bi = model.get_layer("bi")
    assert isinstance(bi.forward_layer, keras.layers.LSTM) and bi.forward_layer.units == 4
    assert bi.output.shape == (None, 6, 4)
    assert isinstance(model.get_layer("rnn").cell, keras.layers.GRUCell)
    out = model.get_layer("out")
    assert isinstance(out.kernel_regularizer, keras.regularizers.L2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out.bias), [0.5, 0.5])
    assert isinstance(out.kernel_initializer, keras.initializers.RandomNormal)
    assert len(model.losses) == 2  # both regularizers are active


def test_nested_layer_errors_are_located_at_the_outer_entry():
    err = build_error([{"Bidirectional": {"layer": {"LSTMM": {"units": 4}}}}], input_shape=(6, 7))
    assert err.key == "model.layers.0"
    assert err.message == "unknown layer 'LSTMM'" and err.hint == "did you mean 'LSTM'?"


def test_num_classes_placeholder_takes_the_data_class_count():
    model = build_model(make_cfg(["Flatten", {"Dense": {"units": "num_classes", "activation": "softmax"}}], checked=False),
                        (8, 8, 1), num_classes=7)
    assert model.output_shape == (None, 7)
    err = build_error(["Flatten", {"Dense": {"units": "num_classes"}}])
    assert "class count" in err.message


GATE_MODULE = '''
import keras


class Gate(keras.layers.Layer):
    """Multiplies its input by a learned sigmoid gate per feature."""

    def __init__(self, init=0.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.g = self.add_weight(shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init))

    def call(self, x):
        return x * keras.ops.sigmoid(self.g)

    def get_config(self):
        return {**super().get_config(), "init": self.init}


class NotALayer:
    pass
'''


def test_custom_layer_by_dotted_path_builds_saves_and_loads(tmp_path, monkeypatch):
    pkg = tmp_path / "dlcli_test_custom"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text(GATE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    layers = ["Flatten", {"dlcli_test_custom.layers.Gate": {"init": 2.0}, "name": "gate"}, {"Dense": {"units": 3}}]
    model = build_model(make_cfg(layers), (4, 4, 1))
    gate = model.get_layer("gate")
    assert type(gate).__name__ == "Gate" and gate.init == 2.0

    x = np.random.RandomState(0).rand(5, 4, 4, 1).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    # A fresh process would not know the class: forget it, then load the way
    # evaluate/predict do, trusting the module (--trust-module).
    keras.saving.get_custom_objects().pop("Gate", None)
    from dlcli.errors import RunError
    from dlcli.model.trust import Trust

    with pytest.raises(RunError, match="--trust-module dlcli_test_custom"):
        load_model(path)
    loaded = load_model(path, trust=Trust(modules=("dlcli_test_custom",)))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)

    err = build_error([{"dlcli_test_custom.layers.Gat": None}])
    assert "has no layer class 'Gat'" in err.message and err.hint == "did you mean 'Gate'?"
    err = build_error([{"dlcli_test_custom.layers.NotALayer": None}])
    assert "not a Keras layer class" in err.message
    err = build_error([{"no_such_pkg_xyz.layers.Gate": None}])
    assert "cannot import module 'no_such_pkg_xyz.layers'" in err.message
