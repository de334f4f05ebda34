"""`dlcli validate` agrees with `dlcli summary`: what validate accepts,
summary builds (a generated corpus), and nested layers are checked too."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.errors import DlcliError


def write(tmp_path, layers, name="agree"):
    cfg = {
        "name": name,
        "data": {"source": "digits"},
        "model": {"input_shape": [8, 8], "layers": [*layers, "Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def test_nested_layer_in_keras_serialized_form_builds(tmp_path):
    path = write(tmp_path, [{"Bidirectional": {"layer": {"class_name": "LSTM", "config": {"units": 6, "return_sequences": True}}}}])
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
    result = CliRunner().invoke(app, ["summary", str(path)])
    assert result.exit_code == 0, result.output
    assert "bidirectional" in result.stdout.lower()


def test_misspelt_argument_of_a_nested_layer_is_refused_by_validate(tmp_path):
    for nested in ({"class_name": "LSTM", "config": {"unitz": 6}}, {"LSTM": {"unitz": 6}}):
        path = write(tmp_path, [{"Bidirectional": {"layer": nested}}])
        result = CliRunner().invoke(app, ["validate", str(path)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "layer.unitz" in lines[0] and "did you mean 'units'" in lines[0]


def test_dotted_path_that_is_not_a_layer_is_refused_by_validate(tmp_path):
    path = write(tmp_path, ["collections.OrderedDict"])
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "is not a Keras layer class" in result.stderr.strip().splitlines()[-1]


# Argument names, wrapper forms, dotted paths and argument values, good
# and bad: a string, zero, negative, fractional or boolean count, a rate
# out of range, text for a flag, a missing required argument (also of a
# layer nested in a wrapper, in both forms), keras.layers.X that is no layer.
_units = st.sampled_from([1, 3, 8, 0, -2, "4", True, 2.5, "num_classes"])
_rate = st.sampled_from([0.0, 0.25, 1, 1.5, -0.1, "0.2", True])
_flag = st.sampled_from([True, False, "no", 1])
_extra = st.sampled_from([{}, {"unitz": 3}, {"dropout": 0.1}, {"dropuot": 0.1}, {"dropout": "x"}])


def _with_units(u, extra):
    return {**({} if u is None else {"units": u}), **extra}


_inner = st.builds(_with_units, st.one_of(_units, st.none()), _extra)
_rnn = st.sampled_from(["LSTM", "GRU", "SimpleRNN", "Lstm", "keras.layers.LSTM"])
_nested = st.one_of(
    st.builds(lambda c, kw, f: {c: {**kw, "return_sequences": f}}, _rnn, _inner, _flag),
    st.builds(lambda c, kw: {"class_name": c, "config": {**kw, "return_sequences": True}}, _rnn, _inner),
)
_kernel = st.sampled_from([2, [3], [2, 2], 0, "3", True, [0], 2.0])
_entry = st.one_of(
    st.builds(lambda n: {"Bidirectional": {"layer": n}}, _nested),
    st.builds(lambda u, e: {"TimeDistributed": {"layer": {"Dense": _with_units(u, e)}}}, st.one_of(_units, st.none()),
              st.sampled_from([{}, {"unitz": 2}, {"use_bias": "yes"}])),
    st.builds(lambda f, k: {"Conv1D": {"filters": f, "kernel_size": k, "padding": "same"}}, _units, _kernel),
    st.builds(lambda r: {"Dropout": {"rate": r}}, _rate),
    st.builds(lambda u: {"keras.layers.Dense": {"units": u}}, _units),
    st.sampled_from(["collections.OrderedDict", "keras.layers.deserialize", "keras.layers.Nope", "LayerNormalization",
                     "keras.layers.LayerNormalization", {"Dropout": None}]),
)


def _outcome(fn, path):
    """None when `fn(path)` works, else the one-line error (a DlcliError, never another)."""
    try:
        fn(str(path))
    except DlcliError as err:
        return str(err)
    return None


def _keras_refuses(path):
    """Whether the model builder alone (Keras, no catalogue checks) refuses the config."""
    from dlcli.config.loader import load_document
    from dlcli.config.validate import build_config
    from dlcli.model import build_model

    data, positions = load_document(str(path), [])
    try:
        build_model(build_config(data, positions, str(path)), None, num_classes=10)
    except Exception:  # noqa: BLE001 - any refusal counts
        return True
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(_entry, min_size=1, max_size=2))
def test_validate_accepts_exactly_what_summary_builds(tmp_path, layers):
    path = write(tmp_path, layers)
    refused = _outcome(api.validate, path)
    built = _outcome(api.summary, path)
    if refused is None:
        assert built is None, f"validate accepted {layers}, summary refused: {built}"
        return
    assert built is not None, f"validate refused {layers} ({refused}), summary built it"
    assert "\n" not in refused and refused.count(str(path)) == 1
    # Not stricter than Keras, except on purpose: Keras takes `true` as the
    # count 1, and any text ('no' too) as a true flag.
    if not (refused.endswith(("got true", "got false")) or "must be true or false" in refused):
        assert _keras_refuses(path), f"validate refused {layers} ({refused}), Keras builds it"
