"""The one place that turns an Optuna trial into an MLflow run (live, reconciled or imported)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, ViewType
from mlflow.utils import get_results_from_paginated_fn
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_mlflow import _keys as k
from optuna_mlflow._entities import (
    log_batch_chunked,
    now_ms,
    to_ms,
    trial_metrics,
    trial_params,
    trial_tags,
)

# Pruning is the normal fate of most trials; FAILED/KILLED would paint them red in the UI.
_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "FINISHED",
    TrialState.FAIL: "FAILED",
}


def tag_filter(key: str, value: str) -> str:
    """MLflow's search filter matching runs whose tag ``key`` is ``value``."""
    return f"tags.`{key}` = '" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every active run of the experiment matching ``filter_string``, all pages."""
    return get_results_from_paginated_fn(
        lambda max_results, token: client.search_runs(
            [experiment_id], filter_string, ViewType.ACTIVE_ONLY, max_results, page_token=token
        ),
        max_results_per_page=5000,
    )


def run_status_for(state: TrialState) -> str:
    """The MLflow run status of an Optuna trial state.

    Args:
        state: The trial's state.

    Returns:
        FINISHED for COMPLETE and PRUNED, FAILED for FAIL, KILLED for an unfinished trial.
    """
    return _STATUS.get(state, "KILLED")


class TrialRunWriter:
    """Write the trials of one study as MLflow runs, idempotently (a rewrite sends what's new).

    With a ``study_uid`` every lookup matches on it: studies of one name never share a run.

    Args:
        client: Client of the tracking store.
        experiment_id: Experiment of the study's runs.
        study_name: The study's name.
        metric_name: One metric name (``{name}_{i}`` for several objectives) or one each.
        parent_run_id: Run new trial runs are nested under, if any.
        directions: The study's directions (tag ``optuna.direction``).
        tag_user_attrs: Tag the trial's user attrs.
        legacy_tags: Also write optuna_integration's tags (``number``, ``state``, ...).
        run_tags: Extra tags for every trial run.
        study_uid: The study's uid, tagged and matched; None matches by name only.
        owner: ``optuna_mlflow.owner`` tag of runs created here.
        name_prefix: Trial runs are named ``{name_prefix}{number}``.
        run_name: One name for every trial run instead.
    """

    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        study_name: str,
        *,
        metric_name: str | Sequence[str] = "value",
        parent_run_id: str | None = None,
        directions: Sequence[StudyDirection] | None = None,
        tag_user_attrs: bool = True,
        legacy_tags: bool = False,
        run_tags: Mapping[str, str] | None = None,
        study_uid: str | None = None,
        owner: str | None = None,
        name_prefix: str = "trial-",
        run_name: str | None = None,
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.study_name = study_name
        self.metric_name = metric_name
        self.parent_run_id = parent_run_id
        self.directions = list(directions) if directions is not None else None
        self.tag_user_attrs = tag_user_attrs
        self.legacy_tags = legacy_tags
        self.run_tags = dict(run_tags or {})
        self.study_uid = study_uid
        self.owner = owner
        self.name_prefix = name_prefix
        self.fixed_run_name = run_name

    def metric_names(self, n_values: int) -> list[str]:
        """One metric name per objective value of a trial with ``n_values`` values."""
        return k.resolve_metric_names(self.metric_name, n_values)

    @property
    def intermediate_key(self) -> str:
        """Metric the intermediate values are logged under (the first objective's)."""
        return self.metric_names(len(self.directions) if self.directions else 1)[0]

    def run_name(self, number: int) -> str:
        """Run name of trial ``number``."""
        return self.fixed_run_name or f"{self.name_prefix}{number}"

    def study_tags(self, role: str) -> dict[str, str]:
        """The study's tags on each of its runs; ``role`` is "parent" or "trial"."""
        tags = {k.STUDY_NAME: self.study_name, k.ROLE: role}
        if self.directions:
            tags[k.DIRECTION] = ",".join(d.name for d in self.directions)
        if self.study_uid is not None:
            tags[k.STUDY_UID] = self.study_uid
        return tags

    def base_tags(self, number: int, state: str = "RUNNING") -> dict[str, str]:
        """Tags every run of trial ``number`` carries from its creation on."""
        trial = {k.TRIAL_NUMBER: str(number), k.TRIAL_STATE: state}
        return {**self.run_tags, **self.study_tags("trial"), **trial}

    def study_filter(self) -> str:
        """MLflow search filter of this study's runs: by uid when known, else by name."""
        if self.study_uid is not None:
            return tag_filter(k.STUDY_UID, self.study_uid)
        return tag_filter(k.STUDY_NAME, self.study_name)

    def search_study_runs(self) -> list[Run]:
        """Every active run of the study in the experiment (parents included)."""
        return search_runs(self.client, self.experiment_id, self.study_filter())

    def index_trial_runs(self, runs: Iterable[Run]) -> dict[int, Run]:
        """Trial runs by number; of several, the one under our parent wins, then the oldest."""
        found: dict[int, Run] = {}

        def rank(run: Run) -> tuple[bool, int]:
            parent = run.data.tags.get(k.MLFLOW_PARENT_RUN_ID)
            return parent != self.parent_run_id, run.info.start_time or 0

        for run in runs:
            number = run.data.tags.get(k.TRIAL_NUMBER, "")
            other = self.study_uid is not None and run.data.tags.get(k.STUDY_UID) != self.study_uid
            if other or not number.lstrip("-").isdigit():
                continue  # another study of the same name, or not a trial's run
            if int(number) not in found or rank(run) < rank(found[int(number)]):
                found[int(number)] = run
        return found

    def find_runs(self) -> dict[int, Run]:
        """All trial runs of this study in the experiment, by trial number."""
        return self.index_trial_runs(self.search_study_runs())

    def find_run(self, number: int) -> Run | None:
        """The run of trial ``number`` of this study, if any."""
        by_number = f"{self.study_filter()} and {tag_filter(k.TRIAL_NUMBER, str(number))}"
        runs = search_runs(self.client, self.experiment_id, by_number)
        return self.index_trial_runs(runs).get(number)

    def create_run(
        self, number: int, *, start_time: int | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create the RUNNING run of trial ``number`` (``start_time`` in ms); return its id."""
        all_tags = {**self.base_tags(number), **(tags or {})}
        if self.parent_run_id is not None:
            all_tags[k.MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        if self.owner is not None:
            all_tags.setdefault(k.OWNER, self.owner)
        name = self.run_name(number)
        return self.client.create_run(self.experiment_id, start_time, all_tags, name).info.run_id

    def is_up_to_date(self, run: Run, trial: FrozenTrial) -> bool:
        """Whether ``run`` holds the finished ``trial`` in full (state tag, status come last)."""
        return (
            trial.state.is_finished()
            and run.data.tags.get(k.TRIAL_STATE) == trial.state.name
            and run.info.status == run_status_for(trial.state)
        )

    def write(
        self,
        trial: FrozenTrial,
        *,
        run_id: str | None = None,
        existing: Run | None = None,
        search: bool = True,
        terminate: bool = True,
        status: str | None = None,
        extra_metrics: Sequence[Metric] = (),
        skip_steps: Mapping[str, Iterable[int]] | None = None,
        fail_reason: str | None = None,
        extra_tags: Mapping[str, str] | None = None,
    ) -> str:
        """Write ``trial`` into its run, creating the run if needed.

        Args:
            trial: The trial, as stored by Optuna.
            run_id: The trial's run, when the caller knows it.
            existing: The trial's run as searched; what it holds is not sent again.
            search: Look the run up when neither ``run_id`` nor ``existing`` is given.
            terminate: End the run with the status of the trial's state.
            status: Status to end with instead (for trials whose process died).
            extra_metrics: Further metrics to send (buffered per-step metrics).
            skip_steps: Steps already logged per metric key, not sent again.
            fail_reason: Why a FAIL trial failed, when the storage does not say.
            extra_tags: Further tags.

        Returns:
            The run id.
        """
        if run_id is None and existing is None and search:
            existing = self.find_run(trial.number)
        if existing is not None:
            run_id = existing.info.run_id
        metrics, params, tags = self._entities(trial, existing, skip_steps, fail_reason)
        tags.update(extra_tags or {})
        state = {k.TRIAL_STATE: trial.state.name}
        start = to_ms(trial.datetime_start)
        if run_id is None and len(tags) < MAX_PARAMS_TAGS_PER_BATCH:
            # A new run takes its tags at creation: one request less; its status comes last.
            run_id = self.create_run(trial.number, start_time=start, tags={**tags, **state})
            tags, state = {}, {}
        elif run_id is None:
            run_id = self.create_run(trial.number, start_time=start)
        log_batch_chunked(self.client, run_id, [*metrics, *extra_metrics], params, tags, state)
        if terminate:
            self.terminate(run_id, trial, status)
        return run_id

    def terminate(self, run_id: str, trial: FrozenTrial, status: str | None = None) -> None:
        """End the trial's run with ``status`` or its state's, at its completion time."""
        end = to_ms(trial.datetime_complete) or now_ms()
        self.client.set_terminated(run_id, status or run_status_for(trial.state), end)

    def _entities(
        self,
        trial: FrozenTrial,
        existing: Run | None,
        skip_steps: Mapping[str, Iterable[int]] | None,
        fail_reason: str | None,
    ) -> tuple[list[Metric], list[Param], dict[str, str]]:
        curve = self.intermediate_key
        skip: set[int] = set((skip_steps or {}).get(curve, ()))
        have_metrics: Mapping[str, float] = {}
        if existing is not None:
            have_metrics = existing.data.metrics
            if curve in have_metrics and trial.intermediate_values:
                history = self.client.get_metric_history(existing.info.run_id, curve)
                skip.update(m.step for m in history)
        names = self.metric_names(len(trial.values)) if trial.values is not None else []
        metrics = trial_metrics(trial, curve, names, skip_steps=skip, have=have_metrics)
        params = trial_params(trial, existing.data.params if existing is not None else {})
        tags = trial_tags(
            trial,
            self.base_tags(trial.number),
            fail_reason=fail_reason,
            user_attrs=self.tag_user_attrs,
            legacy_directions=self.directions if self.legacy_tags else None,
        )
        del tags[k.TRIAL_STATE]  # sent last by write(), see is_up_to_date()
        return metrics, params, tags
