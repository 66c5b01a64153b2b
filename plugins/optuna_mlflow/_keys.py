"""Tag keys and small naming helpers shared by every writer of this package.

The tag keys are a contract (listed in this package's README): dashboards, the
reconciler and the importer find runs by them, so they never change silently.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

__all__ = [
    "DIRECTION",
    "ENDED_BY",
    "END_REASON",
    "FAIL_REASON",
    "HEARTBEAT",
    "IMPORT_SOURCE",
    "LEGACY_TRIALS_ATTR",
    "MLFLOW_PARENT_RUN_ID",
    "MLFLOW_RUN_NAME",
    "OWNER",
    "ROLE",
    "STORAGE",
    "STUDY_NAME",
    "STUDY_UID",
    "STUDY_UID_ATTR",
    "TRIAL_NUMBER",
    "TRIAL_STATE",
    "resolve_metric_names",
    "safe_key",
    "truncate",
]

STUDY_NAME = "optuna.study_name"
TRIAL_NUMBER = "optuna.trial_number"
TRIAL_STATE = "optuna.trial_state"
DIRECTION = "optuna.direction"
FAIL_REASON = "optuna.fail_reason"
STORAGE = "optuna.storage"
ROLE = "optuna_mlflow.role"
HEARTBEAT = "optuna_mlflow.heartbeat"
ENDED_BY = "optuna_mlflow.ended_by"
END_REASON = "optuna_mlflow.end_reason"
IMPORT_SOURCE = "optuna_mlflow.import_source"
# Which study a run belongs to: two Optuna studies may share a name (a deleted and
# recreated storage, another storage file), never a uid.
STUDY_UID = "optuna.study_uid"
# Which process created a run, "host:pid:start-ticks": the reconciler ends a RUNNING parent
# of a dead process on its own host at once instead of waiting for the heartbeat to age.
OWNER = "optuna_mlflow.owner"

# Study user attrs (in Optuna's storage, not in MLflow): the study's uid, and how many
# trials the study held when it got it (only those may have runs written without a uid).
STUDY_UID_ATTR = "optuna_mlflow.study_uid"
LEGACY_TRIALS_ATTR = "optuna_mlflow.legacy_trials"

# MLflow's own rule for param/metric/tag keys (mlflow.utils.validation), copied because
# the validators there are private; a key breaking it makes the whole batch fail.
_VALID_KEY = re.compile(r"^[/\w.\- :]*$")
_INVALID_CHAR = re.compile(r"[^/\w.\- :]")
_MAX_KEY_LENGTH = 250


def safe_key(name: str) -> str:
    """Turn an arbitrary name (param, user attr) into a key MLflow accepts.

    Args:
        name: The original name, e.g. an Optuna param name.

    Returns:
        ``name`` itself when MLflow accepts it, otherwise a close variant with the
        offending characters replaced by ``_``.
    """
    if _VALID_KEY.match(name) and 0 < len(name) <= _MAX_KEY_LENGTH and _unique_path(name):
        return name
    key = _INVALID_CHAR.sub("_", name).strip("/") or "_"
    key = posixpath.normpath(key).lstrip("./") or "_"
    return key[:_MAX_KEY_LENGTH]


def _unique_path(name: str) -> bool:
    norm = posixpath.normpath(name)
    return not (norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"))


def truncate(value: object, limit: int) -> str:
    """Stringify ``value`` and cut it to ``limit`` characters, marking the cut with ``...``.

    Args:
        value: Any value; ``str()`` is applied as MLflow itself does.
        limit: Maximum length MLflow accepts for this kind of value.

    Returns:
        The string, at most ``limit`` characters long.
    """
    text = str(value)
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def resolve_metric_names(metric_name: str | Sequence[str], n_values: int) -> list[str]:
    """Name the objective values the way ``optuna_integration.MLflowCallback`` does.

    Args:
        metric_name: One name, broadcast as ``{name}_{i}`` for several objectives, or one
            name per objective.
        n_values: Number of objective values.

    Returns:
        One metric name per objective value.

    Raises:
        ValueError: When a sequence of names does not match the number of values.
    """
    if isinstance(metric_name, str):
        if n_values > 1:
            return [f"{metric_name}_{i}" for i in range(n_values)]
        return [metric_name]
    names = list(metric_name)
    if len(names) != n_values:
        raise ValueError(
            f"metric_name has {len(names)} names but the study has {n_values} objectives; "
            "give one name per objective or a single name to broadcast."
        )
    return names
