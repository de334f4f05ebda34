"""Crafted run folders: opening one runs nothing it carries.

Three folders an attacker (or a stranger's zip file) could hand a user,
each opened by the five commands that read run folders (evaluate, predict,
export, `finetune --base RUN`, `train --resume`):

* side-effect: its config.yaml and model.keras name a custom layer whose
  module writes a marker file and prints to stdout when imported;
* shadow: they name a class called `Dense` that would take over Keras's;
* legacy-h5: its model is a legacy HDF5 file whose Lambda layer writes
  the marker when its code runs.

Each must exit 2 with one `error:` line naming --trust-module or --unsafe,
the marker file absent, the module never imported, stdout empty and the
folder untouched. Trusting the module (`--trust-module`,
DLCLI_TRUSTED_MODULES) opens the honest folder; nothing opens the shadow.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "configs" / "mlp_iris.yaml"

_SIDE_EFFECT = '''
import os, sys
from pathlib import Path
Path(os.environ["DLCLI_TEST_MARKER"]).write_text("imported")
print("side effect on stdout")
'''

_SCALE = '''
import keras


class SidefxScale(keras.layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''

_SHADOW = '''
import keras


class Dense(keras.layers.Dense):
    pass
'''

# The Lambda layer's code: writes the marker when it runs.
_LAMBDA = 'lambda t: __import__("pathlib").Path(__import__("os").environ["DLCLI_TEST_MARKER"]).write_text("ran") and t'


def _forget(*packages: str) -> None:
    """Make the packages unimported again (and unregistered in Keras)."""
    import keras

    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]
    for key in ("SidefxScale", "Dense"):
        obj = keras.saving.get_custom_objects().get(key)
        if obj is not None and obj.__module__.split(".")[0] in packages:
            del keras.saving.get_custom_objects()[key]


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory) -> Path:
    """Two packages on sys.path: sidefx (a custom layer, noisy import) and
    shadow (a class named Dense, noisy import)."""
    root = tmp_path_factory.mktemp("pkgs")
    for pkg, body in (("sidefx", _SCALE), ("shadow", _SHADOW)):
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text(_SIDE_EFFECT)
        (root / pkg / "layers.py").write_text(body)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    _forget("sidefx", "shadow")


@pytest.fixture(scope="module")
def custom_run(pkgs, tmp_path_factory) -> Path:
    """A real 1-epoch iris run whose first layer is sidefx.layers.SidefxScale."""
    import os

    import yaml

    from dlcli import api

    work = tmp_path_factory.mktemp("custom")
    os.environ["DLCLI_TEST_MARKER"] = str(work / "setup-marker")
    cfg = yaml.safe_load(IRIS.read_text())
    cfg["model"]["layers"].insert(0, {"sidefx.layers.SidefxScale": {"factor": 0.5}})
    cfg["name"] = "custom"
    run = api.train(cfg, epochs=1, output=work / "runs", progress="none").run_dir
    _forget("sidefx", "shadow")
    return run


def _edit_archive(model: Path, edit) -> None:
    """Rewrite model.keras's config.json with `edit(config)`."""
    with zipfile.ZipFile(model) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(items["config.json"])
    edit(config)
    items["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model, "w") as zf:
        for n, data in items.items():
            zf.writestr(n, data)


def _refingerprint(run: Path) -> None:
    """An attacker edits data_spec.json too: the folder looks unedited."""
    import hashlib

    spec = json.loads((run / "data_spec.json").read_text())
    spec["fingerprint"]["config.yaml"] = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    (run / "data_spec.json").write_text(json.dumps(spec))


def _shadow(run: Path) -> None:
    """The SidefxScale layer becomes shadow.layers.Dense, saved as plain 'Dense'."""
    text = (run / "config.yaml").read_text().replace("sidefx.layers.SidefxScale", "shadow.layers.Dense")
    text = text.replace("factor: 0.5", "units: 4")
    (run / "config.yaml").write_text(text)
    _refingerprint(run)

    def edit(config):
        layer = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "SidefxScale")
        layer.update(module="shadow.layers", class_name="Dense", registered_name="Dense")
        layer["config"] = {**layer["config"], "units": 4}
        layer["config"].pop("factor", None)

    _edit_archive(run / "model.keras", edit)


def _legacy_h5(run: Path) -> None:
    """model.keras becomes a legacy HDF5 model with a code-carrying Lambda."""
    import keras
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["layers"].pop(0)  # no custom layer: only the model file is at stake
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    _refingerprint(run)
    inp = keras.Input((4,))
    out = keras.layers.Lambda(eval(_LAMBDA))(inp)  # noqa: S307 - the test's own lambda
    out = keras.layers.Dense(3, activation="softmax")(out)
    h5 = run / "legacy.h5"
    keras.Model(inp, out).save(h5)
    h5.replace(run / "model.keras")
    # --resume: the checkpoint's weights file is that legacy model too.
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    shutil.copy(run / "model.keras", run / "checkpoints" / state["weights_file"])


def _unfinished(run: Path) -> None:
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state["finished"] = False
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))


VARIANTS = {"side-effect": lambda run: None, "shadow": _shadow, "legacy-h5": _legacy_h5}
COMMANDS = {
    "evaluate": ["evaluate", "{run}"],
    "predict": ["predict", "{run}", "{tmp}/x.csv"],
    "export": ["export", "{run}", "--format", "saved_model"],
    "finetune-base": ["finetune", "--base", "{run}", "{tmp}/pics", "--epochs", "1", "--output", "{tmp}/runs"],
    "resume": ["train", "--resume", "{run}", "--epochs", "2"],
}
# What the one error line must say (the resumed legacy file sits where a
# weights checkpoint belongs: its Lambda is named, --unsafe is what opening
# it would need).
EXPECT = {"legacy-h5": ["--unsafe"], "side-effect": ["--trust-module sidefx", "--unsafe"],
          "shadow": ["--trust-module shadow", "--unsafe"]}
EXPECT_RESUME_H5 = ["legacy Keras model file whose Lambda layer carries code", "not opened without --unsafe"]


def _tree(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


def _prepare(tmp_path: Path, custom_run: Path, variant: str, monkeypatch) -> tuple[Path, Path]:
    from PIL import Image

    run = tmp_path / "run"
    shutil.copytree(custom_run, run)
    _unfinished(run)
    VARIANTS[variant](run)
    work = tmp_path / "work"
    for cls in ("a", "b"):
        (work / "pics" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(work / "pics" / cls / f"{i}.png")
    (work / "x.csv").write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("DLCLI_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.delenv("DLCLI_TRUSTED_MODULES", raising=False)
    _forget("sidefx", "shadow")
    return run, work


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_crafted_folder_runs_nothing(variant, command, custom_run, runner, app, tmp_path, monkeypatch):
    run, work = _prepare(tmp_path, custom_run, variant, monkeypatch)
    before_run, before_work = _tree(run), _tree(work)
    args = [a.replace("{run}", str(run)).replace("{tmp}", str(work)) for a in COMMANDS[command]]

    result = runner.invoke(app, args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    # (--resume reports what it loaded, `data: ...`, before it builds the model)
    others = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith(("error:", "data:"))]
    assert len(errors) == 1 and not others, result.stderr
    expect = EXPECT_RESUME_H5 if (variant, command) == ("legacy-h5", "resume") else EXPECT[variant]
    assert all(e in errors[0] for e in expect), errors[0]
    assert result.stdout == ""
    assert not (tmp_path / "marker").exists(), "code from the folder ran"
    assert "sidefx" not in sys.modules and "shadow" not in sys.modules
    assert _tree(run) == before_run and _tree(work) == before_work


def test_trusted_module_opens_the_folder(custom_run, runner, app, tmp_path, monkeypatch):
    """--trust-module (or DLCLI_TRUSTED_MODULES) is what a user types to open
    a folder whose classes they trust; the predictions are the model's."""
    run, work = _prepare(tmp_path, custom_run, "side-effect", monkeypatch)
    names = ",".join(f"{p} {d} (cm)" for p in ("sepal", "petal") for d in ("length", "width"))
    (work / "flower.csv").write_text(f"{names}\n5.1,3.5,1.4,0.2\n")
    res = runner.invoke(app, ["predict", str(run), str(work / "flower.csv"), "--trust-module", "sidefx", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(rows) == 1 and rows[0]["class"] in ("setosa", "versicolor", "virginica")
    assert (tmp_path / "marker").exists()  # trusted: its import ran, as the user allowed

    _forget("sidefx")
    monkeypatch.setenv("DLCLI_TRUSTED_MODULES", "numpy, sidefx")
    res = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["metrics"]["accuracy"] >= 0


def test_trusted_shadow_is_still_refused(custom_run, runner, app, tmp_path, monkeypatch):
    """Trust does not let a class take over a Keras name."""
    run, _ = _prepare(tmp_path, custom_run, "shadow", monkeypatch)
    for args in (["evaluate", str(run)], ["train", "--resume", str(run), "--epochs", "2"]):
        _forget("shadow")
        res = runner.invoke(app, [*args, "--trust-module", "shadow"])
        assert res.exit_code == 2, res.output
        assert "'Dense'" in res.stderr and "Keras already resolves" in res.stderr, res.stderr
        assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_resume_of_a_legacy_model_checkpoint_with_unsafe(custom_run, runner, app, tmp_path, monkeypatch):
    """--unsafe does not make a legacy model file a checkpoint: exit 2, one
    line, its Lambda never runs, the folder untouched."""
    run, _ = _prepare(tmp_path, custom_run, "legacy-h5", monkeypatch)
    before = _tree(run)
    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--unsafe"])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--resume cannot continue from it" in errors[0], res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "marker").exists()
    assert _tree(run) == before
