"""Schema errors, Keras-name checks and graph checks through the Python API."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcli.config import config_from_dict, load_config
from dlcli.config.catalog import check_layer_kwargs, check_loss, parse_entry
from dlcli.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent / "configs"


def cfg_with(**sections):
    d = {"model": {"input_shape": [4], "layers": [{"Dense": {"units": 3, "activation": "softmax"}}]}, "data": {"source": "iris"}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


def error_of(d) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_dict(d)
    return info.value


# --- schema errors with lines ----------------------------------------------


def test_first_schema_error_names_file_line_key_expected_and_given(write_file):
    path = write_file(
        "bad.yaml",
        "model:\n  layers: [Flatten]\ndata:\n  batch_size: 0\n  color_mode: RGB\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.line, err.key) == (str(path), 4, "data.batch_size")
    assert err.message == "expected a number >= 1, got 0"
    assert str(err) == f"{path}:4: data.batch_size: expected a number >= 1, got 0"


def test_unknown_key_wins_over_the_missing_key_it_explains(write_file):
    path = write_file("bad.yaml", "data:\n  source: iris\nmodle:\n  layers: [Flatten]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.line, info.value.key, info.value.hint) == (3, "modle", "did you mean 'model'?")


def test_unknown_key_without_a_close_match_lists_the_valid_ones():
    err = error_of(cfg_with(train={"zzz": 1}))
    assert err.message == "unknown key 'zzz'" and err.hint.startswith("valid keys: epochs, callbacks")


@pytest.mark.parametrize(
    "sections, key, fragment",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs", "expected an integer, got 'ten'"),
        ({"train": {"epochs": 2.5}}, "train.epochs", "expected an integer, got 2.5"),
        ({"data": {"validation_split": -0.1}}, "data.validation_split", "expected a number >= 0"),
        ({"data": {"cache": "sometimes"}}, "data.cache", "expected true or false or one of 'auto', got 'sometimes'"),
        ({"train": {"distribute": "mirror"}}, "train.distribute", "got 'mirror'"),
        ({"compile": {"loss_weights": "heavy"}}, "compile.loss_weights", "expected a list or a mapping"),
        ({"data": {"image_size": [1, 2, 3]}}, "data.image_size", "expected at most 2 item(s)"),
        ({"model": {"layers": "Dense"}}, "model.layers", "expected a list, got 'Dense'"),
        ({"compile": {"optimizer": ["adam"]}}, "compile.optimizer", "expected a string or a mapping, got ['adam']"),
        ({"finetune": {"unfreeze": "top"}}, "finetune.unfreeze", "got 'top'"),
    ],
)
def test_type_errors_say_what_was_expected_and_given(sections, key, fragment):
    err = error_of(cfg_with(**sections))
    assert err.key == key
    assert fragment in err.message
    assert "\n" not in str(err)


def test_literal_choice_suggests_the_close_one():
    err = error_of(cfg_with(train={"distribute": "mirrorred"}))
    assert err.hint == "did you mean 'mirrored'?"


# --- Keras names: did you mean -----------------------------------------------


@pytest.mark.parametrize(
    "sections, key, message, hint",
    [
        (
            {"model": {"layers": [{"Conv2d": {"filters": 3, "kernel_size": 3}}]}},
            "model.layers.0",
            "unknown layer 'Conv2d'",
            "did you mean 'Conv2D'?",
        ),
        ({"model": {"layers": ["batchnormalization"]}}, "model.layers.0", "unknown layer 'batchnormalization'", "did you mean 'BatchNormalization'?"),
        (
            {"model": {"layers": [{"Conv2D": {"filtres": 32, "kernel_size": 3}}]}},
            "model.layers.0.Conv2D.filtres",
            "Conv2D has no argument 'filtres'",
            "did you mean 'filters'?",
        ),
        ({"model": {"layers": [{"LSTM": {"unit": 4}}]}}, "model.layers.0.LSTM.unit", "LSTM has no argument 'unit'", "did you mean 'units'?"),
        (
            {"model": {"layers": [{"LSTM": {"units": 4, "recurrent_activation": "sigmod"}}]}},
            "model.layers.0.LSTM.recurrent_activation",
            "unknown activation 'sigmod' for LSTM",
            "did you mean 'sigmoid'?",
        ),
        ({"compile": {"loss": "mean_squared_eror"}}, "compile.loss", "unknown loss 'mean_squared_eror'", "did you mean 'mean_squared_error'?"),
        ({"compile": {"loss": "Huber"}}, None, None, None),
        (
            {"compile": {"loss": {"class_name": "Huber", "config": {"detla": 1.0}}}},
            "compile.loss.config.detla",
            "Huber has no argument 'detla'",
            "did you mean 'delta'?",
        ),
        ({"compile": {"optimizer": "rmsprp"}}, "compile.optimizer", "unknown optimizer 'rmsprp'", "did you mean 'rmsprop'?"),
        ({"compile": {"optimizer": "RMSprop"}}, None, None, None),
        (
            {"compile": {"optimizer": {"class_name": "AdamW", "config": {"weight_decy": 0.1}}}},
            "compile.optimizer.config.weight_decy",
            "AdamW has no argument 'weight_decy'",
            "did you mean 'weight_decay'?",
        ),
        (
            {"compile": {"optimizer": {"class_name": "Adam", "config": {"learning_rate": {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1, "decay_step": 10}}}}}},
            "compile.optimizer.config.learning_rate.config.decay_step",
            "CosineDecay has no argument 'decay_step'",
            "did you mean 'decay_steps'?",
        ),
        (
            {"compile": {"optimizer": {"class_name": "Adam", "config": {"learning_rate": {"class_name": "Cosine", "config": {}}}}}},
            "compile.optimizer.config.learning_rate.class_name",
            "unknown learning-rate schedule 'Cosine'",
            "did you mean 'CosineDecay'?",
        ),
        ({"compile": {"metrics": ["acc", "precison"]}}, "compile.metrics.1", "unknown metric 'precison'", "did you mean 'precision'?"),
        (
            {"compile": {"metrics": [{"class_name": "Precison"}]}},
            "compile.metrics.0.class_name",
            "unknown metric 'Precison'",
            "did you mean 'Precision'?",
        ),
        ({"train": {"callbacks": ["ReduceLROnPlateu"]}}, "train.callbacks.0", "unknown callback 'ReduceLROnPlateu'", "did you mean 'ReduceLROnPlateau'?"),
        (
            {"train": {"callbacks": [{"ReduceLROnPlateau": {"factr": 0.5}}]}},
            "train.callbacks.0.ReduceLROnPlateau.factr",
            "ReduceLROnPlateau has no argument 'factr'",
            "did you mean 'factor'?",
        ),
        ({"data": {"source": "cifar_10"}}, "data.source", "unknown data source 'cifar_10'", "did you mean 'cifar10'?"),
    ],
)
def test_keras_names_and_arguments_get_did_you_mean(sections, key, message, hint):
    if message is None:
        config_from_dict(cfg_with(**sections))  # accepted as Keras accepts it
        return
    err = error_of(cfg_with(**sections))
    assert (err.key, err.message, err.hint) == (key, message, hint)


@pytest.mark.parametrize(
    "sections",
    [
        # Keras's own aliases, found by asking Keras when the catalogue was built.
        {"compile": {"loss": "mse", "metrics": ["mae", "MSE", "acc", "AUC"]}},
        {"compile": {"loss": "ce", "optimizer": "ADAM"}},
        {"compile": {"loss": {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True, "label_smoothing": 0.1}}}},
        # dlcli's own names.
        {"compile": {"loss": "ctc", "metrics": ["ctc_sequence_accuracy", "sequence_accuracy"]}},
        {"model": {"layers": [{"Backbone": {"name": "mobilenet_v2", "weights": None, "trainable": False, "pooling": "avg"}}, "Flatten"]}},
        {"model": {"layers": [{"Backbone": {"name": "MobileNetV2", "preprocess": True, "fine_tune_at": 100}}]}, "finetune": {"fine_tune_epochs": 2}},
        # Base Layer arguments reached through **kwargs.
        {"model": {"layers": [{"Dense": {"units": 3, "name": "out", "dtype": "float32", "trainable": False, "input_shape": [4]}}]}},
        # A custom layer by import path: its module's file is read (not
        # imported) to find the class; its arguments are not checked.
        {"model": {"layers": [{"dlcli.model.layers.PositionEmbedding": {"anything": 1}}]}},
        # The user's own loss, metric, schedule and initializer by dotted path.
        {"compile": {"loss": "dlcli.model.ctc.CTCSequenceAccuracy", "metrics": [{"class_name": "dlcli.model.ctc.CTCSequenceAccuracy"}]}},
        {"model": {"layers": [{"Dense": {"units": 2, "kernel_initializer": "dlcli.model.layers.PositionEmbedding"}}]}},
        # Keras serialized form, pasted.
        {"compile": {"optimizer": {"module": "keras.optimizers", "class_name": "SGD", "config": {"momentum": 0.9}, "registered_name": None}}},
        {"train": {"callbacks": ["TerminateOnNaN", {"EarlyStopping": {"patience": 2, "restore_best_weights": True}}]}},
        {"data": {"augment": [{"RandomFlip": {"mode": "horizontal"}}, {"RandomRotation": {"factor": 0.1}}]}},
    ],
)
def test_valid_keras_references_pass(sections):
    config_from_dict(cfg_with(**sections))


# --- graph --------------------------------------------------------------------


def test_a_valid_graph_passes_and_keeps_its_structure():
    cfg = load_config(CONFIGS / "graph.yaml")
    entries = [parse_entry(e, f"model.layers.{i}") for i, e in enumerate(cfg.model.layers)]
    assert [e.name for e in entries] == ["scaled", "stem", "conv", "join", "pool", "classes"]
    assert entries[3].inputs == ["stem", "conv"] and "inputs" not in entries[3].kwargs
    assert entries[5].kwargs == {"units": 10, "activation": "softmax"}


def layers_cfg(layers, **model):
    return cfg_with(model={"layers": layers, **model})


def test_graph_inputs_may_name_model_inputs_and_later_layers():
    config_from_dict(layers_cfg([{"Dense": {"units": 4, "name": "a"}, "inputs": "input"}]))
    config_from_dict(
        layers_cfg(
            [{"Dense": {"units": 4, "name": "a"}, "inputs": "pixels"}, {"Concatenate": {"name": "cat"}, "inputs": ["a", "meta"]}],
            inputs={"pixels": [4], "meta": [2]},
            outputs=["cat"],
        )
    )
    # A forward reference without a cycle is a DAG.
    config_from_dict(
        layers_cfg(
            [
                {"Dense": {"units": 4, "name": "late"}, "inputs": "early"},
                {"Dense": {"units": 4, "name": "early"}, "inputs": "input"},
            ],
            outputs=["late"],
        )
    )


@pytest.mark.parametrize(
    "layers, model, key, message",
    [
        ([{"Dense": {"units": 4, "name": "a"}}, {"Dense": {"units": 4}, "name": "a"}], {}, "model.layers.1.name", "duplicate layer name 'a' (also model.layers.0)"),
        ([{"Dense": {"units": 4, "name": "a"}, "inputs": ["b"]}], {}, "model.layers.0.inputs", "inputs names an unknown layer 'b'"),
        (
            [{"Dense": {"units": 4, "name": "x"}, "inputs": "z"}, {"Dense": {"units": 4, "name": "y"}, "inputs": "x"}, {"Dense": {"units": 4, "name": "z"}, "inputs": "y"}],
            {},
            "model.layers.0.inputs",
            "layers form a cycle: x -> y -> z -> x",
        ),
        ([{"Dense": {"units": 4, "name": "a"}}], {"outputs": ["b"]}, "model.outputs.0", "output 'b' is not a layer name"),
        ([{"Dense": {"units": 4, "name": "img"}}], {"inputs": {"img": [4]}}, "model.layers.0.Dense.name", "layer name 'img' is also a model input name"),
        ([{"Dense": {"units": 4}, "inputs": []}], {}, "model.layers.0.inputs", "inputs must be a layer name or a list of names, got a list"),
        ([{"Dense": {"units": 4}, "name": ""}], {}, "model.layers.0.name", "a layer name must be a non-empty string"),
    ],
)
def test_graph_errors(layers, model, key, message):
    err = error_of(layers_cfg(layers, **model))
    assert err.key == key
    assert err.message.startswith(message)


def test_graph_error_suggests_the_close_name():
    err = error_of(layers_cfg([{"Dense": {"units": 4, "name": "encoder"}}, {"Dense": {"units": 4}, "inputs": "encodr"}]))
    assert err.hint == "did you mean 'encoder'?"


# --- the reusable check functions --------------------------------------------


def test_check_functions_work_without_a_config():
    with pytest.raises(ConfigError) as info:
        check_layer_kwargs("Dense", {"unit": 3}, "model.layers.0.Dense")
    assert (info.value.key, info.value.hint, info.value.file) == ("model.layers.0.Dense.unit", "did you mean 'units'?", None)
    check_layer_kwargs("Dense", {"units": 3}, "x")
    with pytest.raises(ConfigError, match="unknown loss 'msee'"):
        check_loss("msee")


def test_check_functions_locate_errors_with_a_config(write_file):
    cfg = load_config(write_file("m.yaml", "model:\n  input_shape: [4]\n  layers:\n    - Dense: {units: 3}\n"))
    with pytest.raises(ConfigError) as info:
        check_layer_kwargs("Dense", {"unitz": 3}, "model.layers.0.Dense", cfg=cfg)
    assert info.value.line == 4 and info.value.file.endswith("m.yaml")
