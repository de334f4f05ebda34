"""At the end of train, model.keras is reloaded in safe mode and compared
with the trained model: a user layer that would not reload is exit 1, one
line naming the layer and the fix, and the run's metrics.json says so."""

from __future__ import annotations

import json

import pytest

USER_LAYERS = '''
import keras


class Scale(keras.layers.Layer):
    """Its get_config forgets `scale`: it reloads as scale=1."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}


class Factor(keras.layers.Layer):
    """A required argument its get_config leaves out: it cannot be rebuilt."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"name": self.name}


class Good(Scale):
    def get_config(self):
        return {**keras.layers.Layer.get_config(self), "scale": self.scale}
'''

CONFIG = """
data: {{source: iris}}
model:
  layers:
    - Dense: {{units: 4}}
    - {layer}
      name: user
    - Dense: {{units: num_classes, activation: softmax}}
train: {{epochs: 1}}
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "reload_user_layers.py").write_text(USER_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("layer,expect", [
    ("reload_user_layers.Scale: {scale: 3.0}", "has scale=3.0, but 1.0 after reloading"),
    ("reload_user_layers.Factor: {factor: 2.0}", "cannot be rebuilt from its get_config()"),
])
def test_a_layer_that_does_not_reload_fails_the_run(layer, expect, user_module, runner, app):
    (user_module / "c.yaml").write_text(CONFIG.format(layer=layer))
    result = runner.invoke(app, ["train", "c.yaml", "--output", "runs"])

    assert result.exit_code == 1, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in result.output
    cls = layer.split(":")[0]
    assert "model.keras does not reload as trained: layer 'user'" in error[0] and expect in error[0]
    assert f"give {cls} a get_config() that returns every __init__ argument" in error[0]
    metrics = json.loads((user_module / "runs" / "c" / "1" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and expect in metrics["reload"]["error"]
    from dlcli.runlist import run_status

    assert run_status(user_module / "runs" / "c" / "1") == "failed"


def test_a_layer_that_reloads_passes(user_module, runner, app):
    (user_module / "c.yaml").write_text(CONFIG.format(layer="reload_user_layers.Good: {scale: 3.0}"))
    result = runner.invoke(app, ["train", "c.yaml", "--output", "runs"])
    assert result.exit_code == 0, result.output
    assert "status" not in json.loads((user_module / "runs" / "c" / "1" / "metrics.json").read_text())
