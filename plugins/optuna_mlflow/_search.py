"""Find the runs of a study in an experiment: one paged search, indexed by trial number."""

from __future__ import annotations

from collections.abc import Iterable

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from optuna_mlflow import _keys as k


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
            [experiment_id], filter_string, ViewType.ACTIVE_ONLY, max_results=5000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def index_trial_runs(
    runs: Iterable[Run], parent_run_id: str | None, study_uid: str | None = None
) -> dict[int, Run]:
    """Trial runs by number; of several, the one under ``parent_run_id`` wins, then the oldest.

    Args:
        runs: Runs of one study (parents are left out).
        parent_run_id: The preferred parent.
        study_uid: When given, runs without this ``optuna.study_uid`` are left out.

    Returns:
        Trial number -> run.
    """
    found: dict[int, Run] = {}

    def rank(run: Run) -> tuple[bool, int]:
        return run.data.tags.get(k.MLFLOW_PARENT_RUN_ID) != parent_run_id, run.info.start_time or 0

    for run in runs:
        number = run.data.tags.get(k.TRIAL_NUMBER)
        if number is None or not number.lstrip("-").isdigit():
            continue
        if study_uid is not None and run.data.tags.get(k.STUDY_UID) != study_uid:
            continue
        if int(number) not in found or rank(run) < rank(found[int(number)]):
            found[int(number)] = run
    return found
