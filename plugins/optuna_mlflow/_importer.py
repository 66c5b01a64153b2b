"""Import studies that already ran into MLflow, after the fact and incrementally."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.storages import BaseStorage

from optuna_mlflow import _keys as k
from optuna_mlflow._artifacts import log_study_artifacts
from optuna_mlflow._identity import (
    LegacyRule,
    adopt_legacy_runs,
    derived_study_uid,
    ensure_study_uid,
    legacy_rule,
    read_study_uid,
)
from optuna_mlflow._open_storage import OpenedStorage, UnknownStudyError, open_storage
from optuna_mlflow._session import get_or_create_experiment
from optuna_mlflow._writer import TrialRunWriter

__all__ = ["ImportedStudy", "import_study"]

_logger = logging.getLogger(__name__)


@dataclass
class ImportedStudy:
    """What :func:`import_study` did for one study.

    Attributes:
        study_name: The study.
        experiment_id: The MLflow experiment it went to.
        parent_run_id: Its parent run (found again on a later import).
        created: Trial runs created.
        updated: Trial runs that existed and were completed from the storage.
        unchanged: Trial runs already up to date.
        skipped_unfinished: RUNNING/WAITING trials, left for a later import.
        upgraded_from: Old Optuna schema version of the storage, when a temporary copy of
            it was upgraded to read it.
        study_uid: The study's uid, tagged ``optuna.study_uid`` on its runs.
    """

    study_name: str
    experiment_id: str
    parent_run_id: str
    study_uid: str = ""
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_unfinished: int = 0
    upgraded_from: str | None = None


def import_study(
    storage: str | os.PathLike[str] | BaseStorage,
    study_name: str | None = None,
    *,
    experiment_name: str | None = None,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    metric_name: str | Sequence[str] | None = None,
    log_artifacts: bool = True,
    tag_user_attrs: bool = True,
    max_workers: int = 4,
) -> list[ImportedStudy]:
    """Mirror Optuna studies into MLflow: a parent run per study, a nested run per trial.

    Trial runs are written by the same writer as the live callback's (params, value(s),
    intermediate values as metric steps, ``optuna.*`` tags, statuses, start/end times).
    The parent run, named after the study, carries the study's tags, the import source
    (``optuna_mlflow.import_source``, password-free) and the study artifacts (plots,
    ``trials.csv``, ``best_params.json``, counts). Importing again creates nothing new;
    trials added since are added; runs are matched by study uid and trial number, so
    another study of the same name (in the same experiment) never shares a run.
    RUNNING/WAITING trials are left for a later import.

    The uid is the one stored in the study. A study without one gets one stored when the
    storage is written in place (a server database, a storage object); a SQLite file's
    copy or a journal file is never written, so its uid is derived from the file's path,
    the study's name, id and first trial start: the same on every import.

    Args:
        storage: RDB URL, path of a SQLite or journal file, or a storage object. SQLite
            files are read through a temporary copy (upgraded there if Optuna 2.x wrote
            it); the file itself is never changed.
        study_name: The study to import; None imports every study in the storage.
        experiment_name: Experiment for all imported studies; default: one experiment per
            study, named after it.
        tracking_uri: Tracking store; None uses MLflow's default.
        client: A client to use instead of ``tracking_uri``.
        metric_name: Objective metric name(s); default the study's ``metric_names``, else
            ``value`` (one objective) or ``values_0``, ``values_1``, ...
        log_artifacts: Log plots, trial table and counts on the parent run.
        tag_user_attrs: Log trial user attrs as tags.
        max_workers: Threads writing trial runs concurrently.

    Returns:
        One report per imported study.

    Raises:
        StudyImportError: With a one-line message: no such file, not an Optuna storage,
            unknown study (with the available names), old server schema.
    """
    client = client or MlflowClient(tracking_uri)
    with warnings.catch_warnings():
        # Optuna 2.x trials carry deprecated distribution classes (read while upgrading
        # the copy and while loading); reading them is exactly what an import is for.
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        return _import_all(
            client,
            storage,
            study_name,
            experiment_name,
            metric_name,
            log_artifacts,
            tag_user_attrs,
            max_workers,
        )


def _import_all(
    client: MlflowClient,
    storage: str | os.PathLike[str] | BaseStorage,
    study_name: str | None,
    experiment_name: str | None,
    metric_name: str | Sequence[str] | None,
    log_artifacts: bool,
    tag_user_attrs: bool,
    max_workers: int,
) -> list[ImportedStudy]:
    with open_storage(storage) as opened:
        names = [s.study_name for s in opened.storage.get_all_studies()]
        if study_name is not None and study_name not in names:
            available = ", ".join(sorted(names)) or "none"
            raise UnknownStudyError(
                f"study {study_name!r} not found in {opened.source}; available: {available}"
            )
        if not names:
            raise UnknownStudyError(f"{opened.source} holds no study")
        reports = []
        for name in [study_name] if study_name is not None else names:
            study = optuna.load_study(study_name=name, storage=opened.storage)
            report = _import_one(
                client,
                study,
                opened=opened,
                experiment_name=experiment_name or name,
                metric_name=metric_name,
                log_artifacts=log_artifacts,
                tag_user_attrs=tag_user_attrs,
                max_workers=max_workers,
            )
            report.upgraded_from = opened.upgraded_from
            _logger.info(
                "Imported study %s: %d runs created, %d updated, %d unchanged.",
                name,
                report.created,
                report.updated,
                report.unchanged,
            )
            reports.append(report)
    return reports


def _metric_names(study: optuna.Study, metric_name: str | Sequence[str] | None) -> list[str]:
    n = len(study.directions)
    if metric_name is not None:
        return k.resolve_metric_names(metric_name, n)
    if study.metric_names:
        return list(study.metric_names)
    return ["value"] if n == 1 else [f"values_{i}" for i in range(n)]


def _import_one(
    client: MlflowClient,
    study: optuna.Study,
    *,
    opened: OpenedStorage,
    experiment_name: str,
    metric_name: str | Sequence[str] | None,
    log_artifacts: bool,
    tag_user_attrs: bool,
    max_workers: int,
) -> ImportedStudy:
    names = _metric_names(study, metric_name)
    experiment_id = get_or_create_experiment(client, experiment_name)
    study_uid, rule = _study_uid(study, opened)
    writer = TrialRunWriter(
        client,
        experiment_id,
        study.study_name,
        metric_name=names,
        directions=study.directions,
        tag_user_attrs=tag_user_attrs,
        study_uid=study_uid,
    )
    adopt_legacy_runs(writer, study, rule)
    runs = writer.search_study_runs()
    trials = study.get_trials(deepcopy=False)
    parent = _find_parent(runs)
    new_parent = parent is None
    if parent is None:
        parent = _create_parent(client, experiment_id, study, opened.source, trials, study_uid)
    writer.parent_run_id = parent.info.run_id
    existing = writer.index_trial_runs(runs)
    report = ImportedStudy(study.study_name, experiment_id, parent.info.run_id, study_uid=study_uid)
    todo: list[tuple[optuna.trial.FrozenTrial, Run | None]] = []
    for trial in trials:
        if not trial.state.is_finished():
            report.skipped_unfinished += 1
            continue
        run = existing.get(trial.number)
        if run is None:
            report.created += 1
        elif writer.is_up_to_date(run, trial):
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        todo.append((trial, run))

    def write(item: tuple[optuna.trial.FrozenTrial, Run | None]) -> None:
        trial, run = item
        writer.write(trial, existing=run, search=False)

    # Each run costs a few round trips (commits on SQLite, HTTP calls on a server) that
    # mostly wait; a few threads overlap the waits. Runs never share state.
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        list(pool.map(write, todo))
    if new_parent or report.created or report.updated:
        if log_artifacts:
            log_study_artifacts(study, parent.info.run_id, client=client, metric_name=names)
        ends = [int(t.datetime_complete.timestamp() * 1000) for t in trials if t.datetime_complete]
        client.set_terminated(parent.info.run_id, "FINISHED", end_time=max(ends, default=None))
    return report


def _study_uid(study: optuna.Study, opened: OpenedStorage) -> tuple[str, LegacyRule]:
    """The study's uid and which of its runs may predate it."""
    uid = read_study_uid(study)
    if uid is None and opened.writable:
        uid = ensure_study_uid(study)
    if uid is not None:
        return uid, legacy_rule(study, opened.identity)
    # Never stored, so every run of this study written so far has no uid (or this one).
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    derived = derived_study_uid(opened.identity or opened.source, study)
    return derived, LegacyRule(max(numbers, default=-1) + 1)


def _find_parent(runs: list[Run]) -> Run | None:
    parents = [
        r for r in runs if k.TRIAL_NUMBER not in r.data.tags and k.IMPORT_SOURCE in r.data.tags
    ]
    return min(parents, key=lambda r: r.info.start_time or 0, default=None)


def _create_parent(
    client: MlflowClient,
    experiment_id: str,
    study: optuna.Study,
    source: str,
    trials: list[optuna.trial.FrozenTrial],
    study_uid: str,
) -> Run:
    tags = {k.safe_key(key): k.truncate(v, 5000) for key, v in study.user_attrs.items()}
    tags.update(
        {
            k.STUDY_NAME: study.study_name,
            k.STUDY_UID: study_uid,
            k.DIRECTION: ",".join(d.name for d in study.directions),
            k.ROLE: "parent",
            k.IMPORT_SOURCE: source,
        }
    )
    starts = [int(t.datetime_start.timestamp() * 1000) for t in trials if t.datetime_start]
    return client.create_run(
        experiment_id,
        start_time=min(starts, default=None),
        tags=tags,
        run_name=study.study_name,
    )
