"""Split a run's metrics/params/tags into requests MLflow accepts."""

from __future__ import annotations

from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

__all__ = ["log_batch_chunked", "split_batches"]

Batch = tuple[list[Metric], list[Param], list[RunTag]]


def split_batches(
    metrics: Sequence[Metric],
    params: Sequence[Param],
    tags: Sequence[RunTag],
    final_tags: Sequence[RunTag] = (),
) -> list[Batch]:
    """Cut entities into chunks within MLflow's per-request limits.

    MLflow rejects a ``log_batch`` with more than 1000 metrics, 100 params, 100 tags or
    1000 entities in all.

    Args:
        metrics: Metrics to log.
        params: Params to log.
        tags: Tags to log.
        final_tags: Tags that must land in the last request, so that seeing them means
            everything before them was written (used for ``optuna.trial_state``).

    Returns:
        The requests, in order; empty when there is nothing to log.
    """
    m, p, t = list(metrics), list(params), list(tags)
    batches: list[Batch] = []
    while m or p or t:
        bp, p = p[:MAX_PARAMS_TAGS_PER_BATCH], p[MAX_PARAMS_TAGS_PER_BATCH:]
        bt, t = t[:MAX_PARAMS_TAGS_PER_BATCH], t[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(bp) - len(bt))
        bm, m = m[:room], m[room:]
        batches.append((bm, bp, bt))
    final = list(final_tags)
    while final:
        if batches:
            bm, bp, bt = batches[-1]
            room = min(
                MAX_PARAMS_TAGS_PER_BATCH - len(bt),
                MAX_ENTITIES_PER_BATCH - len(bm) - len(bp) - len(bt),
            )
            if room > 0:
                bt.extend(final[:room])
                final = final[room:]
                continue
        batches.append(([], [], []))
    return batches


def log_batch_chunked(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
    final_tags: Sequence[RunTag] = (),
) -> int:
    """Log everything with as few ``log_batch`` requests as MLflow's limits allow.

    Args:
        client: Client of the tracking store.
        run_id: Run to log into.
        metrics: Metrics to log.
        params: Params to log.
        tags: Tags to log.
        final_tags: Tags to put in the last request (see :func:`split_batches`).

    Returns:
        The number of requests sent.
    """
    batches = split_batches(metrics, params, tags, final_tags)
    for bm, bp, bt in batches:
        client.log_batch(run_id, metrics=bm, params=bp, tags=bt, synchronous=True)
    return len(batches)
