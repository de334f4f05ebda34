"""Export of models that take raw strings (the shipped text_reviews config:
text into TextVectorization; structured_penguins: a FeatureSpace with
string columns), through the real CLI, for every format in the export
table: SavedModel carries the strings and passes its parity check; TFLite
and ONNX cannot, and say so in one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlcli.export.table import EXPORT_FORMATS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def string_runs(tmp_path_factory):
    """{config: run folder} for the two string-input configs, 2 epochs each."""
    from typer.testing import CliRunner

    from dlcli.cli import app
    from dlcli.data.demo_tables import write_penguins_csv

    tmp = tmp_path_factory.mktemp("strings")
    runner = CliRunner()
    texts = _json(runner.invoke(app, ["demo-data", str(tmp / "texts"), "--kind", "texts", "--json"]))["path"]
    write_penguins_csv(tmp / "penguins.csv")
    runs = {}
    for config, data in (("text_reviews", texts), ("structured_penguins", tmp / "penguins.csv")):
        info = _json(runner.invoke(app, ["train", str(CONFIGS / f"{config}.yaml"), "--set", f"data.path={data}",
                                         "--epochs", "2", "--output", str(tmp / "runs"), "--json"]))
        runs[config] = tmp / "runs" / info["name"] / "1"
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("config", ["text_reviews", "structured_penguins"])
def test_every_export_format_on_a_string_input_model(string_runs, runner, app, config):
    run = string_runs[config]
    carrying = [f.name for f in EXPORT_FORMATS if f.no_strings is None]
    assert carrying == ["saved_model"]
    for row in EXPORT_FORMATS:
        result = runner.invoke(app, ["export", str(run), "--format", row.name, "--json"])
        if row.no_strings is None:
            out = _json(result)
            assert out["parity"]["passed"] and out["parity"]["agreement"] >= 0.99, out["parity"]
            assert "string" in {i["dtype"] for i in out["inputs"]}
            continue
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --format:"), result.stderr
        assert "raw strings" in lines[0] and row.name in lines[0] and "--format saved_model" in lines[0]
        assert "Traceback" not in result.output
    export = run / "export"
    assert sorted(p.name for p in export.iterdir()) == ["export.json", "saved_model"]  # nothing half-written
    assert set(json.loads((export / "export.json").read_text())["exports"]) == {"saved_model"}


@pytest.mark.slow
def test_the_saved_model_takes_raw_text_and_agrees_with_keras(string_runs, runner, app):
    """A client feeds the SavedModel plain strings and gets the Keras
    model's probabilities."""
    import keras
    import tensorflow as tf

    run = string_runs["text_reviews"]
    if not (run / "export" / "saved_model").is_dir():  # this test may run alone, or on another worker
        _json(runner.invoke(app, ["export", str(run), "--format", "saved_model", "--json"]))
    texts = np.array(["a superb and wonderful film", "dull, boring and far too long"], dtype=object)
    model = keras.saving.load_model(run / "model.keras")
    want = model.predict(tf.constant(texts), verbose=0)
    served = tf.saved_model.load(str(run / "export" / "saved_model")).signatures["serving_default"]
    (got,) = served(**{next(iter(served.structured_input_signature[1])): tf.constant(texts)}).values()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
