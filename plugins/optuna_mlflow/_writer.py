"""The one place that turns an Optuna trial into an MLflow run.

The live callback, the crash reconciler and the study importer all write through
:class:`TrialRunWriter`, so a trial looks the same in MLflow however it got there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_mlflow import _keys as k
from optuna_mlflow._batch import log_batch_chunked
from optuna_mlflow._entities import now_ms, to_ms, trial_metrics, trial_params, trial_tags
from optuna_mlflow._search import index_trial_runs, quote, search_runs

__all__ = ["TrialRunWriter", "run_status_for"]

_logger = logging.getLogger(__name__)

_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    # Pruning is the normal fate of most trials; FAILED/KILLED would paint them red in the UI.
    TrialState.PRUNED: "FINISHED",
    TrialState.FAIL: "FAILED",
}


def run_status_for(state: TrialState) -> str:
    """Map an Optuna trial state to the MLflow run status this package uses.

    Args:
        state: The trial's state.

    Returns:
        ``FINISHED`` for COMPLETE and PRUNED, ``FAILED`` for FAIL, ``KILLED`` for a trial
        that never finished (its process died).
    """
    return _STATUS.get(state, "KILLED")


class TrialRunWriter:
    """Write Optuna trials of one study as nested MLflow runs, idempotently.

    Each trial becomes a run (named ``trial-{number}`` by default) with the trial's params, its
    objective value(s) as metric(s), its intermediate values as the history of the first
    metric (``step`` = the reported step), the tags ``optuna.study_name``,
    ``optuna.study_uid`` (when known), ``optuna.trial_number``, ``optuna.trial_state``,
    ``optuna.direction`` (and ``optuna.fail_reason`` for failures), and a status:
    COMPLETE and PRUNED end FINISHED, FAIL ends FAILED. Pruned runs also get
    ``pruned_at_epoch`` (the last reported step).

    Writing a trial whose run already exists fills in only what is missing, so the
    reconciler and the importer can rewrite freely. With a ``study_uid`` every lookup
    matches on it, so another study of the same name never shares a run.

    Args:
        client: Client of the tracking store.
        experiment_id: Experiment that holds the study's runs.
        study_name: Name of the Optuna study (tag ``optuna.study_name``).
        metric_name: One metric name (broadcast as ``{name}_{i}`` for several objectives)
            or one name per objective, as in ``optuna_integration.MLflowCallback``.
        parent_run_id: Run under which new trial runs are nested, if any.
        directions: The study's directions, logged as tag ``optuna.direction``.
        tag_user_attrs: Log the trial's user attrs as tags.
        legacy_tags: Also write the tags ``optuna_integration.MLflowCallback`` wrote
            (``number``, ``state``, ``direction``, ``datetime_*``, ``{param}_distribution``),
            so dashboards built on them keep working.
        run_tags: Extra tags for every trial run (e.g. MLflow's source/user tags).
        study_uid: The study's uid (``optuna_mlflow.ensure_study_uid``), tagged
            ``optuna.study_uid`` and matched by every lookup; None matches by name only.
        owner: ``optuna_mlflow.owner`` tag of the runs this writer creates (the live
            process); rewrites never change it.
        name_prefix: Trial runs are named ``{name_prefix}{number}``; ``""`` gives
            optuna_integration's names.
        run_name: One name for every trial run instead (optuna_integration's
            ``mlflow_kwargs["run_name"]``).
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

    # -- naming ---------------------------------------------------------------------------

    def metric_names(self, n_values: int) -> list[str]:
        """Metric names for a trial with ``n_values`` objective values.

        Args:
            n_values: Number of objective values.

        Returns:
            One MLflow metric name per value.
        """
        return k.resolve_metric_names(self.metric_name, n_values)

    @property
    def intermediate_key(self) -> str:
        """Metric under which intermediate values are logged (the first objective's)."""
        n = len(self.directions) if self.directions else 1
        return self.metric_names(n)[0]

    def run_name(self, number: int) -> str:
        """Run name of trial ``number``."""
        return self.fixed_run_name or f"{self.name_prefix}{number}"

    def _direction_tag(self) -> dict[str, str]:
        if not self.directions:
            return {}
        return {k.DIRECTION: ",".join(d.name for d in self.directions)}

    def base_tags(self, number: int, state: str = "RUNNING") -> dict[str, str]:
        """Tags every trial run carries from its creation on.

        Args:
            number: Trial number.
            state: Value of ``optuna.trial_state``.

        Returns:
            The tags as a plain dict.
        """
        tags = dict(self.run_tags)
        tags.update(self._direction_tag())
        tags[k.STUDY_NAME] = self.study_name
        if self.study_uid is not None:
            tags[k.STUDY_UID] = self.study_uid
        tags[k.TRIAL_NUMBER] = str(number)
        tags[k.TRIAL_STATE] = state
        tags[k.ROLE] = "trial"
        return tags

    # -- finding runs ---------------------------------------------------------------------

    def study_filter(self) -> str:
        """MLflow search filter of this study's runs: by uid when known, else by name."""
        if self.study_uid is not None:
            return f"tags.`{k.STUDY_UID}` = {quote(self.study_uid)}"
        return f"tags.`{k.STUDY_NAME}` = {quote(self.study_name)}"

    def search_study_runs(self) -> list[Run]:
        """Every active run of the experiment tagged with this study (parents included).

        Returns:
            The runs, from one paged search.
        """
        return search_runs(self.client, self.experiment_id, self.study_filter())

    def index_trial_runs(self, runs: Iterable[Run]) -> dict[int, Run]:
        """Trial runs by number; of several for one trial, the one under our parent wins.

        Args:
            runs: Runs of the study, e.g. from :meth:`search_study_runs`.

        Returns:
            Trial number -> run.
        """
        return index_trial_runs(runs, self.parent_run_id, self.study_uid)

    def find_runs(self) -> dict[int, Run]:
        """All trial runs of this study in the experiment, by trial number (one search).

        Returns:
            Trial number -> run.
        """
        return self.index_trial_runs(self.search_study_runs())

    def find_run(self, number: int) -> Run | None:
        """The run of trial ``number`` of this study, if one exists.

        Args:
            number: Trial number.

        Returns:
            The run, or None.
        """
        runs = search_runs(
            self.client,
            self.experiment_id,
            f"{self.study_filter()} and tags.`{k.TRIAL_NUMBER}` = '{number}'",
        )
        return self.index_trial_runs(runs).get(number)

    # -- writing --------------------------------------------------------------------------

    def create_run(
        self,
        number: int,
        *,
        start_time: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the (RUNNING) run of trial ``number`` under ``parent_run_id``.

        Args:
            number: Trial number.
            start_time: Start time in ms since the epoch; now when None.
            tags: Tags added to :meth:`base_tags`.

        Returns:
            The new run's id.
        """
        all_tags = self.base_tags(number)
        all_tags.update(tags or {})
        if self.parent_run_id is not None:
            all_tags[k.MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        if self.owner is not None:
            all_tags.setdefault(k.OWNER, self.owner)
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_time,
            tags=all_tags,
            run_name=self.run_name(number),
        )
        return run.info.run_id

    def is_up_to_date(self, run: Run, trial: FrozenTrial) -> bool:
        """Whether ``run`` already holds the final state of the finished ``trial``.

        A write ends with the run's status (and sends the state tag after everything
        else), so the state tag together with the matching terminal status means the
        whole trial landed.

        Args:
            run: The trial's run (as returned by a search, with its tags).
            trial: The trial from Optuna's storage.

        Returns:
            True when there is nothing left to write.
        """
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
            run_id: The trial's run when the caller knows it (the live callback).
            existing: The trial's run as found by :meth:`find_runs`; what it already holds
                is not sent again.
            search: Look the run up by tags when neither ``run_id`` nor ``existing`` is
                given. The live callback passes False: nobody else writes its trials.
            terminate: End the run with the status of the trial's state.
            status: Status to end with instead of the one mapped from the trial's state
                (used for trials whose process died).
            extra_metrics: Further metrics to send in the same requests (buffered
                per-step metrics of the live callback).
            skip_steps: Steps already logged per metric key; intermediate values at those
                steps are not sent again.
            fail_reason: Why a FAIL trial failed, when Optuna's storage does not say.
            extra_tags: Further tags (e.g. why the reconciler ended the run).

        Returns:
            The run id.
        """
        if run_id is None and existing is None and search:
            existing = self.find_run(trial.number)
        if existing is not None:
            run_id = existing.info.run_id
        metrics, params, tags = self._entities(trial, existing, skip_steps, fail_reason)
        tags.extend(RunTag(key, value) for key, value in (extra_tags or {}).items())
        if run_id is None and len(tags) < MAX_PARAMS_TAGS_PER_BATCH:
            # A new run takes all its tags at creation: one request (and commit) less.
            # Completeness is still told by the status, which is set last.
            all_tags = {t.key: t.value for t in tags}
            all_tags[k.TRIAL_STATE] = trial.state.name
            start = to_ms(trial.datetime_start)
            run_id = self.create_run(trial.number, start_time=start, tags=all_tags)
            log_batch_chunked(self.client, run_id, [*metrics, *extra_metrics], params)
            if terminate:
                self.terminate(run_id, trial, status)
            return run_id
        if run_id is None:
            run_id = self.create_run(trial.number, start_time=to_ms(trial.datetime_start))
        log_batch_chunked(
            self.client,
            run_id,
            metrics=[*metrics, *extra_metrics],
            params=params,
            tags=tags,
            final_tags=[RunTag(k.TRIAL_STATE, trial.state.name)],
        )
        if terminate:
            self.terminate(run_id, trial, status)
        return run_id

    def terminate(self, run_id: str, trial: FrozenTrial, status: str | None = None) -> None:
        """End the trial's run with the status of its state and its completion time.

        Args:
            run_id: The trial's run.
            trial: The trial, as stored by Optuna.
            status: Status to use instead of the mapped one.
        """
        self.client.set_terminated(
            run_id,
            status=status or run_status_for(trial.state),
            end_time=to_ms(trial.datetime_complete) or now_ms(),
        )

    def _entities(
        self,
        trial: FrozenTrial,
        existing: Run | None,
        skip_steps: Mapping[str, Iterable[int]] | None,
        fail_reason: str | None,
    ) -> tuple[list[Metric], list[Param], list[RunTag]]:
        skip: set[int] = set((skip_steps or {}).get(self.intermediate_key, ()))
        have_metrics: Mapping[str, float] = {}
        if existing is not None:
            have_metrics = existing.data.metrics
            if self.intermediate_key in have_metrics and trial.intermediate_values:
                history = self.client.get_metric_history(
                    existing.info.run_id, self.intermediate_key
                )
                skip.update(m.step for m in history)
        metrics = trial_metrics(
            trial,
            self.intermediate_key,
            self.metric_names(len(trial.values)) if trial.values is not None else [],
            skip_steps=skip,
            have=have_metrics,
        )
        params = trial_params(trial, existing.data.params if existing is not None else {})
        tags = trial_tags(
            trial,
            self.base_tags(trial.number),
            fail_reason=fail_reason,
            user_attrs=self.tag_user_attrs,
            legacy_directions=self.directions if self.legacy_tags else None,
        )
        del tags[k.TRIAL_STATE]  # sent last by write(), see is_up_to_date()
        return metrics, params, [RunTag(key, value) for key, value in tags.items()]
