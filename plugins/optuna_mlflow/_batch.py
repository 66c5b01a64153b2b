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

Batch = tuple[list[Metric], list[Param], list[RunTag]]


def split_batches(
    metrics: Sequence[Metric],
    params: Sequence[Param],
    tags: Sequence[RunTag],
    final_tags: Sequence[RunTag] = (),
) -> list[Batch]:
    """Cut entities into chunks within MLflow's per-request limits.

    Args:
        metrics: Metrics to log.
        params: Params to log.
        tags: Tags to log.
        final_tags: Tags for the last request: seeing them means everything else landed.

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
) -> None:
    """Log everything with as few ``log_batch`` requests as MLflow's limits allow.

    Args:
        client: Client of the tracking store.
        run_id: Run to log into.
        metrics: Metrics to log.
        params: Params to log.
        tags: Tags to log.
        final_tags: Tags for the last request (see :func:`split_batches`).
    """
    for bm, bp, bt in split_batches(metrics, params, tags, final_tags):
        client.log_batch(run_id, metrics=bm, params=bp, tags=bt, synchronous=True)
