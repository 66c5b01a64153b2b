"""Find the runs of a study in an experiment: one paged search, indexed by trial number."""

from __future__ import annotations

from collections.abc import Iterable

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from optuna_mlflow import _keys as k

__all__ = ["index_trial_runs", "search_runs"]

_SEARCH_PAGE = 5000


def quote(value: str) -> str:
    """A string literal for MLflow's search filter syntax."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every active run of the experiment matching ``filter_string``, all pages.

    Args:
        client: Client of the tracking store.
        experiment_id: The experiment.
        filter_string: MLflow search filter.

    Returns:
        The runs.
    """
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_SEARCH_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def index_trial_runs(
    runs: Iterable[Run], parent_run_id: str | None, study_uid: str | None = None
) -> dict[int, Run]:
    """Trial runs by trial number; parents and foreign runs are left out.

    When a trial has several runs, the one under ``parent_run_id`` wins, then the oldest.

    Args:
        runs: Runs of one study.
        parent_run_id: The preferred parent.
        study_uid: When given, runs not tagged with this ``optuna.study_uid`` are foreign
            (another study of the same name), whatever the search that found them.

    Returns:
        Trial number -> run.
    """
    found: dict[int, Run] = {}
    for run in runs:
        number_tag = run.data.tags.get(k.TRIAL_NUMBER)
        if number_tag is None or not number_tag.lstrip("-").isdigit():
            continue
        if study_uid is not None and run.data.tags.get(k.STUDY_UID) != study_uid:
            continue
        number = int(number_tag)
        if number not in found or _prefer(run, found[number], parent_run_id):
            found[number] = run
    return found


def _prefer(run: Run, other: Run, parent_run_id: str | None) -> bool:
    mine = run.data.tags.get(k.MLFLOW_PARENT_RUN_ID) == parent_run_id
    theirs = other.data.tags.get(k.MLFLOW_PARENT_RUN_ID) == parent_run_id
    if mine != theirs:
        return mine
    return (run.info.start_time or 0) < (other.info.start_time or 0)
