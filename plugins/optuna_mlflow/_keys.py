"""Tag keys (a README contract: dashboards and lookups rely on them), naming, URL redaction."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

__all__ = ["MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_NAME"]  # re-exported for the other modules

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
# Two Optuna studies may share a name (a recreated storage, another file), never a uid.
STUDY_UID = "optuna.study_uid"
# "host:pid:start-ticks" of the creating process: a dead owner on this host is seen at once.
OWNER = "optuna_mlflow.owner"

# Study user attrs: the uid, and the trial count when it was set (only those runs may lack it).
STUDY_UID_ATTR = "optuna_mlflow.study_uid"
LEGACY_TRIALS_ATTR = "optuna_mlflow.legacy_trials"

# MLflow's key rule (its validators are private); one bad key fails the whole batch.
_VALID_KEY = re.compile(r"^[/\w.\- :]*$")
_INVALID_CHAR = re.compile(r"[^/\w.\- :]")
_MAX_KEY_LENGTH = 250


def safe_key(name: str) -> str:
    """``name`` if MLflow accepts it as a key, else a variant with ``_`` for bad characters."""
    norm = posixpath.normpath(name)
    unique = norm == name and norm != "." and not norm.startswith(("..", "/"))
    if _VALID_KEY.match(name) and 0 < len(name) <= _MAX_KEY_LENGTH and unique:
        return name
    key = _INVALID_CHAR.sub("_", name).strip("/") or "_"
    key = posixpath.normpath(key).lstrip("./") or "_"
    return key[:_MAX_KEY_LENGTH]


def truncate(value: object, limit: int) -> str:
    """``str(value)`` cut to ``limit`` characters, the cut marked with ``...``."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_metric_names(metric_name: str | Sequence[str], n_values: int) -> list[str]:
    """One metric name per value, as ``optuna_integration.MLflowCallback`` names them."""
    if isinstance(metric_name, str):
        return [f"{metric_name}_{i}" for i in range(n_values)] if n_values > 1 else [metric_name]
    names = list(metric_name)
    if len(names) != n_values:
        raise ValueError(
            f"metric_name has {len(names)} names but the study has {n_values} objectives; "
            "give one name per objective or a single name to broadcast."
        )
    return names


# sqlalchemy's hide_password leaves query secrets and rejects plain paths: two patterns instead.
_USERINFO = re.compile(r"([A-Za-z][\w+.\-]*://[^:/?#@]*):[^/?#]*@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|secret|token|access_token)=)[^&#]*", re.I)


def redact_url(url: str) -> str:
    """Mask the password of a URL with ``***`` (``user:***@host``, ``?password=***``).

    Args:
        url: A storage or tracking URL, or a plain path.

    Returns:
        The URL without secrets.
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1:***@", url, count=1))
