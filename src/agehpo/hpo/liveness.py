"""Who runs a trial, whether its worker is alive, and which trials use up the budget."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback as _Retry
from optuna.trial import FrozenTrial, TrialState

_logger = logging.getLogger(__name__)

OWNER_ATTR = "agehpo:owner"  # system attr: the owner record (JSON) of a claimed trial
HEARTBEAT_ATTR = "agehpo:heartbeat"  # system attr: last heartbeat (epoch s), journal storages
WORKER_ATTR = "agehpo.worker"  # user attr (an MLflow tag): host:pid of the worker
FAIL_REASON_ATTR = "fail_reason"  # user attr: why a trial failed
_ATTEMPT_ATTRS = (WORKER_ATTR, FAIL_REASON_ATTR, OWNER_ATTR, HEARTBEAT_ATTR)  # a retry drops
_T = TypeVar("_T")


def quietly(call: Callable[..., _T], *args: object, **kwargs: object) -> _T:
    """Call an API Optuna marks experimental (heartbeats, retries): the upstream way still."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return call(*args, **kwargs)


_RETRY = quietly(_Retry)  # unlimited: each retry follows a death, bounded by user's reruns


@cache
def _namespace() -> str:  # this kernel boot and pid namespace: pids compare only within it
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:  # not Linux: the host name alone has to do
        return ""


def _process_start(pid: int) -> int | None:
    """The start of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:  # the command name (field 2) may hold spaces and ')': count from the last ')'
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except OSError:
        return None


@dataclass(frozen=True)
class Owner:
    """The process that claimed a trial; ``started`` and ``namespace`` are unset off Linux."""

    host: str
    pid: int
    started: int | None
    namespace: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()), _namespace())

    @classmethod
    def of(cls, trial: FrozenTrial) -> Owner | None:
        """The owner record of ``trial``; None when it has none or a malformed one."""
        text = trial.system_attrs.get(OWNER_ATTR)
        try:
            record = json.loads(text) if isinstance(text, str) else None
            return cls(**record) if isinstance(record, dict) else None
        except (ValueError, TypeError):
            return None

    @property
    def worker(self) -> str:
        return f"{self.host}:{self.pid}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def is_local(self) -> bool:
        here = Owner.this_process()
        return self.host == here.host and self.namespace == here.namespace

    def is_gone(self) -> bool:
        """Whether a local owner's process exited or its pid was reused; False elsewhere."""
        if not self.is_local():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # someone else's process, but alive
            pass
        return self.started is not None and _process_start(self.pid) != self.started


def last_sign_of_life(trial: FrozenTrial, now: float) -> float:
    """When ``trial`` last beat (its :data:`HEARTBEAT_ATTR`), else when it started, else now."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    return max(started, float(beat)) if isinstance(beat, (int, float)) else started


def dead_reason(trial: FrozenTrial, *, grace_s: float, now: float) -> str | None:
    """Why a RUNNING trial's worker is known dead, or None while it may be alive; ``grace_s``:
    how long a trial without an owner record may show no sign of life."""
    if (owner := Owner.of(trial)) is not None:  # remote ones: by heartbeat (fail_stale_trials)
        return f"its worker {owner.worker} is gone" if owner.is_gone() else None
    silent = now - last_sign_of_life(trial, now)
    return f"no owner record and no sign of life for {silent:.0f} s" if silent > grace_s else None


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a fresh attempt of a dead or stopped trial, same params (a stale callback)."""
    fresh = copy.copy(trial)
    fresh.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _ATTEMPT_ATTRS}
    fresh.system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in _ATTEMPT_ATTRS}
    quietly(_RETRY, study, fresh)


def fail_dead_trials(
    study: optuna.Study, *, grace_s: float, clock: Callable[[], float] = time.time
) -> list[int]:
    """Fail and retry the RUNNING trials whose worker is dead, by Optuna's stale check too;
    returns the numbers of the trials failed (Optuna's stale ones not listed)."""
    quietly(optuna.storages.fail_stale_trials, study)
    failed: list[int] = []
    now = clock()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if (reason := dead_reason(trial, grace_s=grace_s, now=now)) is None:
            continue
        try:
            frozen = study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished meanwhile: it was alive after all
            continue
        _logger.warning("Trial %d failed and will be retried: %s", trial.number, reason)
        retry_trial(study, frozen)
        failed.append(trial.number)
    return failed


def budget_used(trials: Sequence[FrozenTrial]) -> int:
    """How many trials use up the budget: all but the failures a retry replaced."""
    replaced = {n for trial in trials for n in quietly(_Retry.retry_history, trial)}
    return sum(not (t.state == TrialState.FAIL and t.number in replaced) for t in trials)
