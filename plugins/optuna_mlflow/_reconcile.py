"""Repair what a killed process left behind in MLflow, from Optuna's storage.

Rules (one study, one experiment):

* A parent run of the study is *stale* when it is RUNNING, is not the current parent, and
  either the caller says every other parent is dead (``all_other_parents_stale``) or it
  has shown no sign of life for ``stale_after`` seconds. Sign of life = the newest of its
  start time and its ``optuna_mlflow.heartbeat`` tag, which the live callback refreshes
  (at most every ``heartbeat_interval``) while trials run. A pid cannot be checked across
  machines, hence the heartbeat. On its own host it can: a RUNNING parent whose
  ``optuna_mlflow.owner`` names a process of this host that is gone (no such pid, or a pid
  reused by a process started at another time) is stale at once. Stale parents end KILLED,
  tagged ``optuna_mlflow.ended_by = reconciler``.
* A trial run is left alone when its parent is the current parent or a live (RUNNING, not
  stale) one: some process is still writing it. Unless its own owner is a gone process of
  this host (a dead worker under a live, shared parent).
* Only runs of this study count: the writer matches on the study's uid, so runs of another
  study of the same name are never touched.
* Otherwise a RUNNING trial run is rewritten from the storage: a finished trial gets its
  data and status (FAIL -> FAILED, ...); a trial still RUNNING in the storage (its process
  died) ends KILLED. A finished run whose ``optuna.trial_state`` disagrees with the
  storage (e.g. Optuna later failed a stale trial) is rewritten too.
* A RUNNING trial run with no parent of the study (optuna_integration's layout: no parent,
  or a run of the user's) is judged like a parent: left alone unless its owner is gone,
  ``all_other_parents_stale``, or it started more than ``stale_after`` seconds ago.
* With ``fill_missing``, finished trials without any run get one, under the current parent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import optuna
from mlflow.entities import Run, RunTag

from optuna_mlflow import _keys as k
from optuna_mlflow._owner import owner_is_gone
from optuna_mlflow._writer import TrialRunWriter

__all__ = ["ReconcileReport", "reconcile_study"]

RECONCILER = "reconciler"


@dataclass
class ReconcileReport:
    """What :func:`reconcile_study` changed (run ids).

    Attributes:
        parents_killed: Stale parent runs ended KILLED.
        runs_rewritten: Trial runs rewritten from finished trials.
        runs_killed: Trial runs of trials whose process died, ended KILLED.
        runs_created: Runs written for finished trials that had none.
    """

    parents_killed: list[str] = field(default_factory=list)
    runs_rewritten: list[str] = field(default_factory=list)
    runs_killed: list[str] = field(default_factory=list)
    runs_created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Number of runs changed or created."""
        return sum(
            len(x)
            for x in (self.parents_killed, self.runs_rewritten, self.runs_killed, self.runs_created)
        )


def _last_seen(run: Run) -> float:
    seen = (run.info.start_time or 0) / 1000.0
    beat = run.data.tags.get(k.HEARTBEAT, "")
    try:
        return max(seen, float(beat))
    except ValueError:
        return seen


def reconcile_study(
    study: optuna.Study,
    writer: TrialRunWriter,
    *,
    stale_after: float | None = 600.0,
    all_other_parents_stale: bool = False,
    fill_missing: bool = False,
    now: float | None = None,
) -> ReconcileReport:
    """Bring the study's runs in ``writer``'s experiment in line with Optuna's storage.

    See the module docstring for the rules. ``writer.parent_run_id`` is the current parent
    (never touched, nor its trial runs). Run it before starting workers: a trial finished
    by a live worker whose callback has not written it yet would otherwise get two runs.

    Args:
        study: The study, from its storage (the source of truth).
        writer: The study's trial writer; its parent is the current parent.
        stale_after: Seconds without a heartbeat after which another RUNNING parent counts
            as dead; None: only ``all_other_parents_stale`` makes one stale.
        all_other_parents_stale: Treat every other RUNNING parent of the study as dead
            (the caller knows no other process works on the study).
        fill_missing: Write a run for every finished trial that has none.
        now: Current time (``time.time()``), for tests.

    Returns:
        What was changed.
    """
    now = time.time() if now is None else now
    current = writer.parent_run_id
    report = ReconcileReport()
    runs = writer.search_study_runs()
    parents = [r for r in runs if k.TRIAL_NUMBER not in r.data.tags]
    trial_runs = [r for r in runs if k.TRIAL_NUMBER in r.data.tags]

    live_parents: set[str] = set()
    for parent in parents:
        run_id = parent.info.run_id
        if run_id == current or parent.info.status != "RUNNING":
            continue
        idle = now - _last_seen(parent)
        owner = parent.data.tags.get(k.OWNER)
        gone = owner_is_gone(owner)
        if gone or all_other_parents_stale or (stale_after is not None and idle > stale_after):
            reason = (
                f"its process {owner} is gone"
                if gone
                else f"no heartbeat for {idle:.0f} s; its process is gone"
            )
            tags = _ended_tags(reason)
            writer.client.log_batch(
                run_id, tags=[RunTag(key, v) for key, v in tags.items()], synchronous=True
            )
            writer.client.set_terminated(run_id, status="KILLED")
            report.parents_killed.append(run_id)
        else:
            live_parents.add(run_id)
    if current is not None:
        live_parents.add(current)

    study_parents = {p.info.run_id for p in parents}
    if current is not None:
        study_parents.add(current)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    numbers_with_runs: set[int] = set()
    for run in trial_runs:
        try:
            number = int(run.data.tags[k.TRIAL_NUMBER])
        except ValueError:
            continue
        numbers_with_runs.add(number)
        parent_id = run.data.tags.get(k.MLFLOW_PARENT_RUN_ID)
        gone = run.info.status == "RUNNING" and owner_is_gone(run.data.tags.get(k.OWNER))
        if parent_id in live_parents and not gone:
            continue
        if parent_id not in study_parents and run.info.status == "RUNNING" and not gone:
            # optuna_integration's layout: no study parent to tell that its process lives;
            # the run itself is judged like a parent, from its start time.
            idle = now - _last_seen(run)
            if not all_other_parents_stale and (stale_after is None or idle <= stale_after):
                continue
        trial = trials.get(number)
        run_id = run.info.run_id
        if trial is not None and trial.state.is_finished():
            if run.info.status == "RUNNING" or not writer.is_up_to_date(run, trial):
                writer.write(
                    trial,
                    existing=run,
                    extra_tags=_ended_tags(
                        "rewritten from Optuna's storage after its process stopped"
                    ),
                )
                report.runs_rewritten.append(run_id)
        elif run.info.status == "RUNNING":
            reason = "the process running this trial stopped"
            if trial is not None:
                writer.write(trial, existing=run, status="KILLED", extra_tags=_ended_tags(reason))
            else:
                writer.client.set_terminated(run_id, status="KILLED")
            report.runs_killed.append(run_id)

    if fill_missing:
        for number, trial in sorted(trials.items()):
            if number not in numbers_with_runs and trial.state.is_finished():
                report.runs_created.append(writer.write(trial, search=False))
    return report


def _ended_tags(reason: str) -> dict[str, str]:
    return {k.ENDED_BY: RECONCILER, k.END_REASON: reason}
