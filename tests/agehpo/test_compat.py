"""Each private Optuna name agehpo uses, exercised on real Optuna objects.

A failure here means an Optuna release renamed or changed one: fix ``agehpo._compat``.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from agehpo import _compat

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
]


class _Beating(JournalStorage, _compat.Heartbeat):
    """A journal storage whose every RUNNING trial is stale, and that counts its beats."""

    def __init__(self, path: Path) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.beats: list[int] = []

    def record_heartbeat(self, trial_id: int) -> None:
        self.beats.append(trial_id)

    def stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [_compat.trial_id(trial) for trial in running]

    def get_heartbeat_interval(self) -> int | None:
        return 3600

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def test_storage_of_and_trial_id_name_the_storage_and_its_trial(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "a.journal")))
    study = optuna.create_study(storage=storage)
    study.ask()
    trial = study.ask()
    assert _compat.storage_of(study) is storage
    frozen = study.get_trials()[1]
    assert _compat.trial_id(trial) == _compat.trial_id(frozen)
    assert storage.get_trial(_compat.trial_id(trial)).number == 1


def test_set_trial_system_attr_writes_a_running_trials_system_attr(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/a.db")
    trial = study.ask()
    _compat.set_trial_system_attr(study, trial, "k", {"v": 1})
    assert study.get_trials()[0].system_attrs["k"] == {"v": 1}


def test_the_heartbeat_interface_reaches_optunas_thread_and_stale_check(tmp_path: Path) -> None:
    storage = _Beating(tmp_path / "b.journal")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    _compat.record_heartbeat(study, trial)
    with _compat.heartbeat_thread(study, trial):  # Optuna's thread beats as it starts
        pass
    assert storage.beats == [_compat.trial_id(trial)] * 2
    optuna.storages.fail_stale_trials(study)  # calls the private stale-trial hook
    assert study.get_trials()[0].state == TrialState.FAIL


def test_storages_without_heartbeats_are_left_alone(tmp_path: Path) -> None:
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "c"))))
    trial = study.ask()
    _compat.record_heartbeat(study, trial)
    with _compat.heartbeat_thread(study, trial):
        pass
    assert study.get_trials()[0].system_attrs == {}
