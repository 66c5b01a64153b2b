"""The few private Optuna names agehpo needs, in one place, each with the reason.

Optuna offers no public way to write a trial's system attrs or to beat a trial's heartbeat
outside ``Study.optimize``; agehpo's trial runner needs both. When a release renames them,
this module (and its test) is the one place that breaks.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # the heartbeat interface (private)

__all__ = ["BaseHeartbeat", "heartbeat_interval", "record_heartbeat", "set_trial_system_attr"]


def _storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def set_trial_system_attr(study: optuna.Study, trial: optuna.Trial, key: str, value: Any) -> None:
    """Write a system attr of a running trial (``Trial.set_system_attr`` was removed).

    Args:
        study: The trial's study.
        trial: The running trial.
        key: Attr name.
        value: JSON-serialisable value.
    """
    _storage(study).set_trial_system_attr(trial._trial_id, key, value)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of the study's storage, or None when it has none."""
    storage = _storage(study)
    if not isinstance(storage, BaseHeartbeat):
        return None
    return storage.get_heartbeat_interval() or None


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Beat a running trial's heartbeat, as ``Study.optimize``'s private thread does."""
    storage = _storage(study)
    if isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial._trial_id)
