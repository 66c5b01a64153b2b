"""Repair what a killed process left behind in MLflow, from Optuna's storage (README: rules)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import optuna
from mlflow.entities import Run
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._entities import log_batch_chunked
from optuna_mlflow._owner import owner_is_gone
from optuna_mlflow._writer import TrialRunWriter

RECONCILER = "reconciler"


@dataclass
class ReconcileReport:
    """What :func:`reconcile_study` changed (run ids)."""

    parents_killed: list[str] = field(default_factory=list)  # stale parents, ended KILLED
    runs_rewritten: list[str] = field(default_factory=list)  # from their finished trials
    runs_killed: list[str] = field(default_factory=list)  # their trial's process died
    runs_created: list[str] = field(default_factory=list)  # finished trials that had none

    @property
    def changed(self) -> int:
        """Number of runs changed or created."""
        return sum(len(runs) for runs in vars(self).values())


def _last_seen(run: Run) -> float:
    seen = (run.info.start_time or 0) / 1000.0
    try:
        return max(seen, float(run.data.tags.get(k.HEARTBEAT, "")))
    except ValueError:
        return seen


def _ended_tags(reason: str) -> dict[str, str]:
    return {k.ENDED_BY: RECONCILER, k.END_REASON: reason}


def reconcile_study(
    study: optuna.Study,
    writer: TrialRunWriter,
    *,
    stale_after: float | None = 600.0,
    all_other_parents_stale: bool = False,
    fill_missing: bool = False,
    now: float | None = None,
) -> ReconcileReport:
    """Bring the study's runs in ``writer``'s experiment in line with Optuna's storage, the
    source of truth; another parent is dead after ``stale_after`` s without a heartbeat (or
    always, ``all_other_parents_stale``); ``fill_missing`` writes a run for every finished trial
    without one. ``writer.parent_run_id``, the current parent, and its trial runs are never
    touched. Run it before workers start, or a trial finished but not yet written would get
    two runs."""
    fix = _Repair(writer, time.time() if now is None else now, stale_after, all_other_parents_stale)
    runs = writer.search_study_runs()
    parents = [r for r in runs if k.TRIAL_NUMBER not in r.data.tags]
    fix.end_stale_parents(parents)
    if writer.parent_run_id is not None:
        fix.live_parents.add(writer.parent_run_id)
    fix.study_parents = {p.info.run_id for p in parents} | fix.live_parents
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    with_runs = fix.repair([r for r in runs if k.TRIAL_NUMBER in r.data.tags], trials)
    if fill_missing:
        for number, trial in sorted(trials.items()):
            if number not in with_runs and trial.state.is_finished():
                fix.report.runs_created.append(writer.write(trial, search=False))
    return fix.report


@dataclass
class _Repair:
    """One reconcile pass: its clock and rules, the parents found live, what it changed."""

    writer: TrialRunWriter
    now: float
    stale_after: float | None
    all_stale: bool
    report: ReconcileReport = field(default_factory=ReconcileReport)
    live_parents: set[str] = field(default_factory=set)  # the current one aside
    study_parents: set[str] = field(default_factory=set)

    def stale(self, run: Run) -> bool:
        idle = self.now - _last_seen(run)
        return self.all_stale or (self.stale_after is not None and idle > self.stale_after)

    def end_stale_parents(self, parents: list[Run]) -> None:
        """End the stale parents KILLED; note the live ones."""
        for parent in parents:
            run_id = parent.info.run_id
            if run_id == self.writer.parent_run_id or parent.info.status != "RUNNING":
                continue
            owner = parent.data.tags.get(k.OWNER)
            gone = owner_is_gone(owner)
            if not gone and not self.stale(parent):
                self.live_parents.add(run_id)
                continue
            silent = f"no heartbeat for {self.now - _last_seen(parent):.0f} s; its process is gone"
            reason = f"its process {owner} is gone" if gone else silent
            log_batch_chunked(self.writer.client, run_id, tags=_ended_tags(reason))
            self.writer.client.set_terminated(run_id, status="KILLED")
            self.report.parents_killed.append(run_id)

    def repair(self, trial_runs: list[Run], trials: dict[int, FrozenTrial]) -> set[int]:
        """Rewrite or end the trial runs no live process writes; return the numbers with runs."""
        writer, report = self.writer, self.report
        numbers: set[int] = set()
        for run in trial_runs:
            try:
                number = int(run.data.tags[k.TRIAL_NUMBER])
            except ValueError:
                continue
            numbers.add(number)
            running = run.info.status == "RUNNING"
            gone = running and owner_is_gone(run.data.tags.get(k.OWNER))
            parent_id = run.data.tags.get(k.MLFLOW_PARENT_RUN_ID)
            if parent_id in self.live_parents and not gone:
                continue
            # optuna_integration's layout: judged like a parent, by its start time.
            if parent_id not in self.study_parents and running and not gone and not self.stale(run):
                continue
            trial = trials.get(number)
            if trial is not None and trial.state.is_finished():
                if running or not writer.is_up_to_date(run, trial):
                    reason = "rewritten from Optuna's storage after its process stopped"
                    writer.write(trial, existing=run, extra_tags=_ended_tags(reason))
                    report.runs_rewritten.append(run.info.run_id)
            elif running:
                if trial is not None:
                    tags = _ended_tags("the process running this trial stopped")
                    writer.write(trial, existing=run, status="KILLED", extra_tags=tags)
                else:
                    writer.client.set_terminated(run.info.run_id, status="KILLED")
                report.runs_killed.append(run.info.run_id)
        return numbers
