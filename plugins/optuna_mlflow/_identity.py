"""Study identity: a uid per Optuna study, so two studies of one name never share runs.

A study name is not an identity: deleting ``optuna.db`` and starting over, or running a
second storage file against the same MLflow experiment, gives two studies of one name.
Every study therefore gets a uid (uuid4 hex) once, kept in the study itself as the user
attr ``optuna_mlflow.study_uid``; every run written for it carries the tag
``optuna.study_uid``, and every lookup matches on it.

Runs written before uids existed carry none. When a study gets its uid, the number of
trials it already holds is kept too (``optuna_mlflow.legacy_trials``): only runs of those
trials, found by study name and trial number as before, started while that trial ran and
with no param that differs from the trial's, are adopted (tagged with the uid), once, with a
warning. Runs of any later trial must carry the uid.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from optuna.trial import FrozenTrial

from optuna_mlflow import _keys as k
from optuna_mlflow._entities import to_ms
from optuna_mlflow._redact import redact_url
from optuna_mlflow._search import quote, search_runs
from optuna_mlflow._writer import TrialRunWriter

__all__ = [
    "LegacyRule",
    "adopt_legacy_runs",
    "derived_study_uid",
    "ensure_study_uid",
    "legacy_rule",
    "read_study_uid",
    "storage_identity",
]

_logger = logging.getLogger(__name__)
# Fixed namespace of derived uids (uuid5), so the same study always derives the same uid.
_NAMESPACE = uuid.UUID("5f0c7f4e-3a55-4c55-9c5e-7d1b0b6a2f11")


def read_study_uid(study: optuna.Study) -> str | None:
    """The uid stored in the study, read from its storage now.

    Args:
        study: The study.

    Returns:
        The uid, or None when the study has none yet.
    """
    uid = study.user_attrs.get(k.STUDY_UID_ATTR)
    return uid if isinstance(uid, str) and uid else None


def ensure_study_uid(study: optuna.Study) -> str:
    """The study's uid, created and stored in the study on first use; idempotent.

    Two processes opening the same new study at the same instant could each store a uid
    (Optuna has no compare-and-set for user attrs), so call this under a lock that every
    process opening the study shares, right after opening it.

    Args:
        study: The study; its storage must be writable when it has no uid yet.

    Returns:
        The uid the storage holds (re-read after storing it).

    Raises:
        RuntimeError: When the storage did not keep the uid.
    """
    uid = read_study_uid(study)
    if uid is not None:
        return uid
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    # Written before the uid: whoever sees the uid also sees which trials may be legacy.
    study.set_user_attr(k.LEGACY_TRIALS_ATTR, max(numbers, default=-1) + 1)
    study.set_user_attr(k.STUDY_UID_ATTR, uuid.uuid4().hex)
    stored = read_study_uid(study)
    if stored is None:
        raise RuntimeError(
            f"study {study.study_name!r}: expected its storage to keep the user attr "
            f"{k.STUDY_UID_ATTR!r}, read back nothing; use a writable Optuna storage"
        )
    return stored


def storage_identity(storage: object) -> str | None:
    """Where a storage lives, the same way however it was named (for derived uids).

    Args:
        storage: An Optuna storage object.

    Returns:
        The resolved file path of a SQLite or journal file, the password-free URL of a
        server database, or None for in-memory storages.
    """
    backend = getattr(storage, "_backend", storage)  # _CachedStorage and JournalStorage wrap
    url = getattr(backend, "url", None)
    if isinstance(url, str) and url:
        return file_identity(url) or redact_url(url)
    path = getattr(backend, "_file_path", None)
    return str(Path(str(path)).expanduser().resolve()) if path else None


def file_identity(url: str) -> str | None:
    """The resolved path of a ``sqlite:///`` URL's file; None for other URLs and memory."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return str(Path(url[len("sqlite:///") :].split("?", 1)[0]).expanduser().resolve())


def derived_study_uid(identity: str, study: optuna.Study) -> str:
    """A deterministic uid for a study whose storage cannot be written (an import's copy).

    The earliest trial start is part of the key: a study deleted and created again at the
    same path, under the same name, gets the same storage id but other start times.

    Args:
        identity: :func:`storage_identity` of the original storage.
        study: The study.

    Returns:
        A uuid5 hex, the same for every import of this study.
    """
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    first = min(starts).isoformat() if starts else ""
    key = "\n".join([identity, study.study_name, str(study._study_id), first])
    return uuid.uuid5(_NAMESPACE, key).hex


@dataclass(frozen=True)
class LegacyRule:
    """Which runs without this study's uid are the study's own.

    Attributes:
        trials: Runs of trials numbered below this may lack the uid (written before it).
        also_uid: Runs tagged with this uid instead are adopted too (an earlier import of
            a read-only copy of this very storage derived it).
    """

    trials: int
    also_uid: str | None = None


def legacy_rule(study: optuna.Study, identity: str | None) -> LegacyRule:
    """The legacy rule of a study that has a uid.

    Args:
        study: The study.
        identity: :func:`storage_identity` of its storage, if known.

    Returns:
        The rule; ``trials`` is 0 (nothing to adopt) for a study created with its uid.
    """
    value = study.user_attrs.get(k.LEGACY_TRIALS_ATTR, 0)
    trials = value if isinstance(value, int) else 0
    also = derived_study_uid(identity, study) if identity and trials > 0 else None
    return LegacyRule(trials, also)


def adopt_legacy_runs(writer: TrialRunWriter, study: optuna.Study, rule: LegacyRule) -> list[str]:
    """Tag the study's runs written before it had a uid with the uid (see the module doc).

    A trial run is adopted when it carries the study's name (and no uid, or
    ``rule.also_uid``), the number of a trial below ``rule.trials``, a start time within
    that trial's lifetime, and no param that differs from that trial's. A parent run is
    adopted with its adopted trial runs.

    Args:
        writer: The study's writer; its ``study_uid`` is the uid to tag.
        study: The study.
        rule: Which trials may have legacy runs.

    Returns:
        The adopted run ids.
    """
    if rule.trials <= 0 or writer.study_uid is None:
        return []
    trials = {t.number: t for t in study.get_trials(deepcopy=False) if t.number < rule.trials}
    candidates = _candidates(writer, rule.also_uid)
    adopted: list[Run] = []
    parents: set[str] = set()
    for run in candidates:
        number = run.data.tags.get(k.TRIAL_NUMBER, "")
        trial = trials.get(int(number)) if number.isdigit() else None
        if trial is not None and _same_trial(run, trial):
            adopted.append(run)
            parents.add(run.data.tags.get(k.MLFLOW_PARENT_RUN_ID, ""))
    adopted += [
        r for r in candidates if k.TRIAL_NUMBER not in r.data.tags and r.info.run_id in parents
    ]
    for run in adopted:
        writer.client.set_tag(run.info.run_id, k.STUDY_UID, writer.study_uid)
    if adopted:
        _logger.warning(
            "Study %r: adopted %d MLflow runs written before study uids existed (matched by "
            "study name and trial number); they now carry %s=%s.",
            study.study_name,
            len(adopted),
            k.STUDY_UID,
            writer.study_uid,
        )
    return [r.info.run_id for r in adopted]


def _candidates(writer: TrialRunWriter, also_uid: str | None) -> list[Run]:
    client, experiment_id = writer.client, writer.experiment_id
    by_name = f"tags.`{k.STUDY_NAME}` = {quote(writer.study_name)}"
    try:
        runs = search_runs(client, experiment_id, f"{by_name} and tags.`{k.STUDY_UID}` IS NULL")
    except MlflowException:
        # Tracking servers older than IS NULL support: the same search, filtered here.
        runs = search_runs(client, experiment_id, by_name)
    found = {r.info.run_id: r for r in runs if k.STUDY_UID not in r.data.tags}
    if also_uid is not None and also_uid != writer.study_uid:
        for run in search_runs(client, experiment_id, f"tags.`{k.STUDY_UID}` = {quote(also_uid)}"):
            found[run.info.run_id] = run
    return list(found.values())


def _same_trial(run: Run, trial: FrozenTrial) -> bool:
    start, end = to_ms(trial.datetime_start), to_ms(trial.datetime_complete)
    if start is None:
        return False  # a trial that never started has no run
    # Every writer starts a trial's run at the trial's start (the importer, the reconciler)
    # or while it runs (the live callback), on the clock of the host that ran the trial:
    # another study's trial of the same number ran at another time.
    began = run.info.start_time or 0
    if began < start - 1 or (end is not None and began > end + 1000):
        return False
    # Stringified as the writer logs them (trial_params). A run may hold fewer (its process
    # died before they were written) or more (logged by the objective), never other values.
    expected = {
        k.safe_key(name): k.truncate(value, MAX_PARAM_VAL_LENGTH)
        for name, value in trial.params.items()
    }
    return all(expected.get(key, value) == value for key, value in run.data.params.items())
