"""What a trial's run holds (params, metrics, tags as MLflow entities), and how it is sent."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.time import get_current_time_millis as now_ms
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_mlflow import _keys as k

_logger = logging.getLogger(__name__)

# Optuna >= 3 keeps no reason in its storage; only the process that ran the trial knew it.
UNKNOWN_FAILURE = "not recorded (the objective raised or returned an invalid value)"


def to_ms(moment: datetime | None) -> int | None:
    """Milliseconds since the epoch of a (naive, local) Optuna datetime."""
    return None if moment is None else int(moment.timestamp() * 1000)


def param_text(value: object) -> str:
    """A param value as the writer logs it (stringified, cut to MLflow's limit)."""
    return k.truncate(value, MAX_PARAM_VAL_LENGTH)


def trial_params(trial: FrozenTrial, have: Mapping[str, str]) -> list[Param]:
    """The trial's params as MLflow stores them, minus those the run already has (``have``)."""
    params: list[Param] = []
    for name, value in trial.params.items():
        key, text = k.safe_key(name), param_text(value)
        if key not in have:
            params.append(Param(key, text))
        elif have[key] != text:
            # MLflow params are immutable; the storage stays the source of truth.
            msg = "Trial %d keeps param %s=%s in MLflow; Optuna says %s."
            _logger.warning(msg, trial.number, key, have[key], text)
    return params


def trial_metrics(
    trial: FrozenTrial,
    curve_key: str,
    value_keys: Sequence[str],
    *,
    skip_steps: Iterable[int] = (),
    have: Mapping[str, float] | None = None,
) -> list[Metric]:
    """Intermediate values (``curve_key``), value(s), ``pruned_at_epoch``; without the curve's
    ``skip_steps`` and the values the run ``have``s already."""
    have = have or {}
    skip = set(skip_steps)
    start = to_ms(trial.datetime_start) or now_ms()
    end = to_ms(trial.datetime_complete) or max(now_ms(), start)
    steps = sorted(trial.intermediate_values)
    metrics: list[Metric] = []
    last_ts = start
    for i, step in enumerate(steps):
        # No report times in Optuna: deterministic spread, so rewrites hit MLflow's dedup.
        last_ts = start + (end - start) * (i + 1) // (len(steps) + 1)
        if step not in skip:
            metrics.append(Metric(curve_key, float(trial.intermediate_values[step]), last_ts, step))
    last_step = steps[-1] if steps else 0
    for i, (name, value) in enumerate(zip(value_keys, trial.values or (), strict=True)):
        on_curve = i == 0 and name == curve_key and steps
        if (on_curve and trial.intermediate_values[last_step] == value) or have.get(name) == value:
            continue
        # Newest timestamp: MLflow's "latest value" is then the trial's, not its last epoch's.
        metrics.append(Metric(name, float(value), max(end, last_ts + 1), last_step))
    if trial.state == TrialState.PRUNED and steps:
        metrics.append(Metric("pruned_at_epoch", float(last_step), end, 0))
    return metrics


def trial_tags(
    trial: FrozenTrial,
    base: Mapping[str, str],
    *,
    fail_reason: str | None = None,
    user_attrs: bool = True,
    legacy_directions: Sequence[StudyDirection] | None = None,
) -> dict[str, str]:
    """The run's tags: legacy (``legacy_directions``), user attrs, ``base`` (wins), fail reason."""
    tags: dict[str, str] = {}
    if legacy_directions is not None:  # optuna_integration's tags
        for name in ("number", "datetime_start", "datetime_complete"):
            tags[name] = str(getattr(trial, name))
        if trial.state.is_finished():
            tags["state"] = trial.state.name
        if names := [d.name for d in legacy_directions]:
            tags["direction"] = str(names) if len(names) != 1 else names[0]
        for name, dist in trial.distributions.items():
            tags[k.safe_key(f"{name}_distribution")] = tag_text(dist)
    if user_attrs:
        tags.update({k.safe_key(n): tag_text(v) for n, v in trial.user_attrs.items()})
    tags.update(base)
    if trial.state == TrialState.FAIL:
        # Optuna 5 records no reason itself; objectives conventionally leave one in an attr.
        attr = trial.system_attrs.get("fail_reason") or trial.user_attrs.get("fail_reason")
        tags[k.FAIL_REASON] = tag_text(fail_reason or attr or UNKNOWN_FAILURE)
    return tags


def tag_text(value: object) -> str:
    """A tag value cut to MLflow's limit."""
    return k.truncate(value, MAX_TAG_VAL_LENGTH)


Batch = tuple[list[Metric], list[Param], list[RunTag]]


def split_batches(
    metrics: Sequence[Metric],
    params: Sequence[Param],
    tags: Sequence[RunTag],
    final_tags: Sequence[RunTag] = (),
) -> list[Batch]:
    """Requests within MLflow's limits; ``final_tags`` go last: seen, all else has landed."""
    m, p, t = list(metrics), list(params), list(tags)
    batches: list[Batch] = []
    while m or p or t:
        bp, p = p[:MAX_PARAMS_TAGS_PER_BATCH], p[MAX_PARAMS_TAGS_PER_BATCH:]
        bt, t = t[:MAX_PARAMS_TAGS_PER_BATCH], t[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(bp) - len(bt))
        bm, m = m[:room], m[room:]
        batches.append((bm, bp, bt))
    for tag in final_tags:
        if not batches or _is_full(*batches[-1]):
            batches.append(([], [], []))
        batches[-1][2].append(tag)
    return batches


def _is_full(metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> bool:
    size = len(metrics) + len(params) + len(tags)
    return len(tags) >= MAX_PARAMS_TAGS_PER_BATCH or size >= MAX_ENTITIES_PER_BATCH


def log_batch_chunked(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Mapping[str, str] | None = None,
    final_tags: Mapping[str, str] | None = None,
) -> None:
    """Log everything with as few ``log_batch`` requests as MLflow's limits allow."""
    as_tags = [RunTag(key, value) for key, value in (tags or {}).items()]
    final = [RunTag(key, value) for key, value in (final_tags or {}).items()]
    for bm, bp, bt in split_batches(metrics, params, as_tags, final):
        client.log_batch(run_id, metrics=bm, params=bp, tags=bt, synchronous=True)
