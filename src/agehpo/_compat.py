"""The private Optuna names agehpo needs, each behind one small function with its reason:
an Optuna release that renames one breaks only here and ``tests/agehpo/test_compat.py``."""

from __future__ import annotations

import abc
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, BaseHeartbeatThread, get_heartbeat_thread


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage: ``Study`` has no public accessor for it."""
    return study._storage


def trial_id(trial: optuna.trial.BaseTrial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial: storage methods take it, trials keep it private."""
    return trial._trial_id  # type: ignore[union-attr]


def set_trial_system_attr(study: optuna.Study, trial: optuna.Trial, key: str, value: Any) -> None:
    """Write a running trial's system attr (``Trial.set_system_attr`` was removed)."""
    storage_of(study).set_trial_system_attr(trial_id(trial), key, value)


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Beat a trial's heartbeat once; a no-op on storages without heartbeats."""
    storage = storage_of(study)
    if isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial_id(trial))


def heartbeat_thread(study: optuna.Study, trial: optuna.Trial) -> BaseHeartbeatThread:
    """Optuna's own heartbeat thread, a context manager; ``Study.optimize`` keeps it private."""
    return get_heartbeat_thread(trial_id(trial), storage_of(study))


class Heartbeat(BaseHeartbeat):
    """Optuna's heartbeat interface (a private module), whose stale-trial hook is private."""

    @abc.abstractmethod
    def stale_trial_ids(self, study_id: int) -> list[int]:
        """The ids of the study's RUNNING trials that stopped beating."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.stale_trial_ids(study_id)
