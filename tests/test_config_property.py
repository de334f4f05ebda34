"""Property: whatever a config file holds, loading it gives a Config or a
ConfigError (exit 2, one line), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.config import load_config
from dlcli.config.schema import Config
from dlcli.errors import ConfigError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Words that steer random documents into the schema and the Keras checks.
WORDS = [
    "model", "layers", "data", "compile", "train", "finetune", "name", "inputs", "outputs", "extends",
    "source", "path", "epochs", "loss", "optimizer", "metrics", "callbacks", "class_name", "config",
    "Dense", "Conv2D", "Flatten", "Backbone", "units", "filters", "activation", "relu", "adam", "mse",
    "accuracy", "EarlyStopping", "patience", "learning_rate", "ExponentialDecay", "digits", "csv",
    "augment", "RandomFlip", "input", "image_size", "class_weight", "<<", "mobilenet_v2", "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(-3, 3))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=25,
)

# Config-shaped documents: real section names, layer entries, Keras
# references and arguments, mixed with wrong ones, so that the schema, the
# catalogue checks and the graph checks all run.
words = st.sampled_from(WORDS)
plain = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(-1, 2), words)
plain_values = st.recursive(
    plain, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(words, c, max_size=3)), max_leaves=8
)
layer_names = st.sampled_from(["Dense", "Conv2D", "Flatten", "Add", "Backbone", "Dropout", "Dens", "mypkg.Gate", "a..b"])
kwargs = st.dictionaries(
    st.sampled_from(["units", "filters", "kernel_size", "activation", "name", "rate", "inputs", "unit", "weights"]),
    st.one_of(plain, st.sampled_from(["relu", "softmax", "rellu", "a", "b", "c", "input"])),
    max_size=3,
)
entries = st.one_of(
    layer_names,
    st.builds(lambda n, kw: {n: kw}, layer_names, st.one_of(st.none(), kwargs, plain)),
    st.builds(
        lambda n, kw, name, inputs: {n: kw, "name": name, "inputs": inputs},
        layer_names,
        kwargs,
        st.one_of(st.sampled_from(["a", "b", "c"]), plain),
        st.one_of(st.sampled_from(["a", "b", "c", "input"]), st.lists(st.sampled_from(["a", "b", "c", "x"]), max_size=3), plain),
    ),
)
refs = st.one_of(
    st.sampled_from(["adam", "sgd", "mse", "accuracy", "ctc", "adamm", ""]),
    st.fixed_dictionaries(
        {"class_name": st.one_of(st.sampled_from(["Adam", "SGD", "Huber", "AUC", "ExponentialDecay", "Nope"]), plain)},
        optional={
            "config": st.one_of(
                st.dictionaries(st.sampled_from(["learning_rate", "delta", "momentum", "lr", "decay_steps"]), plain_values, max_size=2),
                plain,
            )
        },
    ),
    plain_values,
)
configs = st.fixed_dictionaries(
    {"model": st.fixed_dictionaries(
        {"layers": st.lists(entries, min_size=1, max_size=5)},
        optional={"outputs": st.one_of(st.lists(st.sampled_from(["a", "b", "z"]), max_size=2), plain), "input_shape": plain_values},
    )},
    optional={
        "data": st.fixed_dictionaries(
            {}, optional={"source": st.sampled_from(["digits", "csv", "mnst", "image_dir"]), "path": plain, "augment": st.lists(entries, max_size=2)}
        ),
        "compile": st.fixed_dictionaries({}, optional={"loss": refs, "optimizer": refs, "metrics": st.lists(refs, max_size=3)}),
        "train": st.fixed_dictionaries({}, optional={"epochs": st.integers(0, 3), "callbacks": st.lists(entries, max_size=2)}),
    },
)
overrides = st.lists(
    st.builds(
        lambda path, value: f"{path}={value}",
        st.lists(st.one_of(words, st.integers(-2, 5).map(str)), min_size=1, max_size=5).map(".".join),
        st.one_of(st.sampled_from(["3", "adam", "[1, 2]", "{a: 1}", "null", "!!python/name:os.system", "[", ""]), st.text(max_size=10)),
    ),
    max_size=3,
)
BASE = "model:\n  layers:\n    - Dense: {units: 8, activation: relu, name: a}\n    - Flatten\n    - Dense: {units: 3}\n"


def _load(content: bytes, sets=()):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(content)
        try:
            cfg = load_config(path, sets)
        except ConfigError as err:
            text = str(err)
            assert text and "\n" not in text.strip("\n")
            return None
        assert isinstance(cfg, Config)
        # A loaded config survives its own YAML.
        again = Path(tmp) / "again.yaml"
        again.write_text(cfg.to_yaml(), encoding="utf-8")
        assert load_config(again).to_dict() == cfg.to_dict()
        return cfg


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_a_config_error(text):
    _load(text.encode("utf-8"))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_give_a_config_or_a_config_error(raw):
    _load(raw)


@SETTINGS
@given(values)
def test_any_yaml_structure_gives_a_config_or_a_config_error(value):
    _load(yaml.safe_dump(value, allow_unicode=True).encode("utf-8"))


@SETTINGS
@given(configs)
def test_config_shaped_documents_give_a_config_or_a_config_error(doc):
    _load(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))


@SETTINGS
@given(overrides)
def test_any_overrides_give_a_config_or_a_config_error(sets):
    _load(BASE.encode("utf-8"), sets)
