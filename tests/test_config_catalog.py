"""The Keras catalogue: generated from Keras, picked by version, cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from dlcli.config.catalog import FORMAT, SHIPPED_CATALOG
from dlcli.config.catalog import store as catalog

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "configs"


def test_shipped_catalogue_is_for_the_installed_keras():
    data = json.loads(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    # When this fails after a Keras upgrade: python -m dlcli.config.catalog
    assert data["keras_version"] == version("keras")
    assert data["format"] == FORMAT


def test_shipped_catalogue_knows_keras_names_and_arguments():
    cat = catalog.get_catalog()
    assert cat is not None
    assert cat.dict_target("layers", "Conv2D") == "Conv2D"
    assert cat.dict_target("layers", "Convolution2D") == "Conv2D"  # a Keras alias
    dense = cat.arguments("layers", "Dense")["args"]
    assert {"units", "activation", "name", "dtype", "trainable", "input_shape"} <= set(dense)
    assert {"learning_rate", "beta_1", "clipnorm", "weight_decay"} <= set(cat.arguments("optimizers", "Adam")["args"])
    assert cat.accepts("losses", "mse") and cat.accepts("losses", "categorical_crossentropy")
    assert cat.accepts("metrics", "acc") and cat.accepts("metrics", "accuracy")
    assert cat.accepts("optimizers", "adam") and not cat.accepts("optimizers", "adamm")
    assert cat.dict_target("optimizers", "ADAM") == "Adam"  # Keras resolves class names case-insensitively
    assert cat.dict_target("schedules", "ExponentialDecay") == "ExponentialDecay"
    assert cat.dict_target("backbones", "mobilenet_v2") == "MobileNetV2"
    assert cat.accepts("activations", "relu") and cat.accepts("initializers", "he_normal")


@pytest.fixture
def no_catalogue(tmp_path, monkeypatch):
    """No shipped catalogue for this Keras, an empty user cache, Keras not loaded."""
    monkeypatch.setattr(catalog, "SHIPPED_CATALOG", tmp_path / "missing.json")
    monkeypatch.setattr(catalog, "_memo", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    return tmp_path


def test_a_catalogue_for_another_keras_version_is_not_used(no_catalogue, monkeypatch):
    data = json.loads(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    data["keras_version"] = "0.0.1"
    stale = no_catalogue / "stale.json"
    stale.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(catalog, "SHIPPED_CATALOG", stale)
    assert catalog.get_catalog() is None


def test_the_user_cache_is_used_when_the_shipped_one_does_not_match(no_catalogue):
    cached = catalog.cache_path(version("keras"))
    assert cached.is_relative_to(no_catalogue / "cache" / "dlcli")
    cached.parent.mkdir(parents=True)
    cached.write_text(SHIPPED_CATALOG.read_text(encoding="utf-8"), encoding="utf-8")
    cat = catalog.get_catalog()
    assert cat is not None and cat.dict_target("layers", "Dense") == "Dense"


def test_without_a_catalogue_validate_checks_structure_and_says_so(no_catalogue, runner, app, write_file):
    path = write_file("m.yaml", "model:\n  layers:\n    - Conv2d: {filters: 3}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("notice: no Keras catalogue for keras ")
    assert lines[1].startswith("ok: ")
    # Structure is still checked.
    bad = write_file("bad.yaml", "model:\n  layers: [Dense]\ntrain: {epoch: 1}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "did you mean 'epochs'?" in result.stderr


@pytest.mark.slow
def test_generated_from_keras_equals_shipped_and_cached_on_demand(tmp_path):
    """Regenerate in a fresh process: the shipped file is exactly what Keras
    gives, and a TF-importing process without a matching catalogue caches one."""
    out = tmp_path / "regenerated.json"
    script = f"""
import json, sys
from pathlib import Path
from dlcli.config.catalog import generate, store as catalog
assert generate.main(["--output", {str(out)!r}]) == 0
catalog.SHIPPED_CATALOG = Path({str(tmp_path / 'none.json')!r})
import keras  # a training process: keras is loaded
cat = catalog.get_catalog()  # asked of Keras now, without probe layers, not cached
assert cat is not None and cat.dict_target("layers", "Conv2D") == "Conv2D"
assert not catalog.cache_path(cat.keras_version).exists()
cat = catalog.ensure_catalog()  # as summary does: the full one, cached
print(catalog.cache_path(cat.keras_version))
"""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shipped = json.loads(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    assert json.loads(out.read_text(encoding="utf-8")) == shipped
    cached = Path(proc.stdout.strip().splitlines()[-1])
    assert cached.is_relative_to(tmp_path / "cache")
    assert json.loads(cached.read_text(encoding="utf-8")) == shipped
