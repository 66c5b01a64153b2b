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
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._artifacts import log_study_artifacts
from optuna_mlflow._entities import to_ms
from optuna_mlflow._identity import (
    LegacyRule,
    adopt_legacy_runs,
    derived_study_uid,
    ensure_study_uid,
    legacy_rule,
    next_trial_number,
    read_study_uid,
)
from optuna_mlflow._open_storage import OpenedStorage, UnknownStudyError, open_storage
from optuna_mlflow._session import get_or_create_experiment
from optuna_mlflow._writer import TrialRunWriter, tag_filter

_logger = logging.getLogger(__name__)


@dataclass
class ImportedStudy:
    """What :func:`import_study` did for one study.

    Attributes:
        study_name: The study.
        experiment_id: The MLflow experiment it went to.
        parent_run_id: Its parent run (found again on a later import).
        study_uid: The study's uid, tagged ``optuna.study_uid`` on its runs.
        created: Trial runs created.
        updated: Trial runs that existed and were completed from the storage.
        unchanged: Trial runs already up to date.
        skipped_unfinished: RUNNING/WAITING trials, left for a later import.
        upgraded_from: Old schema version, when a temporary copy was upgraded to read it.
        tracked_elsewhere: True when the study's runs (its uid) are already in
            ``experiment_id``, another experiment than the import's: nothing was written.
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
    tracked_elsewhere: bool = False


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

    The parent run carries ``optuna_mlflow.import_source`` and the study artifacts. Importing
    again adds only what is new; RUNNING/WAITING trials wait for a later import. A study
    without a uid gets one (see the README); one with runs in another experiment is skipped.

    Args:
        storage: RDB URL, SQLite or journal file path, or storage object (never changed).
        study_name: The study to import; None imports every study in the storage.
        experiment_name: One experiment for all; default one per study, named after it.
        tracking_uri: Tracking store; None uses MLflow's default.
        client: A client to use instead of ``tracking_uri``.
        metric_name: Metric name(s); default the study's, else ``value`` or ``values_{i}``.
        log_artifacts: Log plots, trial table and counts on the parent run.
        tag_user_attrs: Log trial user attrs as tags.
        max_workers: Threads writing trial runs concurrently.

    Returns:
        One report per imported study.

    Raises:
        StudyImportError: No such file, not an Optuna storage, unknown study, old schema.
    """
    client = client or MlflowClient(tracking_uri)
    reports = []
    with warnings.catch_warnings():
        # Optuna 2.x trials carry deprecated distribution classes; reading them is the point.
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        with open_storage(storage) as opened:
            for name in _study_names(opened, study_name):
                study = optuna.load_study(study_name=name, storage=opened.storage)
                uid = _study_uid(study, opened)
                elsewhere = _tracked_elsewhere(client, uid[0], experiment_name or name)
                if elsewhere is not None:
                    _logger.info("Study %s is tracked in experiment %s: skipped.", name, elsewhere)
                    reports.append(
                        ImportedStudy(name, elsewhere, "", uid[0], tracked_elsewhere=True)
                    )
                    continue
                writer = _writer(
                    client, study, experiment_name or name, metric_name, tag_user_attrs
                )
                report = _import_one(writer, study, uid, opened, log_artifacts, max_workers)
                report.upgraded_from = opened.upgraded_from
                msg = "Imported study %s: %d runs created, %d updated, %d unchanged."
                _logger.info(msg, name, report.created, report.updated, report.unchanged)
                reports.append(report)
    return reports


def _study_names(opened: OpenedStorage, study_name: str | None) -> list[str]:
    names = [s.study_name for s in opened.storage.get_all_studies()]
    if study_name is not None and study_name not in names:
        available = ", ".join(sorted(names)) or "none"
        raise UnknownStudyError(
            f"study {study_name!r} not found in {opened.source}; available: {available}"
        )
    if not names:
        raise UnknownStudyError(f"{opened.source} holds no study")
    return [study_name] if study_name is not None else names


def _writer(
    client: MlflowClient,
    study: optuna.Study,
    experiment_name: str,
    metric_name: str | Sequence[str] | None,
    tag_user_attrs: bool,
) -> TrialRunWriter:
    n = len(study.directions)
    if metric_name is not None:
        names = k.resolve_metric_names(metric_name, n)
    elif study.metric_names:
        names = list(study.metric_names)
    else:
        names = ["value"] if n == 1 else [f"values_{i}" for i in range(n)]
    return TrialRunWriter(
        client,
        get_or_create_experiment(client, experiment_name),
        study.study_name,
        metric_name=names,
        directions=study.directions,
        tag_user_attrs=tag_user_attrs,
    )


def _tracked_elsewhere(client: MlflowClient, uid: str, experiment_name: str) -> str | None:
    """The experiment holding runs of study ``uid``, when the import's own holds none."""
    by_uid = tag_filter(k.STUDY_UID, uid)
    target = client.get_experiment_by_name(experiment_name)
    if target is not None and client.search_runs([target.experiment_id], by_uid, max_results=1):
        return None
    everywhere = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(everywhere, by_uid, max_results=1)
    return found[0].info.experiment_id if found else None


def _import_one(
    writer: TrialRunWriter,
    study: optuna.Study,
    uid: tuple[str, LegacyRule],
    opened: OpenedStorage,
    log_artifacts: bool,
    max_workers: int,
) -> ImportedStudy:
    writer.study_uid, rule = uid
    adopt_legacy_runs(writer, study, rule)
    runs = writer.search_study_runs()
    trials = study.get_trials(deepcopy=False)
    parents = [
        r for r in runs if k.TRIAL_NUMBER not in r.data.tags and k.IMPORT_SOURCE in r.data.tags
    ]
    parent = min(parents, key=lambda r: r.info.start_time or 0, default=None)
    new_parent = parent is None
    if parent is None:
        parent = _create_parent(writer, study, opened.source, trials)
    writer.parent_run_id = parent.info.run_id
    existing = writer.index_trial_runs(runs)
    report = ImportedStudy(
        study.study_name, writer.experiment_id, parent.info.run_id, study_uid=writer.study_uid
    )
    todo: list[tuple[FrozenTrial, Run | None]] = []
    for trial in trials:
        run = existing.get(trial.number)
        if not trial.state.is_finished():
            report.skipped_unfinished += 1
        elif run is not None and writer.is_up_to_date(run, trial):
            report.unchanged += 1
        else:
            report.created += run is None
            report.updated += run is not None
            todo.append((trial, run))
    # Each run costs a few round trips that mostly wait; a few threads overlap the waits.
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        list(pool.map(lambda item: writer.write(item[0], existing=item[1], search=False), todo))
    if new_parent or report.created or report.updated:
        if log_artifacts:
            log_study_artifacts(
                study, parent.info.run_id, client=writer.client, metric_name=writer.metric_name
            )
        end = max((ms for t in trials if (ms := to_ms(t.datetime_complete))), default=None)
        writer.client.set_terminated(parent.info.run_id, "FINISHED", end_time=end)
    return report


def _study_uid(study: optuna.Study, opened: OpenedStorage) -> tuple[str, LegacyRule]:
    """The study's uid and which of its runs may predate it."""
    uid = ensure_study_uid(study) if opened.writable else read_study_uid(study)
    if uid is not None:
        return uid, legacy_rule(study, opened.identity)
    # Never stored: every run of this study so far has no uid, or this derived one.
    derived = derived_study_uid(opened.identity or opened.source, study)
    return derived, LegacyRule(next_trial_number(study))


def _create_parent(
    writer: TrialRunWriter, study: optuna.Study, source: str, trials: list[FrozenTrial]
) -> Run:
    tags = {k.safe_key(key): k.truncate(v, 5000) for key, v in study.user_attrs.items()}
    tags.update({**writer.study_tags("parent"), k.IMPORT_SOURCE: source})
    start = min((ms for t in trials if (ms := to_ms(t.datetime_start))), default=None)
    return writer.client.create_run(writer.experiment_id, start, tags, study.study_name)
