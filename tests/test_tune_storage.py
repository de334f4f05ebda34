"""Two workers opening one new study database at the same moment: the one
whose table creation loses the race opens the tables the other made."""

from __future__ import annotations

import pytest

from dlcli.errors import ConfigError
from dlcli.tune.study import StudySpec, open_storage


def _spec(tmp_path, url=None):
    return StudySpec(name="s", study_dir=tmp_path, storage_url=url or f"sqlite:///{tmp_path / 'study.db'}",
                     metric="val_loss", direction="minimize", trials=1, timeout=None, sampler="tpe",
                     pruner="none", seed=0, epochs=1, heartbeat=60, shared=False)


def _racing(monkeypatch, message, times):
    import optuna.storages
    from sqlalchemy.exc import OperationalError

    real = optuna.storages.RDBStorage
    calls = []

    def storage(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("CREATE TABLE studies", {}, Exception(message))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    return calls


def test_a_lost_table_creation_race_opens_the_other_workers_tables(monkeypatch, tmp_path):
    calls = _racing(monkeypatch, "table study_system_attributes already exists", times=1)
    storage = open_storage(_spec(tmp_path))
    assert len(calls) == 2 and (tmp_path / "study.db").is_file()
    assert storage.get_all_studies() == []


def test_other_storage_errors_are_one_config_error_at_once(monkeypatch, tmp_path):
    calls = _racing(monkeypatch, "unable to open database file", times=5)
    with pytest.raises(ConfigError) as info:
        open_storage(_spec(tmp_path))
    assert len(calls) == 1 and "cannot open the study storage" in info.value.message
    assert info.value.key == "--storage"
