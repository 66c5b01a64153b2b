"""Read back what a tracked study left in MLflow and check it against Optuna's storage.

Shared by the in-process tracking tests, the serving test, the multi-process tests and the
end-to-end runs against a SQLite store and a real ``mlflow server`` (the README's
"Looking at the results in MLflow"). Starting processes and servers is ``_procs``'s job.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.entities.model_registry import ModelVersion
from optuna.trial import FrozenTrial, TrialState

from agehpo.names import EPOCH_METRICS

PARENT_RUN_ID = "mlflow.parentRunId"
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


# -- reading MLflow back -----------------------------------------------------------------


def all_runs(client: MlflowClient) -> list[Run]:
    """Every active run of every experiment of the store."""
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, run_view_type=ViewType.ACTIVE_ONLY, max_results=5000))


def study_runs(tracking_uri: str, study_name: str) -> list[Run]:
    """Every active run of every experiment tagged with the study's name."""
    runs = all_runs(MlflowClient(tracking_uri))
    return [r for r in runs if r.data.tags.get("optuna.study_name") == study_name]


def split_runs(runs: Sequence[Run]) -> tuple[list[Run], dict[int, list[Run]]]:
    """Parent runs, and trial runs by ``optuna.trial_number`` (a list, to see duplicates)."""
    parents = [r for r in runs if "optuna.trial_number" not in r.data.tags]
    trials: dict[int, list[Run]] = {}
    for run in runs:
        if "optuna.trial_number" in run.data.tags:
            trials.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    return parents, trials


def describe(runs: Sequence[Run]) -> list[tuple[str | None, str, str | None]]:
    """(run name, status, parent run id) of each run, for assertion messages."""
    return [(r.info.run_name, r.info.status, r.data.tags.get("mlflow.parentRunId")) for r in runs]


def load_study(storage: str, study_name: str = "age-prediction") -> optuna.Study:
    """The study as a fresh reader sees it (journal file or database URL), no heartbeats."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" not in storage:
        return optuna.load_study(
            study_name=study_name, storage=JournalStorage(JournalFileBackend(storage))
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def metric_steps(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """Metric history as step -> value; fails when a step was logged twice."""
    points = client.get_metric_history(run_id, key)
    steps = [m.step for m in points]
    assert len(steps) == len(set(steps)), f"{key} of run {run_id}: duplicate steps {steps}"
    return {m.step: m.value for m in points}


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Artifact file paths of a run, recursively."""
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            found |= artifact_paths(client, run_id, info.path)
        else:
            found.add(info.path)
    return found


def load_artifact_text(client: MlflowClient, run_id: str, path: str) -> str:
    """One artifact's text, downloaded through the client (works for SQLite and HTTP)."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


@dataclass
class TrackedStudy:
    """What a tracked study left in MLflow, as found by :func:`check_tracked_study`."""

    parent: Run
    trials: dict[int, Run]
    champion: ModelVersion | None


def check_trial_run(
    client: MlflowClient,
    run: Run,
    trial: FrozenTrial,
    study_name: str,
    n_epochs: int | None = None,
) -> None:
    """One trial run mirrors its Optuna trial: name, params, tags, status, epoch metrics.

    ``n_epochs``, when given, is how many epochs a COMPLETE trial must have reported.
    """
    tags = run.data.tags
    where = f"trial {trial.number} ({trial.state.name})"
    assert run.info.run_name == f"trial-{trial.number}", where
    assert run.data.params == {name: str(value) for name, value in trial.params.items()}, where
    assert tags["optuna.study_name"] == study_name, where
    assert tags["optuna.trial_number"] == str(trial.number), where
    assert tags["optuna.trial_state"] == trial.state.name, where
    assert run.info.status == RUN_STATUS[trial.state.name], where
    history = metric_steps(client, run.info.run_id, "val_age_accuracy")
    steps = sorted(trial.intermediate_values)
    assert sorted(history) == steps, where
    if steps:
        # Reported each epoch from 1 on, until the trial ended or was pruned.
        assert steps == list(range(1, len(steps) + 1)), where
        for step, value in trial.intermediate_values.items():
            assert math.isclose(history[step], value, rel_tol=1e-9), where
        for key in EPOCH_METRICS:
            assert sorted(metric_steps(client, run.info.run_id, key)) == steps, (where, key)
            if "accuracy" in key:
                assert 0.0 <= run.data.metrics[key] <= 1.0, (where, key)
    if trial.state == TrialState.COMPLETE:
        assert trial.value is not None
        if n_epochs is not None:
            assert steps == list(range(1, n_epochs + 1)), where
        assert math.isclose(run.data.metrics["val_age_accuracy"], trial.value), where
    if trial.state == TrialState.PRUNED:
        assert run.data.metrics["pruned_at_epoch"] == max(trial.intermediate_values), where
    if trial.state == TrialState.FAIL:
        assert tags.get("optuna.fail_reason"), where


def check_tracked_study(
    client: MlflowClient,
    study: optuna.Study,
    *,
    model_name: str = "age-predictor",
    sampler: str | None = None,
    pruner: str | None = None,
    n_epochs: int | None = None,
    output: str | None = None,
    ui_base: str | None = None,
) -> TrackedStudy:
    """Check everything the README promises about a tracked study that ran in one invocation.

    Args:
        client: Client of the tracking store (SQLite or HTTP).
        study: The study, loaded from its Optuna storage (the source of truth).
        model_name: The registered model's name.
        sampler: Expected ``optuna.sampler`` tag of the parent run.
        pruner: Expected ``optuna.pruner`` tag of the parent run.
        n_epochs: Epochs a COMPLETE trial ran (pruned ones ran 1..n_epochs).
        output: The invocation's console output; must end with the UI link.
        ui_base: The UI the link must point at (the tracking server, or ``mlflow ui``'s).

    Returns:
        The parent run, the trial runs by number and the champion version.
    """
    everything = all_runs(client)
    runs = [r for r in everything if r.data.tags.get("optuna.study_name") == study.study_name]
    # The store holds this study only: no stray run (e.g. a second parent without the tag).
    assert len(runs) == len(everything), [r.info.run_name for r in everything]
    parents = [r for r in runs if PARENT_RUN_ID not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    parent_id = parent.info.run_id
    children = [r for r in runs if r.data.tags.get(PARENT_RUN_ID) == parent_id]
    assert len(children) == len(runs) - 1, "a trial run is not nested under the parent"
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert len(by_number) == len(children), "two runs for one trial"
    trials = study.get_trials(deepcopy=False)
    assert sorted(by_number) == [t.number for t in trials]
    for trial in trials:
        check_trial_run(client, by_number[trial.number], trial, study.study_name, n_epochs)

    # The parent: tags, summary metrics, artifacts.
    tags, metrics = parent.data.tags, parent.data.metrics
    assert parent.info.status == "FINISHED"
    assert tags["optuna.study_name"] == study.study_name
    if sampler is not None:
        assert tags["optuna.sampler"] == sampler
        assert parent.info.run_name == f"{study.study_name}-{sampler}"  # not MLflow's random name
    if pruner is not None:
        assert tags["optuna.pruner"] == pruner
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    assert metrics["n_trials_complete"] == counts[TrialState.COMPLETE]
    assert metrics["n_trials_pruned"] == counts[TrialState.PRUNED]
    assert metrics["n_trials_failed"] == counts[TrialState.FAIL]
    artifacts = artifact_paths(client, parent_id)
    assert {"trials.csv", "best_params.json"} <= artifacts, artifacts
    best_params = json.loads(load_artifact_text(client, parent_id, "best_params.json"))
    trials_csv = load_artifact_text(client, parent_id, "trials.csv").strip().splitlines()
    assert len(trials_csv) == 1 + len(trials)
    champion = None
    if counts[TrialState.COMPLETE]:
        assert best_params == study.best_params
        assert math.isclose(metrics["best_val_age_accuracy"], study.best_value)
        assert 0.0 <= metrics["test_age_accuracy"] <= 1.0
        drawn = {"intermediate_values", "optimization_history", "parallel_coordinate"}
        for plot in drawn:
            assert {f"plots/{plot}.html", f"plots/{plot}.png"} <= artifacts, (plot, artifacts)
        # The champion: the best trial's run, its test accuracies as version tags.
        champion = client.get_model_version_by_alias(model_name, "champion")
        best_run = by_number[study.best_trial.number]
        assert champion.run_id == best_run.info.run_id
        assert champion.tags["optuna.trial_number"] == str(study.best_trial.number)
        assert champion.tags["test_age_accuracy"] == f"{metrics['test_age_accuracy']:.4f}"
        assert "agehpo.model_id" in best_run.data.tags
    else:
        assert best_params == {}
        assert "best_val_age_accuracy" not in metrics
        # No plot can be drawn without a COMPLETE trial; the skip reasons are logged instead.
        skipped = load_artifact_text(client, parent_id, "plots/skipped.txt")
        assert "optimization_history: no COMPLETE trial" in skipped

    if output is not None:
        assert ui_base is not None
        link = (
            f"{ui_base.rstrip('/')}/#/experiments/{parent.info.experiment_id}"
            "/runs?workflowType=machine_learning"
        )
        assert link in output, output[-2000:]
    return TrackedStudy(parent, by_number, champion)


def registered_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """Every version of a registered model."""
    return list(client.search_model_versions(f"name = '{model_name}'"))


@contextlib.contextmanager
def default_store(uri: str, monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Iterator[MlflowClient]:
    """Make ``uri`` MLflow's default store (env and fluent API) with ``cwd`` as working dir.

    The working directory matters: a SQLite store puts artifacts under ``./mlruns``.
    """
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(uri)
    try:
        yield MlflowClient(uri)
    finally:
        # Also unsets MLFLOW_TRACKING_URI; the monkeypatch restores the original later.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
