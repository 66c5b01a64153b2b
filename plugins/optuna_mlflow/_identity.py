"""A uid per Optuna study, so two studies of one name never share runs; older runs are
adopted once (see the README)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._compat import storage_location, study_id
from optuna_mlflow._entities import param_text, to_ms
from optuna_mlflow._keys import redact_url
from optuna_mlflow._writer import TrialRunWriter, search_runs, tag_filter

_logger = logging.getLogger(__name__)
# Fixed uuid5 namespace: the same study always derives the same uid.
_NAMESPACE = uuid.UUID("5f0c7f4e-3a55-4c55-9c5e-7d1b0b6a2f11")


def read_study_uid(study: optuna.Study) -> str | None:
    """The uid stored in the study (read from its storage now), or None."""
    uid = study.user_attrs.get(k.STUDY_UID_ATTR)
    return uid if isinstance(uid, str) and uid else None


def next_trial_number(study: optuna.Study) -> int:
    """The number the study's next trial gets."""
    return max((t.number for t in study.get_trials(deepcopy=False)), default=-1) + 1


def ensure_study_uid(study: optuna.Study) -> str:
    """The study's uid as its storage holds it, created and stored on first use (the storage
    must then be writable). Optuna has no compare-and-set for user attrs: call it under a lock
    every process opening the study shares, right after opening it."""
    uid = read_study_uid(study)
    if uid is not None:
        return uid
    # Written before the uid: whoever sees the uid also sees which trials may be legacy.
    study.set_user_attr(k.LEGACY_TRIALS_ATTR, next_trial_number(study))
    study.set_user_attr(k.STUDY_UID_ATTR, uuid.uuid4().hex)
    stored = read_study_uid(study)
    if stored is None:
        raise RuntimeError(
            f"study {study.study_name!r}: expected its storage to keep the user attr "
            f"{k.STUDY_UID_ATTR!r}, read back nothing; use a writable Optuna storage"
        )
    return stored


def storage_url(storage: BaseStorage) -> str | None:
    """Password-free RDB URL or journal path of a storage; None in memory."""
    url, path = storage_location(storage)
    where = url or path
    return redact_url(where) if where else None


def storage_identity(storage: BaseStorage) -> str | None:
    """A storage's resolved file path or password-free URL, however named; None in memory."""
    url, path = storage_location(storage)
    if url is not None:
        return file_identity(url) or redact_url(url)
    return str(Path(path).expanduser().resolve()) if path else None


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL; None in memory."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:].split("?", 1)[0]).expanduser()


def file_identity(url: str) -> str | None:
    """The resolved file of a ``sqlite:///`` URL; None for other URLs and memory."""
    path = sqlite_path(url) if url.startswith("sqlite:///") else None
    return str(path.resolve()) if path is not None else None


def derived_study_uid(identity: str, study: optuna.Study) -> str:
    """The same uid on every import of a study whose storage is not written (a copy); the
    first trial start tells apart a study recreated at the same path (``identity``)."""
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    first = min(starts).isoformat() if starts else ""
    key = "\n".join([identity, study.study_name, str(study_id(study)), first])
    return uuid.uuid5(_NAMESPACE, key).hex


@dataclass(frozen=True)
class LegacyRule:
    """Runs of trials below ``trials`` may lack the uid or carry ``also_uid`` (a copy's import)."""

    trials: int
    also_uid: str | None = None


def legacy_rule(study: optuna.Study, identity: str | None) -> LegacyRule:
    """The legacy rule of a study that has a uid (``identity``: its storage's, if known)."""
    value = study.user_attrs.get(k.LEGACY_TRIALS_ATTR, 0)
    trials = value if isinstance(value, int) else 0
    also = derived_study_uid(identity, study) if identity and trials > 0 else None
    return LegacyRule(trials, also)


def adopt_legacy_runs(writer: TrialRunWriter, study: optuna.Study, rule: LegacyRule) -> list[str]:
    """Tag the runs from before the study's uid with it (same name, number below ``rule.trials``,
    started within the trial's lifetime, no differing param; parents follow); return ids."""
    if rule.trials <= 0 or writer.study_uid is None:
        return []
    trials = {t.number: t for t in study.get_trials(deepcopy=False) if t.number < rule.trials}
    candidates = _candidates(writer, rule.also_uid)
    adopted: list[Run] = []
    for run in candidates:
        number = run.data.tags.get(k.TRIAL_NUMBER, "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if trial is not None and _same_trial(run, trial):
            adopted.append(run)
    parents = {r.data.tags.get(k.MLFLOW_PARENT_RUN_ID, "") for r in adopted}
    adopted += [
        r for r in candidates if k.TRIAL_NUMBER not in r.data.tags and r.info.run_id in parents
    ]
    for run in adopted:
        writer.client.set_tag(run.info.run_id, k.STUDY_UID, writer.study_uid)
    if adopted:
        msg = "Study %r: adopted %d MLflow runs from before study uids; they now carry %s=%s."
        _logger.warning(msg, study.study_name, len(adopted), k.STUDY_UID, writer.study_uid)
    return [r.info.run_id for r in adopted]


def _candidates(writer: TrialRunWriter, also_uid: str | None) -> list[Run]:
    client, experiment_id = writer.client, writer.experiment_id
    by_name = tag_filter(k.STUDY_NAME, writer.study_name)
    try:
        runs = search_runs(client, experiment_id, f"{by_name} and tags.`{k.STUDY_UID}` IS NULL")
    except MlflowException:  # a tracking server older than IS NULL: filtered here instead
        runs = search_runs(client, experiment_id, by_name)
    found = {r.info.run_id: r for r in runs if k.STUDY_UID not in r.data.tags}
    if also_uid is not None and also_uid != writer.study_uid:
        for run in search_runs(client, experiment_id, tag_filter(k.STUDY_UID, also_uid)):
            found[run.info.run_id] = run
    return list(found.values())


def _same_trial(run: Run, trial: FrozenTrial) -> bool:
    start, end = to_ms(trial.datetime_start), to_ms(trial.datetime_complete)
    if start is None:
        return False  # a trial that never started has no run
    # A trial's run starts while the trial runs: another study's trial ran at another time.
    began = run.info.start_time or 0
    if began < start - 1 or (end is not None and began > end + 1000):
        return False
    # A run may hold fewer params (its process died) or more (the objective's), never others.
    expected = {k.safe_key(name): param_text(value) for name, value in trial.params.items()}
    return all(expected.get(key, value) == value for key, value in run.data.params.items())
