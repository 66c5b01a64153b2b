"""Where a study's runs go: the experiment and the parent run, resolved once."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from optuna_mlflow import _keys as k
from optuna_mlflow._compat import active_experiment_id, study_storage
from optuna_mlflow._entities import log_batch_chunked, tag_text
from optuna_mlflow._identity import (
    adopt_legacy_runs,
    ensure_study_uid,
    legacy_rule,
    storage_identity,
    storage_url,
)
from optuna_mlflow._owner import process_owner
from optuna_mlflow._writer import TrialRunWriter

# Our own study attrs are not tagged as user attrs: the uid is optuna.study_uid already.
_OWN_ATTRS = (k.STUDY_UID_ATTR, k.LEGACY_TRIALS_ATTR)


@functools.cache
def context_tags() -> dict[str, str]:
    """MLflow's source/user/git tags for runs of this process (resolved once: git is slow)."""
    from mlflow.tracking.context.registry import resolve_tags

    skip = (k.MLFLOW_RUN_NAME, k.MLFLOW_PARENT_RUN_ID)  # per run
    return {key: str(v) for key, v in resolve_tags({}).items() if key not in skip}


@dataclass
class StudySession:
    """One study's experiment, parent run (``owns_parent``: started here) and trial writer."""

    study: optuna.Study
    writer: TrialRunWriter
    owns_parent: bool
    last_heartbeat: float = field(default_factory=time.time)  # its parent was just tagged

    @property
    def study_uid(self) -> str:
        assert self.writer.study_uid is not None
        return self.writer.study_uid

    @property
    def parent_run_id(self) -> str | None:
        """The study's parent run; None in optuna_integration's layout."""
        return self.writer.parent_run_id

    @classmethod
    def open(
        cls,
        client: MlflowClient,
        study: optuna.Study,
        parent_run_id: str | None,
        options: Mapping[str, Any],
    ) -> StudySession:
        """Resolve (creating if needed) the study's uid, experiment and parent run; adopt its
        older runs. ``options``: ``MLflowCallback``'s arguments."""
        study_uid = ensure_study_uid(study)
        if parent_run_id is not None:
            experiment_id = client.get_run(parent_run_id).info.experiment_id
        else:
            experiment_id = _experiment_id(client, study.study_name, options)
        parent, mlflow_kwargs = options["parent"], options["mlflow_kwargs"]
        run_name = mlflow_kwargs.get("run_name")
        run_tags = dict(context_tags())
        run_tags.update({str(key): str(v) for key, v in (mlflow_kwargs.get("tags") or {}).items()})
        if options["tag_study_user_attrs"]:  # as in optuna_integration: they supersede the trial's
            attrs = {key: v for key, v in study.user_attrs.items() if key not in _OWN_ATTRS}
            run_tags.update({k.safe_key(key): tag_text(v) for key, v in attrs.items()})
        writer = TrialRunWriter(
            client,
            experiment_id,
            study.study_name,
            metric_name=options["metric_name"],
            parent_run_id=parent_run_id if parent else None,
            directions=study.directions,
            tag_user_attrs=options["tag_trial_user_attrs"],
            legacy_tags=options["legacy_tags"],
            run_tags=run_tags,
            study_uid=study_uid,
            owner=process_owner(),
            name_prefix="trial-" if parent else "",
            run_name=None if parent or run_name is None else str(run_name),
        )
        if parent:
            writer.parent_run_id = _open_parent(writer, study, parent_run_id, run_name)
        adopt_legacy_runs(writer, study, legacy_rule(study, storage_identity(study_storage(study))))
        return cls(study=study, writer=writer, owns_parent=parent and parent_run_id is None)


def _open_parent(writer: TrialRunWriter, study: optuna.Study, given: str | None, name: Any) -> str:
    """Tag the given parent run as the study's, or start one owned by this process."""
    tags = {**writer.study_tags("parent"), k.HEARTBEAT: str(int(time.time()))}
    if url := storage_url(study_storage(study)):
        tags[k.STORAGE] = url
    if given is None:
        tags = {**context_tags(), **tags, k.OWNER: str(writer.owner)}
        run = writer.client.create_run(
            writer.experiment_id, tags=tags, run_name=str(name or study.study_name)
        )
        return str(run.info.run_id)
    log_batch_chunked(writer.client, given, tags=tags)
    return given


def _experiment_id(client: MlflowClient, study_name: str, options: Mapping[str, Any]) -> str:
    if options["mlflow_kwargs"].get("experiment_id") is not None:
        return str(options["mlflow_kwargs"]["experiment_id"])
    if options["create_experiment"]:
        return get_or_create_experiment(client, study_name)
    # The order of MLflow's fluent API: set_experiment, the environment, then Default.
    if active := active_experiment_id() or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return active
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return get_or_create_experiment(client, os.environ["MLFLOW_EXPERIMENT_NAME"])
    return "0"


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """Id of the experiment called ``name``, created when missing (race-safe)."""
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
    except MlflowException:  # another worker created it between our lookup and create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
