"""Where a study's runs go: the experiment and the parent run, resolved once."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from optuna_mlflow import _keys as k
from optuna_mlflow._identity import (
    adopt_legacy_runs,
    ensure_study_uid,
    legacy_rule,
    storage_identity,
)
from optuna_mlflow._owner import process_owner
from optuna_mlflow._redact import redact_url
from optuna_mlflow._writer import TrialRunWriter

__all__ = ["StudySession", "context_tags", "get_or_create_experiment", "storage_url"]


@functools.cache
def context_tags() -> dict[str, str]:
    """MLflow's source/user/git tags for runs of this process, resolved once.

    Returns:
        Tag key -> value (never the run name or parent, which are per run).
    """
    from mlflow.tracking.context.registry import resolve_tags

    # Once per process: the git lookup behind these is slow.
    return {
        key: str(v)
        for key, v in resolve_tags({}).items()
        if key not in (k.MLFLOW_RUN_NAME, k.MLFLOW_PARENT_RUN_ID)
    }


def storage_url(storage: object) -> str | None:
    """Best-effort, password-free description of an Optuna storage.

    Args:
        storage: An Optuna storage object.

    Returns:
        The redacted RDB URL or journal file path, or None for in-memory storages.
    """
    backend = getattr(storage, "_backend", storage)  # _CachedStorage and JournalStorage wrap
    url = getattr(backend, "url", None) or getattr(backend, "_file_path", None)
    return redact_url(str(url)) if url else None


@dataclass
class StudySession:
    """The resolved MLflow home of one study: experiment, parent run (if any), trial writer.

    Attributes:
        study: The live study (its storage is re-read when runs are closed).
        writer: The trial writer bound to the experiment (and the parent run).
        owns_parent: Whether the parent run was started here (and is ended by close()).
        last_heartbeat: Time of the last heartbeat tag on the parent (``time.time()``).
    """

    study: optuna.Study
    writer: TrialRunWriter
    owns_parent: bool
    last_heartbeat: float = 0.0

    @property
    def study_uid(self) -> str:
        """The study's uid, tagged on every run of the session."""
        assert self.writer.study_uid is not None
        return self.writer.study_uid

    @property
    def parent_run_id(self) -> str | None:
        """The study's parent run; None in optuna_integration's layout (no parent)."""
        return self.writer.parent_run_id

    @classmethod
    def open(
        cls,
        client: MlflowClient,
        study: optuna.Study,
        *,
        metric_name: str | list[str] | tuple[str, ...],
        parent: bool,
        parent_run_id: str | None,
        create_experiment: bool,
        mlflow_kwargs: Mapping[str, Any],
        tag_study_user_attrs: bool,
        tag_trial_user_attrs: bool,
        legacy_tags: bool,
    ) -> StudySession:
        """Resolve (and create if needed) the experiment and the parent run of ``study``.

        The study gets its uid here if it has none (:func:`ensure_study_uid`), and its
        runs written before uids existed are adopted (see ``optuna_mlflow._identity``).
        A parent run created here is tagged with this process as its owner.

        Args:
            client: Client of the tracking store.
            study: The study.
            metric_name: See ``MLflowCallback``.
            parent: Nest the trial runs (named ``trial-{n}``) under a study parent run:
                ``parent_run_id``, else one started here, named after the study. False:
                optuna_integration's layout, one run per trial named ``{n}``.
            parent_run_id: An existing parent run (e.g. the MLflow Project run); its
                experiment is used.
            create_experiment: Use (creating if needed) an experiment named after the
                study when there is no parent run and no ``experiment_id``.
            mlflow_kwargs: ``experiment_id``, ``run_name`` (of the parent run, or of every
                trial run without one) and ``tags`` (added to every trial run).
            tag_study_user_attrs: Add the study's user attrs to every trial run's tags.
            tag_trial_user_attrs: Add each trial's user attrs to its run's tags.
            legacy_tags: See ``TrialRunWriter``.

        Returns:
            The session.
        """
        directions = list(study.directions)
        study_uid = ensure_study_uid(study)
        if parent_run_id is not None:
            experiment_id = client.get_run(parent_run_id).info.experiment_id
        else:
            experiment_id = _experiment_id(
                client, study.study_name, create_experiment, mlflow_kwargs
            )
        run_tags: dict[str, str] = dict(context_tags())
        run_tags.update({str(key): str(v) for key, v in (mlflow_kwargs.get("tags") or {}).items()})
        if tag_study_user_attrs:
            # As in optuna_integration: study user attrs supersede the trial's. Our own
            # attrs are left out: the uid is tagged as optuna.study_uid already.
            attrs = {key: v for key, v in study.user_attrs.items() if key not in _OWN_ATTRS}
            run_tags.update(
                {k.safe_key(key): k.truncate(v, MAX_TAG_VAL_LENGTH) for key, v in attrs.items()}
            )
        run_name = mlflow_kwargs.get("run_name")
        owns_parent = parent and parent_run_id is None
        if parent:
            parent_run_id = _open_parent(client, study, experiment_id, parent_run_id, run_name)
        writer = TrialRunWriter(
            client,
            experiment_id,
            study.study_name,
            metric_name=metric_name,
            parent_run_id=parent_run_id if parent else None,
            directions=directions,
            tag_user_attrs=tag_trial_user_attrs,
            legacy_tags=legacy_tags,
            run_tags=run_tags,
            study_uid=study_uid,
            owner=process_owner(),
            name_prefix="trial-" if parent else "",
            run_name=None if parent or run_name is None else str(run_name),
        )
        adopt_legacy_runs(writer, study, legacy_rule(study, storage_identity(study._storage)))
        return cls(study=study, writer=writer, owns_parent=owns_parent)


_OWN_ATTRS = (k.STUDY_UID_ATTR, k.LEGACY_TRIALS_ATTR)


def _open_parent(
    client: MlflowClient,
    study: optuna.Study,
    experiment_id: str,
    given: str | None,
    run_name: object,
) -> str:
    """Tag the given parent run as the study's, or start one (owned by this process)."""
    tags = {
        k.STUDY_NAME: study.study_name,
        k.STUDY_UID: ensure_study_uid(study),
        k.ROLE: "parent",
        k.DIRECTION: ",".join(d.name for d in study.directions),
        k.HEARTBEAT: str(int(time.time())),
    }
    url = storage_url(getattr(study, "_storage", None))
    if url:
        tags[k.STORAGE] = url
    if given is None:
        tags = {**context_tags(), **tags, k.OWNER: process_owner()}
        name = str(run_name or study.study_name)
        return str(client.create_run(experiment_id, tags=tags, run_name=name).info.run_id)
    client.log_batch(given, tags=[RunTag(key, v) for key, v in tags.items()], synchronous=True)
    return given


def _experiment_id(
    client: MlflowClient,
    study_name: str,
    create_experiment: bool,
    mlflow_kwargs: Mapping[str, Any],
) -> str:
    if mlflow_kwargs.get("experiment_id") is not None:
        return str(mlflow_kwargs["experiment_id"])
    if create_experiment:
        return get_or_create_experiment(client, study_name)
    # Same order as MLflow's fluent API (set_experiment, then the environment, then the
    # Default experiment), without relying on its private helpers.
    import mlflow.tracking.fluent as fluent

    active = getattr(fluent, "_active_experiment_id", None)
    if active:
        return str(active)
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return get_or_create_experiment(client, os.environ["MLFLOW_EXPERIMENT_NAME"])
    return "0"


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """Id of the experiment called ``name``, creating it when missing (race-safe).

    Args:
        client: Client of the tracking store.
        name: Experiment name.

    Returns:
        The experiment id.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                "or use another name."
            )
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        # Another worker created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
