"""The compare parent run and a nested run per study, through explicit run ids only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import mlflow
from mlflow.entities import Metric, RunTag

from agehpo.compare._report import STATS
from agehpo.compare._stats import CompareResult
from agehpo.config import StudyConfig
from agehpo.tracking.runs import config_params, end_status, experiment_id, log_missing_params


class CompareRun:
    """The parent run: ``mlflow run``'s (``MLFLOW_RUN_ID``), else a new ``compare-{study}``.

    As a context manager it ends a parent it created, FAILED or KILLED on an exception.
    """

    def __init__(self, config: StudyConfig, samplers: list[str], repeats: int) -> None:
        """Open or adopt the parent run; tag it and log the params it lacks."""
        self.client, self.uri = mlflow.MlflowClient(), mlflow.get_tracking_uri()
        self.run_id, joined = os.environ.get("MLFLOW_RUN_ID", ""), ",".join(samplers)
        self.owned = not self.run_id
        tags = {"compare.samplers": joined, "compare.repeats": str(repeats)}
        tags |= {"compare.study_name": config.study_name, "compare.role": "parent"}
        if self.owned:
            experiment, name = (
                experiment_id(self.client, config.study_name),
                f"compare-{config.study_name}",
            )
            self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        else:
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.experiment_id = self.client.get_run(self.run_id).info.experiment_id
        params = config_params(config, samplers=joined, repeats=str(repeats))
        log_missing_params(self.client, self.run_id, params)

    def __enter__(self) -> CompareRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None
    ) -> None:
        if self.owned:  # `mlflow run` ends its own run by the process's exit status
            self.client.set_terminated(self.run_id, status=end_status(error))

    @contextmanager
    def study_run(self, name: str, sampler: str, repeat: int, seed: int) -> Iterator[str]:
        """Yield the id of a new run for one study under the parent; end it as the block ends."""
        tags = {"mlflow.parentRunId": self.run_id, "optuna.study_name": name}
        tags |= {"optuna.sampler": sampler, "compare.repeat": str(repeat)}
        tags["compare.sampler_seed"] = str(seed)
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        try:
            yield run_id
        except BaseException as error:
            self.client.set_terminated(run_id, status=end_status(error))
            raise
        self.client.set_terminated(run_id, status=end_status(None))

    def log_report(self, result: CompareResult, folder: Path) -> None:
        """Log the table as ``{sampler}_{metric}_{stat}`` metrics, ``folder`` and the verdict."""
        now, table = int(time.time() * 1000), result.table[result.table.n > 0]
        metrics = [
            Metric(f"{row.sampler}_{row.metric}_{stat}", float(row[stat]), now, 0)
            for _, row in table.iterrows()
            for stat in STATS
        ]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.client.log_artifacts(self.run_id, str(folder))
        self.client.set_tag(self.run_id, "compare.verdict", result.verdict[:5000])
        result.parent_run_id = self.run_id
