"""Bad input, everywhere: a corpus of wrong commands, data and run folders.

tests/bad_configs/ (through `dlcli validate`) covers what is wrong inside a
config file. This corpus covers the rest: `--set` on train and summary,
data files that do not fit, shapes that do not fit the loss, run folders
and model files that are missing, empty, corrupt or unsafe, and options
out of range. Each case must fail the way a user can act on:

* exit code 2 (nothing run) or 1 (a failure found while running);
* exactly one `error:` line on stderr naming what is wrong and where;
* no traceback;
* nothing written: no run folder, no file beside the inputs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
IRIS = str(CONFIGS / "mlp_iris.yaml")
DIGITS = str(CONFIGS / "cnn_digits.yaml")
QUICK = ["--epochs", "1", "--set", "data.limit=64"]


@dataclass
class Case:
    """One bad input: the command line, files it needs, what must happen.

    `args` may use {tmp} (the case's own folder, also the working
    directory) and {run} (a copy of a trained mlp_iris run).
    `expect` fragments must all appear in the error line (case-insensitive).
    """

    id: str
    args: list[str]
    expect: list[str]
    code: int = 2
    setup: Optional[Callable[[Path, Path], None]] = None
    usage: bool = False  # a Typer usage error (its own panel, not `error:`)
    files: dict[str, str] = field(default_factory=dict)


# -- files the cases need ---------------------------------------------------


def _csv(tmp: Path, name: str, text: str) -> None:
    (tmp / name).write_text(text, encoding="utf-8")


def _good_csv_rows(n: int = 40) -> str:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"]
    for i in range(n):
        a, b = rng.normal(size=2)
        rows.append(f"{a:.3f},{b:.3f},{'yes' if a + b > 0 else 'no'}")
    return "\n".join(rows) + "\n"


def _csv_config(tmp: Path, path: str, target: str = "label", extra: str = "") -> None:
    (tmp / "tab.yaml").write_text(
        f"""name: tab
data: {{source: csv, path: {path}, target: {target}, batch_size: 8}}
model:
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: 2, activation: softmax}}
{extra}""",
        encoding="utf-8",
    )


def _npz_config(tmp: Path, path: str) -> None:
    (tmp / "arr.yaml").write_text(
        f"""name: arr
data: {{source: npz, path: {path}, batch_size: 8}}
model:
  layers:
    - Dense: {{units: 3, activation: softmax}}
""",
        encoding="utf-8",
    )


def _image_config(tmp: Path, path: str) -> None:
    (tmp / "img.yaml").write_text(
        f"""name: img
data: {{source: image_dir, path: {path}, image_size: [16, 16], batch_size: 4}}
model:
  layers:
    - Flatten
    - Dense: {{units: 2, activation: softmax}}
""",
        encoding="utf-8",
    )


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)


def _lambda_model(path: Path) -> None:
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.Dense(3, activation="softmax")(out)
    keras.Model(inp, out).save(path)


def _with_lambda_model(tmp: Path, run: Path) -> None:
    _lambda_model(tmp / "lambda.keras")


def _run_with_lambda_model(tmp: Path, run: Path) -> None:
    (run / "model.keras").unlink()
    _lambda_model(run / "model.keras")


def _corrupt_model(tmp: Path, run: Path) -> None:
    (run / "model.keras").write_bytes(b"PK\x03\x04 this is not a complete zip archive")


def _truncated_model(tmp: Path, run: Path) -> None:
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])


def _empty_dir(name: str) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, run: Path) -> None:
        (tmp / name).mkdir()

    return setup


def _unfinished(tmp: Path, run: Path) -> None:
    (run / "model.keras").unlink()


def _corrupt_state(tmp: Path, run: Path) -> None:
    (run / "checkpoints" / "state.json").write_text('{"epoch": 1, "history": ', encoding="utf-8")


def _state_not_object(tmp: Path, run: Path) -> None:
    (run / "checkpoints" / "state.json").write_text("[1, 2, 3]\n", encoding="utf-8")


def _missing_weights(tmp: Path, run: Path) -> None:
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state["finished"] = False
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    (run / "checkpoints" / state["weights_file"]).unlink()


def _changed_model(tmp: Path, run: Path) -> None:
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state["finished"] = False
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))


def _config_only_folder(tmp: Path, run: Path) -> None:
    (tmp / "half").mkdir()
    shutil.copy(run / "config.yaml", tmp / "half" / "config.yaml")


def _text_file(tmp: Path, run: Path) -> None:
    (tmp / "notes.txt").write_text("not a model\n", encoding="utf-8")


def _file_as_output(tmp: Path, run: Path) -> None:
    (tmp / "taken").write_text("a regular file\n", encoding="utf-8")


# -- the corpus -------------------------------------------------------------

CASES: list[Case] = [
    # --set on train and summary
    Case("train-set-no-equals", ["train", IRIS, "--set", "train.epochs"], ["--set", "key.path=value"]),
    Case("train-set-unknown-section", ["train", IRIS, "--set", "trian.epochs=2"], ["trian", "train"]),
    Case("train-set-unknown-key", ["train", IRIS, "--set", "compile.optimiser=adam"], ["optimiser", "optimizer"]),
    Case("train-set-bad-type", ["train", IRIS, "--set", "data.batch_size=lots"], ["data.batch_size"]),
    Case("train-set-out-of-range", ["train", IRIS, "--set", "data.validation_split=1.5"], ["data.validation_split"]),
    Case("train-set-layer-index", ["train", IRIS, "--set", "model.layers.7.units=3"], ["model.layers.7"]),
    Case("train-set-unknown-layer", ["train", IRIS, "--set", "model.layers.0=Dense2D"], ["Dense2D"]),
    Case("train-set-bad-yaml", ["train", IRIS, "--set", "data.augment=[RandomFlip"], ["--set", "YAML"]),
    Case("summary-set-unknown-key", ["summary", IRIS, "--set", "model.layer=[]"], ["model.layer", "layers"]),
    Case("summary-set-negative-epochs", ["summary", IRIS, "--set", "train.epochs=-3"], ["train.epochs"]),
    Case("summary-set-unknown-source", ["summary", IRIS, "--set", "data.source=irises"], ["irises", "iris"]),
    # options out of range
    Case("train-epochs-zero", ["train", IRIS, "--epochs", "0"], ["--epochs"], usage=True),
    Case("train-unknown-distribute", ["train", IRIS, "--distribute", "mirrorred"], ["mirrorred"]),
    Case("train-no-config", ["train"], ["CONFIG"]),
    Case("train-config-missing", ["train", "{tmp}/nope.yaml"], ["nope.yaml"]),
    Case("predict-top-k-zero", ["predict", "{run}", "x.csv", "--top-k", "0"], ["--top-k"], usage=True),
    Case("export-unknown-format", ["export", "{run}", "--format", "tflight"], ["tflight"]),
    # the output root
    Case("train-output-under-a-file", ["train", IRIS, *QUICK, "--output", "{tmp}/taken/runs"], ["taken"], setup=_file_as_output),
    Case("train-output-in-proc", ["train", IRIS, *QUICK, "--output", "/proc/dlcli-runs"], ["/proc"]),
    # shapes that do not fit the data and the loss
    Case("dense3-on-digits", ["train", DIGITS, *QUICK, "--set", "model.layers.7.Dense.units=3"], ["10 classes"]),
    Case(
        "binary-ce-on-10-classes",
        ["train", DIGITS, *QUICK, "--set", "compile.loss=binary_crossentropy"],
        ["binary_crossentropy"],
    ),
    Case(
        "onehot-labels-one-unit",
        ["train", IRIS, *QUICK, "--set", "model.layers.2.Dense.units=1"],
        ["3 classes"],
    ),
    Case(
        "lstm-on-4d-images",
        ["train", DIGITS, *QUICK, "--set", "model.layers=[LSTM: {units: 8}, Dense: {units: 10, activation: softmax}]"],
        ["LSTM"],
    ),
    Case(
        "regression-three-outputs",
        ["train", str(CONFIGS / "regression_diabetes.yaml"), *QUICK, "--set", "model.layers.2.Dense.units=3"],
        ["model.layers.2"],
    ),
    Case(
        "auc-on-three-classes",
        ["train", IRIS, *QUICK, "--set", "compile.loss=sparse_categorical_crossentropy",
         "--set", "compile.metrics=[accuracy, AUC]"],
        ["compile.metrics", "3 classes"],
    ),
    Case(
        "sparse-ce-on-regression",
        ["train", str(CONFIGS / "regression_diabetes.yaml"), *QUICK, "--set", "compile.loss=sparse_categorical_crossentropy"],
        ["compile.loss", "diabetes"],
    ),
    Case("input-shape-override-wrong", ["train", DIGITS, *QUICK, "--set", "model.input_shape=[4]"], ["model.layers.1"]),
    Case("sequence-data-into-conv2d", ["train", DIGITS, *QUICK, "--set", "data.sequence=true"], ["Conv2D"]),
    Case("class-weight-unknown-class", ["train", IRIS, *QUICK, "--set", "train.class_weight={setosa: 1, rose: 2}"], ["rose"]),
    Case("monitor-unknown-metric", ["train", IRIS, *QUICK, "--set", "train.monitor=val_acuracy"], ["val_acuracy"]),
    # data files
    Case("csv-missing-file", ["train", "{tmp}/tab.yaml", *QUICK], ["missing.csv"],
         setup=lambda t, r: _csv_config(t, "missing.csv")),
    Case("csv-missing-target", ["train", "{tmp}/tab.yaml", *QUICK], ["label"],
         setup=lambda t, r: (_csv(t, "t.csv", "a,b\n1,2\n3,4\n"), _csv_config(t, "t.csv"))),
    Case("csv-non-numeric-cell", ["train", "{tmp}/tab.yaml", *QUICK], ["t.csv"],
         setup=lambda t, r: (_csv(t, "t.csv", _good_csv_rows() + "abc,0.5,yes\n"),
                             _csv_config(t, "t.csv"))),
    Case("csv-empty-file", ["train", "{tmp}/tab.yaml", *QUICK], ["t.csv"],
         setup=lambda t, r: (_csv(t, "t.csv", ""), _csv_config(t, "t.csv"))),
    Case("csv-header-only", ["train", "{tmp}/tab.yaml", *QUICK], ["t.csv"],
         setup=lambda t, r: (_csv(t, "t.csv", "a,b,label\n"), _csv_config(t, "t.csv"))),
    Case("csv-ragged-rows", ["train", "{tmp}/tab.yaml", *QUICK], ["t.csv"],
         setup=lambda t, r: (_csv(t, "t.csv", "a,b,label\n1,2,yes\n3,no\n5,6,7,8\n"), _csv_config(t, "t.csv"))),
    Case("csv-is-a-folder", ["train", "{tmp}/tab.yaml", *QUICK], ["t.csv"],
         setup=lambda t, r: ((t / "t.csv").mkdir(), _csv_config(t, "t.csv"))),
    Case("csv-no-path", ["train", IRIS, *QUICK, "--set", "data.source=csv"], ["data.path"]),
    Case("npz-missing-file", ["train", "{tmp}/arr.yaml", *QUICK], ["nothing.npz"],
         setup=lambda t, r: _npz_config(t, "nothing.npz")),
    Case("npz-missing-arrays", ["train", "{tmp}/arr.yaml", *QUICK], ["a.npz"],
         setup=lambda t, r: (np.savez(t / "a.npz", features=np.zeros((10, 4))), _npz_config(t, "a.npz"))),
    Case("npz-length-mismatch", ["train", "{tmp}/arr.yaml", *QUICK], ["a.npz"],
         setup=lambda t, r: (np.savez(t / "a.npz", x=np.zeros((10, 4)), y=np.zeros(7, int)), _npz_config(t, "a.npz"))),
    Case("npz-not-an-archive", ["train", "{tmp}/arr.yaml", *QUICK], ["a.npz"],
         setup=lambda t, r: ((t / "a.npz").write_text("x,y\n1,2\n"), _npz_config(t, "a.npz"))),
    Case("image-dir-missing", ["train", "{tmp}/img.yaml", *QUICK], ["pics"],
         setup=lambda t, r: _image_config(t, "pics")),
    Case("image-dir-empty", ["train", "{tmp}/img.yaml", *QUICK], ["pics"],
         setup=lambda t, r: ((t / "pics").mkdir(), _image_config(t, "pics"))),
    Case("image-dir-one-class", ["train", "{tmp}/img.yaml", *QUICK], ["class"],
         setup=lambda t, r: ([_png(t / "pics" / "cat" / f"{i}.png", i * 20) for i in range(4)], _image_config(t, "pics"))),
    Case("image-dir-no-images", ["train", "{tmp}/img.yaml", *QUICK], ["pics"],
         setup=lambda t, r: ([(t / "pics" / c).mkdir(parents=True) or (t / "pics" / c / "a.txt").write_text("x")
                              for c in ("cat", "dog")], _image_config(t, "pics"))),
    Case("keras-set-not-cached", ["train", str(CONFIGS / "cnn_mnist.yaml"), *QUICK], ["mnist.npz"]),
    # run folders and model files
    Case("evaluate-missing-run", ["evaluate", "{tmp}/runs/x/1"], ["runs/x/1"]),
    Case("evaluate-empty-folder", ["evaluate", "{tmp}/empty"], ["empty"], setup=_empty_dir("empty")),
    Case("evaluate-text-file", ["evaluate", "{tmp}/notes.txt"], ["notes.txt"], setup=_text_file),
    Case("evaluate-corrupt-model", ["evaluate", "{run}"], ["model.keras"], setup=_corrupt_model),
    Case("evaluate-truncated-model", ["evaluate", "{run}"], ["model.keras"], setup=_truncated_model),
    Case("evaluate-lambda-model", ["evaluate", "{tmp}/lambda.keras"], ["--unsafe"], setup=_with_lambda_model),
    Case("evaluate-unfinished-run", ["evaluate", "{run}"], ["model.keras"], setup=_unfinished),
    Case("evaluate-data-missing", ["evaluate", "{run}", "--data", "{tmp}/other.csv"], ["other.csv"]),
    Case("predict-missing-run", ["predict", "{tmp}/nothing", "{tmp}/x.csv"], ["nothing"]),
    Case("predict-empty-folder", ["predict", "{tmp}/empty", "{tmp}/x.csv"], ["empty"], setup=_empty_dir("empty")),
    Case("predict-lambda-run", ["predict", "{run}", "{tmp}/x.csv"], ["--unsafe"], setup=_run_with_lambda_model),
    Case("predict-corrupt-model", ["predict", "{run}", "{tmp}/x.csv"], ["model.keras"], setup=_corrupt_model),
    Case("export-missing-run", ["export", "{tmp}/gone", "--format", "tflite"], ["gone"]),
    Case("export-empty-folder", ["export", "{tmp}/empty", "--format", "tflite"], ["empty"], setup=_empty_dir("empty")),
    Case("export-lambda-run", ["export", "{run}", "--format", "saved_model"], ["--unsafe"], setup=_run_with_lambda_model),
    Case("export-corrupt-model", ["export", "{run}", "--format", "saved_model"], ["model.keras"], setup=_corrupt_model),
    # resume
    Case("resume-missing-folder", ["train", "--resume", "{tmp}/runs/iris/9"], ["runs/iris/9"]),
    Case("resume-empty-folder", ["train", "--resume", "{tmp}/empty"], ["empty"], setup=_empty_dir("empty")),
    Case("resume-not-a-run", ["train", "--resume", str(CONFIGS)], ["configs"]),
    Case("resume-config-only", ["train", "--resume", "{tmp}/half"], ["half"], setup=_config_only_folder),
    Case("resume-finished", ["train", "--resume", "{run}"], ["already finished", "--epochs larger than 1"]),
    Case("resume-finished-same-epochs", ["train", "--resume", "{run}", "--epochs", "1"], ["--epochs larger than 1"]),
    Case("resume-corrupt-state", ["train", "--resume", "{run}"], ["state.json"], setup=_corrupt_state),
    Case("resume-state-not-object", ["train", "--resume", "{run}"], ["state.json"], setup=_state_not_object),
    Case("resume-missing-weights", ["train", "--resume", "{run}", "--epochs", "2"], ["is missing"], setup=_missing_weights),
    Case(
        "resume-model-changed",
        ["train", "--resume", "{run}", "--epochs", "2", "--set", "model.layers.0.Dense.units=7"],
        ["does not fit"],
        setup=_changed_model,
    ),
    Case("finetune-missing-data", ["finetune", "--base", "mobilenet_v2", "{tmp}/nopics", "--weights", "none"], ["nopics"]),
    Case("finetune-unknown-base", ["finetune", "--base", "mobilenett", "{tmp}/pics"], ["mobilenett"],
         setup=lambda t, r: [_png(t / "pics" / c / f"{i}.png", i * 30) for c in ("a", "b") for i in range(3)]),
]


def test_corpus_is_large():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished 1-epoch mlp_iris run (copied per case before use)."""
    from dlcli import api

    root = tmp_path_factory.mktemp("trained")
    result = api.train(IRIS, epochs=1, output=root, progress="none")
    return result.run_dir


def _tree(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, runner, app, tmp_path, monkeypatch, trained_run):
    check_case(case, runner, app, tmp_path, monkeypatch, trained_run)


def check_case(case, runner, app, tmp_path, monkeypatch, trained_run):
    """Run one Case through the CLI and check it failed cleanly (also used
    by the other bad-input corpora, e.g. tests/test_trust_bad_inputs.py)."""
    work = tmp_path / "work"
    work.mkdir()
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    if case.setup:
        case.setup(work, run)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    # An input for predict, so that its cases fail on what they test.
    (work / "x.csv").write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n", encoding="utf-8")
    before_work, before_run = _tree(work), _tree(run)
    args = [a.replace("{tmp}", str(work)).replace("{run}", str(run)) for a in case.args]

    result = runner.invoke(app, args)

    out = result.output
    assert result.exit_code == case.code, f"exit {result.exit_code}: {out}\n{result.exception!r}"
    assert "Traceback" not in out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if case.usage:
        assert all(e.lower() in result.stderr.lower() for e in case.expect), result.stderr
    else:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert all(e.lower() in errors[0].lower() for e in case.expect), errors[0]
    assert result.stdout == ""
    # Nothing written: no run folder, nothing beside the inputs, the run
    # folder untouched.
    assert _tree(work) == before_work, sorted(set(_tree(work)) ^ set(before_work))
    assert _tree(run) == before_run, sorted(set(_tree(run)) ^ set(before_run))
    assert not (tmp_path / "keras_home").exists() or not any((tmp_path / "keras_home").rglob("*.npz"))
