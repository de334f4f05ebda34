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


# Argument names, wrapper forms and dotted paths. Argument *values* are
# not generated: validate does not check them yet (a string or negative
# `units`, a missing required argument of a nested layer are found by the
# builder only).
_units = st.integers(1, 8)
_extra = st.sampled_from([{}, {"unitz": 3}, {"dropout": 0.1}, {"dropuot": 0.1}])
_inner = st.builds(lambda u, extra: {"units": u, **extra}, _units, _extra)
_rnn = st.sampled_from(["LSTM", "GRU", "SimpleRNN", "Lstm"])
_nested = st.one_of(
    st.builds(lambda c, kw: {c: {**kw, "return_sequences": True}}, _rnn, _inner),
    st.builds(lambda c, kw: {"class_name": c, "config": {**kw, "return_sequences": True}}, _rnn, _inner),
)
_entry = st.one_of(
    st.builds(lambda n: {"Bidirectional": {"layer": n}}, _nested),
    st.builds(lambda u, e: {"TimeDistributed": {"layer": {"Dense": {"units": u, **e}}}}, _units,
              st.sampled_from([{}, {"unitz": 2}])),
    st.sampled_from(["collections.OrderedDict", "LayerNormalization", {"Dropout": {"rate": 0.1}}]),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(_entry, min_size=1, max_size=2))
def test_what_validate_accepts_summary_builds(tmp_path, layers):
    path = write(tmp_path, layers)
    try:
        api.validate(str(path))
    except DlcliError:
        return  # refused up front: nothing to build
    api.summary(str(path))  # must not raise
