"""The config loader: safe YAML with line numbers, extends, --set."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from dlcli.config import config_from_dict, load_config
from dlcli.config.yamlfile import parse_yaml
from dlcli.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent / "configs"

MLP = """\
model:
  input_shape: [4]
  layers:
    - Dense: {units: 8, activation: relu}
    - Flatten
    - Dense: {units: 3, activation: softmax}
data:
  source: iris
"""


# --- positions -------------------------------------------------------------


def test_positions_name_the_line_of_every_key_and_item():
    _, pos = parse_yaml(MLP, "m.yaml")
    assert pos[("model",)] == ("m.yaml", 1)
    assert pos[("model", "input_shape")] == ("m.yaml", 2)
    assert pos[("model", "layers", 0)] == ("m.yaml", 4)
    assert pos[("model", "layers", 0, "Dense", "units")] == ("m.yaml", 4)
    assert pos[("model", "layers", 2)] == ("m.yaml", 6)
    assert pos[("data", "source")] == ("m.yaml", 8)


def test_cfg_error_locates_a_key_or_its_nearest_parent(write_file):
    cfg = load_config(write_file("m.yaml", MLP))
    err = cfg.error("model.layers.2.Dense.units", "too many units", hint="try 3")
    assert (Path(err.file).name, err.line, err.key) == ("m.yaml", 6, "model.layers.2.Dense.units")
    assert str(err).endswith("m.yaml:6: model.layers.2.Dense.units: too many units (try 3)")
    # Not in the file: the nearest parent that is (train is all defaults).
    assert cfg.error("model.layers.1.whatever", "x").line == 5
    assert cfg.error("train.epochs", "x").line is None
    assert cfg.error("train.epochs", "x").file.endswith("m.yaml")


def test_name_defaults_to_the_file_stem(write_file):
    assert load_config(write_file("my_run.yaml", MLP)).name == "my_run"
    assert load_config(write_file("named.yaml", "name: other\n" + MLP)).name == "other"


def test_source_file_and_to_yaml_round_trip(write_file, tmp_path):
    path = write_file("m.yaml", MLP)
    cfg = load_config(path)
    assert cfg.source_file == path
    again = write_file("again.yaml", cfg.to_yaml())
    assert load_config(again).to_dict() == cfg.to_dict()
    # Block style, schema key order, defaults included.
    text = cfg.to_yaml()
    assert "{" not in text
    assert [k for k in yaml.safe_load(text)] == ["name", "seed", "data", "model", "compile", "train", "finetune"]
    assert yaml.safe_load(text)["train"]["epochs"] == 10


# --- extends -----------------------------------------------------------------


def test_extends_deep_merges_dicts_and_replaces_lists():
    child = load_config(CONFIGS / "child.yaml")
    base = load_config(CONFIGS / "base.yaml")
    assert child.data.batch_size == 32  # child wins
    assert child.data.source == "iris" and child.data.validation_split == 0.2  # merged from base
    assert [next(iter(e)) for e in child.model.layers] == ["Dense", "Dropout", "Dense"]  # replaced
    assert child.model.input_shape == [4]
    # Nested mapping merged: class_name kept from the base, learning rate from the child.
    assert child.compile.optimizer == {"class_name": "adam", "config": {"learning_rate": 0.002}}
    assert child.train.callbacks == base.train.callbacks
    assert child.name == "child"
    assert "extends" not in child.to_dict()


def test_extends_a_list_later_bases_win_and_the_file_wins_over_all():
    cfg = load_config(CONFIGS / "multi.yaml")
    assert cfg.seed == 11 and cfg.train.epochs == 9  # extra.yaml over base.yaml
    assert cfg.train.verbose == "lines"  # the file itself
    assert cfg.data.source == "iris"  # base.yaml


def test_extends_resolves_against_the_naming_file_and_chains(tmp_cwd):
    cfg = load_config(CONFIGS / "nested" / "grandchild.yaml")
    assert cfg.name == "grandchild_run"
    assert cfg.train.epochs == 2  # grandchild
    assert cfg.data.batch_size == 32  # child
    assert cfg.seed == 7  # base


def test_positions_come_from_the_file_that_wrote_the_key():
    cfg = load_config(CONFIGS / "child.yaml")
    assert cfg.locate("data.batch_size") == (str(CONFIGS / "child.yaml"), 4)
    file, line = cfg.locate("data.source")
    assert Path(file).name == "base.yaml" and line == 4
    file, line = cfg.locate("compile.optimizer.class_name")
    assert Path(file).name == "base.yaml"


def test_extends_cycle_names_the_chain(write_file):
    a = write_file("a.yaml", "extends: b.yaml\n" + MLP)
    write_file("b.yaml", "extends: [c.yaml]\n")
    write_file("c.yaml", "seed: 1\nextends: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(a)
    err = info.value
    assert "a.yaml -> " in err.message and "b.yaml -> " in err.message and err.message.endswith("a.yaml")
    assert Path(err.file).name == "c.yaml" and err.line == 2


def test_extends_missing_base_names_file_and_chain(write_file):
    a = write_file("a.yaml", "extends: b.yaml\n" + MLP)
    write_file("b.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="base config not found") as info:
        load_config(a)
    assert Path(info.value.file).name == "b.yaml" and info.value.line == 1
    assert "a.yaml -> " in info.value.hint and info.value.hint.endswith("nowhere.yaml")


def test_extends_from_a_dict_resolves_against_source_folder():
    cfg = config_from_dict({"extends": "base.yaml", "train": {"epochs": 1}}, source=CONFIGS / "from_dict.yaml")
    assert cfg.train.epochs == 1 and cfg.data.source == "iris" and cfg.name == "from_dict"


# --- --set -------------------------------------------------------------------


def test_set_values_are_parsed_as_yaml(write_file):
    cfg = load_config(
        write_file("m.yaml", MLP),
        [
            "train.epochs=3",
            "data.validation_split=0.25",
            "data.strict=true",
            "data.classes=[0, 2]",
            "model.name=null",
            "name=fast run",
            "compile.metrics=[accuracy, {class_name: AUC, config: {num_thresholds: 50}}]",
        ],
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.data.validation_split == 0.25
    assert cfg.data.strict is True
    assert cfg.data.classes == [0, 2]
    assert cfg.model.name is None
    assert cfg.name == "fast run"
    assert cfg.compile.metrics[1] == {"class_name": "AUC", "config": {"num_thresholds": 50}}


def test_set_reaches_into_list_items_and_bare_entries(write_file):
    cfg = load_config(
        write_file("m.yaml", MLP),
        ["model.layers.0.Dense.units=16", "model.layers.-1.Dense.activation=linear", "model.layers.1.Flatten.name=flat"],
    )
    assert cfg.model.layers[0] == {"Dense": {"units": 16, "activation": "relu"}}
    assert cfg.model.layers[2]["Dense"]["activation"] == "linear"
    assert cfg.model.layers[1] == {"Flatten": {"name": "flat"}}


def test_set_expands_a_named_optimizer_and_creates_absent_sections(write_file):
    cfg = load_config(
        write_file("m.yaml", MLP),
        ["compile.optimizer.config.learning_rate=0.05", "finetune.unfreeze=5", "train.class_weight.1=2.5"],
    )
    assert cfg.compile.optimizer == {"class_name": "adam", "config": {"learning_rate": 0.05}}
    assert cfg.finetune is not None and cfg.finetune.unfreeze == 5
    assert cfg.train.class_weight == {1: 2.5}


def test_set_positions_point_at_set(write_file):
    cfg = load_config(write_file("m.yaml", MLP), ["train.epochs=3", "model.layers.0.Dense.units=4"])
    assert cfg.locate("train.epochs") == ("--set", None)
    assert cfg.locate("model.layers.0.Dense.units") == ("--set", None)
    assert cfg.locate("model.layers.1")[1] == 5


@pytest.mark.parametrize(
    "override, fragment, hint",
    [
        ("train.epoch=3", "unknown key 'epoch'", "did you mean 'train.epochs'?"),
        ("trian.epochs=3", "unknown key 'trian'", "did you mean 'train'?"),
        ("epochs", "expected key.path=value", None),
        ("=3", "expected key.path=value", None),
        ("model.layers.9.Dense.units=3", "index 9 is out of range", None),
        ("model.layers.first.Dense.units=3", "is a list; address its items by index", None),
        ("model.layers.0.Dens.units=3", "has no key 'Dens'", "did you mean 'model.layers.0.Dense'?"),
        ("seed.value=3", "which has no key 'value'", None),
        ("extends=other.yaml", "extends cannot be overridden", None),
    ],
)
def test_bad_set_is_a_config_error_keyed_set(write_file, override, fragment, hint):
    with pytest.raises(ConfigError) as info:
        load_config(write_file("m.yaml", MLP), [override])
    assert info.value.key == "--set"
    assert fragment in info.value.message
    assert info.value.hint == hint or hint is None


def test_set_value_of_the_wrong_type_is_located_at_set(write_file):
    with pytest.raises(ConfigError) as info:
        load_config(write_file("m.yaml", MLP), ["train.epochs=lots"])
    assert info.value.file == "--set" and info.value.key == "train.epochs"
    assert "expected an integer, got 'lots'" in info.value.message


# --- safety ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "model: !!python/object/apply:os.system ['touch {marker}']\n",
        "model: !!python/object/new:subprocess.check_output [['touch', '{marker}']]\n",
        "model: {{layers: [!!python/name:os.system ]}}\n",
        "model: !!python/module:os\n",
    ],
)
def test_python_tags_are_refused_and_never_executed(write_file, tmp_path, text):
    marker = tmp_path / "pwned"
    path = write_file("evil.yaml", text.format(marker=marker))
    with pytest.raises(ConfigError, match="is not allowed") as info:
        load_config(path)
    assert info.value.line == 1
    assert not marker.exists()


def test_python_tag_in_set_is_refused(write_file, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="is not allowed"):
        load_config(write_file("m.yaml", MLP), [f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def _bomb(levels: int = 9) -> str:
    text = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels + 1):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    return text + MLP


def test_alias_bomb_is_refused_in_well_under_a_second(write_file):
    path = write_file("bomb.yaml", _bomb())
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(path)
    assert time.perf_counter() - start < 0.5


def test_alias_bomb_in_set_is_refused(write_file):
    value = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 2000) + "]"
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(write_file("m.yaml", MLP), [f"data.classes={value}"])


def test_anchors_aliases_and_merge_keys_work():
    cfg = load_config(CONFIGS / "anchors.yaml")
    first, second, third = (e["Dense"] for e in cfg.model.layers)
    assert first == second == {"units": 8, "activation": "relu", "kernel_initializer": "he_normal"}
    assert third == {"units": 3, "activation": "softmax", "kernel_initializer": "he_normal"}
    # Each alias is its own copy: changing one layer leaves the others alone.
    cfg.model.layers[0]["Dense"]["units"] = 99
    assert cfg.model.layers[1]["Dense"]["units"] == 8


@pytest.mark.parametrize(
    "raw, fragment, line",
    [
        (b"model:\n\tlayers: [Dense]\n", "tab character in indentation", 2),
        (b"model:\n  layers: [Dense]\nname: caf\xe9\n", "not UTF-8 text", 3),
        (b"", "the config file is empty", None),
        (b"# only a comment\n\n", "the config file is empty", None),
        (b"- model\n- data\n", "found a list", 1),
        (b"model:\n  layers: [Dense]\n  layers: [Flatten]\n", "duplicate key 'layers' (first on line 2)", 3),
        (b"model: {layers: [Dense]}\n---\nseed: 1\n", "several YAML documents", 2),
        (b"model: &m\n  layers: [*m]\n", "recursive YAML alias", 1),
        (b"model:\n  layers: [Dense\n", "invalid YAML", 3),
        (b"seed: 1\x00\n", "invalid character", 1),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply", None),
    ],
)
def test_unreadable_yaml_is_a_located_config_error(write_file, tmp_path, raw, fragment, line):
    path = tmp_path / "bad.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert info.value.file == str(path)
    assert info.value.line == line


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_plain_yaml_quirks_stay_readable(write_file):
    # A date stays text, `on:` stays the word, a BOM is fine.
    path = write_file("q.yaml", "\ufeff" + MLP + "name: 2024-01-31\ntrain:\n  class_weight: {0: 1.0, 1: 3.0}\n")
    cfg = load_config(path)
    assert cfg.name == "2024-01-31"
    assert cfg.train.class_weight == {0: 1.0, 1: 3.0}
    data, _ = parse_yaml("on: 1\nnull: 2\n3: x\n", "k.yaml")
    assert data == {"on": 1, "null": 2, 3: "x"}


def test_config_from_dict_validates_without_touching_its_input():
    d = {"model": {"layers": ["Flatten", {"Dense": {"units": 3}}]}, "train": {"epochs": 2}}
    before = repr(d)
    cfg = config_from_dict(d, overrides=["train.epochs=4", "model.layers.1.Dense.units=5"])
    assert cfg.train.epochs == 4 and cfg.model.layers[1] == {"Dense": {"units": 5}}
    assert repr(d) == before
    assert cfg.source_file is None and cfg.name is None
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": {"layers": ["Flatten"]}, "train": {"epoch": 2}})
    assert info.value.key == "train.epoch" and info.value.file is None
    assert info.value.hint == "did you mean 'epochs'?"
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_dict(["model"])  # type: ignore[arg-type]
