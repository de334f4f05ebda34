"""`dlcli validate`, `dlcli schema` and `dlcli summary` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlcli.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "configs"


def test_validate_ok_line_on_stderr_nothing_on_stdout(runner, app, tmp_cwd):
    result = runner.invoke(app, ["validate", str(CONFIGS / "child.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"ok: {CONFIGS / 'child.yaml'} (3 layers, sparse_categorical_crossentropy, adam)\n"
    assert list(tmp_cwd.iterdir()) == []


def test_validate_print_gives_the_resolved_yaml(runner, app):
    result = runner.invoke(app, ["validate", str(CONFIGS / "child.yaml"), "--print", "--set", "train.epochs=4", "-s", "compile.loss=mse"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    expected = load_config(CONFIGS / "child.yaml", ["train.epochs=4", "compile.loss=mse"]).to_dict()
    assert printed == expected
    assert printed["train"]["epochs"] == 4 and printed["compile"]["loss"] == "mse"
    assert printed["train"]["checkpoint_every"] == 1  # defaults are there
    assert printed["data"]["source"] == "iris"  # from the base
    assert "extends" not in printed
    assert result.stderr.startswith("ok: ")


def test_validate_json_is_one_object(runner, app):
    result = runner.invoke(app, ["validate", str(CONFIGS / "graph.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["ok"] is True
    assert obj["config"]["name"] == "graph"
    assert obj["config"]["model"]["outputs"] == ["classes"]


def test_validate_bad_set_is_exit_2_one_line(runner, app, tmp_cwd):
    result = runner.invoke(app, ["validate", str(CONFIGS / "base.yaml"), "--set", "train.epoch=3", "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: --set: train.epoch: unknown key 'epoch' (did you mean 'train.epochs'?)"]


def test_validate_missing_file_is_exit_2(runner, app, tmp_cwd):
    result = runner.invoke(app, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: nope.yaml: config file not found"]


def test_schema_is_a_json_schema_of_the_config(runner, app):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "dlcli config"
    assert {"data", "model", "compile", "train", "finetune", "extends"} <= set(schema["properties"])
    assert schema["required"] == ["model"]
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["epochs"]["default"] == 10 and train["epochs"]["description"]
    assert schema["$defs"]["DataConfig"]["additionalProperties"] is False


def test_schema_output_file(runner, app, tmp_cwd):
    result = runner.invoke(app, ["schema", "--output", "dlcli.schema.json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads((tmp_cwd / "dlcli.schema.json").read_text())["title"] == "dlcli config"
    result = runner.invoke(app, ["schema", "--output", "no/such/dir/s.json"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def _imported_modules(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlcli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return proc, modules


@pytest.mark.parametrize(
    "args",
    [
        ["validate", str(CONFIGS / "graph.yaml")],
        ["validate", str(CONFIGS / "child.yaml"), "--print"],
        ["schema"],
        ["--help"],
        ["validate", "--help"],
    ],
    ids=["validate", "validate-print", "schema", "help", "validate-help"],
)
def test_validate_and_schema_never_import_tensorflow_or_keras(args):
    proc, modules = _imported_modules(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert modules, "no -X importtime output"
    assert not modules & {"tensorflow", "keras", "tf_keras", "jax", "torch"}


def test_validate_of_a_bad_config_does_not_import_tensorflow_either():
    proc, modules = _imported_modules(["validate", str(ROOT / "tests" / "bad_configs" / "layer_misspelt.yaml")])
    assert proc.returncode == 2
    assert not modules & {"tensorflow", "keras"}


@pytest.mark.slow
def test_summary_counts_parameters_like_keras(runner, app):
    pytest.importorskip("dlcli.model")
    import keras

    result = runner.invoke(app, ["summary", str(CONFIGS / "base.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.splitlines()[-1])
    by_hand = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")])
    assert info["total_params"] == by_hand.count_params()
    assert [layer["class_name"] for layer in info["layers"]][-2:] == ["Dense", "Dense"]

    result = runner.invoke(app, ["summary", str(CONFIGS / "base.yaml"), "--set", "model.layers.0.Dense.units=5"])
    assert result.exit_code == 0, result.output
    # The table summary exists to print goes to stdout (DESIGN.md, part 2).
    assert "Dense" not in result.stderr
    assert "Dense" in result.stdout
    assert f"total params: {4 * 5 + 5 + 5 * 3 + 3:,}" in result.stdout


def test_summary_of_a_bad_config_fails_before_building(runner, app):
    result = runner.invoke(app, ["summary", str(ROOT / "tests" / "bad_configs" / "layer_kwarg_misspelt.yaml")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {ROOT / 'tests' / 'bad_configs' / 'layer_kwarg_misspelt.yaml'}:7: model.layers.0.Conv2D.filtres: "
        "Conv2D has no argument 'filtres' (did you mean 'filters'?)"
    ]
