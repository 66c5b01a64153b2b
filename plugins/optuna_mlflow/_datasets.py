"""Record which data a study was tuned on, as an MLflow dataset input of a run."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from optuna_mlflow._compat import dataset_entity
from optuna_mlflow._redact import redact_url

if TYPE_CHECKING:
    import pandas as pd


def log_dataset(
    run_id: str,
    name: str,
    *,
    df: pd.DataFrame | None = None,
    digest: str | None = None,
    source: str = "",
    source_type: str = "local",
    context: str | None = "training",
    schema: Mapping[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
    client: MlflowClient | None = None,
) -> Dataset:
    """Log a dataset (a DataFrame, or just its metadata) as an input of a run.

    With ``df`` MLflow computes digest, schema and profile; without it ``name``, ``digest``
    and ``source`` describe the data (a file too large to hash again, seeded synthetic data).

    Args:
        run_id: The run (usually the study's parent run).
        name: Dataset name shown in the UI.
        df: The data itself, optional.
        digest: Content digest; default MLflow's for ``df``, else a hash of the metadata.
        source: Where the data comes from (path, URL without its password, ``synthetic:...``).
        source_type: MLflow source type (``local``, ``http``, ``code``, ...).
        context: Dataset context tag (``training``, ...); None for none.
        schema: JSON-able schema, without ``df``.
        profile: JSON-able profile (e.g. ``{"num_rows": 23705}``), without ``df``.
        client: Client of the tracking store; None uses MLflow's default.

    Returns:
        The logged dataset entity.
    """
    client = client or MlflowClient()
    source = redact_url(source)
    if df is not None:
        from mlflow.data.pandas_dataset import from_pandas

        with warnings.catch_warnings():
            # Two equal source types for a local path, and integer columns that cannot hold
            # NaN: MLflow's notes, no news for a dataset that is no model schema.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            # from_pandas resolves a missing source itself (to the calling code).
            extra: dict[str, Any] = {"source": source} if source else {}
            entity = dataset_entity(from_pandas(df, name=name, digest=digest, **extra))
    else:
        meta = {"name": name, "source": source, "schema": schema, "profile": profile}
        text = json.dumps(meta, sort_keys=True, default=str)
        entity = Dataset(
            name=name,
            digest=digest or hashlib.sha256(text.encode()).hexdigest()[:8],
            source_type=source_type,
            source=json.dumps({"uri": source}),
            schema=json.dumps(schema, default=str) if schema is not None else None,
            profile=json.dumps(profile, default=str) if profile is not None else None,
        )
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)] if context else []
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
    return entity
