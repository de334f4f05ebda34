"""The data-source registry and the typed data spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlcli.config import config_from_dict
from dlcli.data import DataSpec, load_data, load_inputs
from dlcli.data import registry
from dlcli.errors import ConfigError, DataError


def _cfg(data: dict) -> object:
    return config_from_dict({"data": data, "model": {"layers": ["Flatten", {"Dense": {"units": 2}}]}})


def test_a_registered_source_is_validated_loaded_and_found_by_suffix(tmp_path, monkeypatch):
    # One register_source call: validation, load_data and --data by suffix see it.
    monkeypatch.setitem(registry.SOURCES, "tiny", registry.Source(
        "tiny", "dlcli.data.npz:npz_source", "file", path="file", suffixes=(".tiny",), reader="array"))
    with pytest.raises(ConfigError, match="data.source tiny needs data.path"):
        _cfg({"source": "tiny"})
    f = tmp_path / "x.tiny"
    with open(f, "wb") as out:
        np.savez(out, x=np.arange(40, dtype=np.float32).reshape(20, 2), y=np.arange(20) % 2)
    b = load_data(_cfg({"source": "tiny", "path": str(f), "validation_split": 0.0, "test_split": 0.0}))
    assert b.num_train == 20 and b.spec.class_names == ["0", "1"]
    assert registry.source_for_path(f).name == "tiny"
    assert registry.reader_for_path(tmp_path / "a.parquet").name == "table"
    assert registry.reader_for_path(tmp_path).name == "image"


def test_unknown_source_suggests_a_registered_one():
    with pytest.raises(ConfigError, match="unknown data source 'irs'") as err:
        _cfg({"source": "irs"})
    assert "did you mean 'iris'?" in str(err.value.hint)


def test_spec_is_typed_and_reads_older_files(tmp_path):
    b = load_data(_cfg({"source": "iris"}))
    assert isinstance(b.spec, DataSpec) and b.spec.standardize is not None
    assert len(b.spec.standardize.mean) == 4 and b.spec.counts.train == b.num_train
    with pytest.raises(ValueError):
        DataSpec(source="iris", no_such_key=1)
    # A data_spec.json from before the registry: no version, an unknown key.
    old = b.spec.to_json()
    old.pop("version")
    old["retired_key"] = {"anything": 1}
    (tmp_path / "data_spec.json").write_text(json.dumps(old))
    back = DataSpec.load(tmp_path / "data_spec.json")
    assert back.features == b.spec.features and back.standardize == b.spec.standardize
    # load_inputs takes the mapping read from such a file as well.
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    names, x, _ = next(iter(load_inputs(old, [str(tmp_path / "x.npy")], 8)))
    assert x.shape == (3, 4) and len(names) == 3


def test_predict_input_kind_is_checked_through_the_readers(tmp_path):
    spec = load_data(_cfg({"source": "iris"})).spec
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="is an image, but this model takes CSV or Parquet rows or NPZ / NPY arrays"):
        load_inputs(spec, [str(tmp_path / "a.png")], 4)
