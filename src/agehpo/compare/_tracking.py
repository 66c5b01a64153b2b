"""The MLflow side of ``agehpo compare``: the compare parent run and one run per study.

Only :class:`~mlflow.MlflowClient` calls with explicit run ids, never MLflow's active run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import mlflow
from mlflow.entities import Metric, Param

from agehpo.study import StudyConfig
from optuna_mlflow import redact_url

if TYPE_CHECKING:
    from agehpo.compare import CompareResult


class CompareRun:
    """The compare parent run and the per-study runs, through explicit run ids only."""

    def __init__(self, config: StudyConfig, samplers: list[str], repeats: int) -> None:
        """Open (or adopt) the compare parent run and log the comparison's params.

        Args:
            config: The main parameters (storage logged without a password).
            samplers: The compared samplers.
            repeats: Studies per sampler.
        """
        self.client = mlflow.MlflowClient()
        self.uri = mlflow.get_tracking_uri()
        given = os.environ.get("MLFLOW_RUN_ID")
        self.owns_parent = not given
        tags = {
            "compare.samplers": ",".join(samplers),
            "compare.repeats": str(repeats),
            "compare.study_name": config.study_name,
            "compare.role": "parent",
        }
        if given:
            self.parent_run_id = given
            for key, value in tags.items():
                self.client.set_tag(given, key, value)
        else:
            experiment = self.client.get_experiment_by_name(config.study_name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(config.study_name)
            )
            run = self.client.create_run(
                experiment_id, run_name=f"compare-{config.study_name}", tags=tags
            )
            self.parent_run_id = run.info.run_id
        self.experiment_id = self.client.get_run(self.parent_run_id).info.experiment_id
        params = {"samplers": ",".join(samplers), "repeats": str(repeats)}
        for key, value in dataclasses.asdict(config).items():
            params[key] = (
                redact_url(value)
                if key == "storage"
                else json.dumps(value)
                if isinstance(value, dict)
                else str(value)
            )
        # Under `mlflow run` the -P values are logged already, and params are write-once.
        logged = self.client.get_run(self.parent_run_id).data.params
        missing = [Param(k, v) for k, v in params.items() if k not in logged]
        if missing:
            self.client.log_batch(self.parent_run_id, params=missing)

    def open_study_run(self, name: str, sampler: str, repeat: int, seed: int) -> str:
        """Create the run of one study, nested under the compare parent.

        Returns:
            Its run id, to pass to ``run_study(parent_run_id=...)``.
        """
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "optuna.study_name": name,
                "optuna.sampler": sampler,
                "compare.repeat": str(repeat),
                "compare.sampler_seed": str(seed),
            },
        )
        return str(run.info.run_id)

    def end(self, run_id: str, error: BaseException | None, *, parent: bool = False) -> None:
        """End a run FINISHED, or FAILED (KILLED on Ctrl-C/SIGTERM) when ``error`` is set.

        The MLflow Project run is left to ``mlflow run``, which ends it by exit status.
        """
        if parent and not self.owns_parent:
            return  # `mlflow run` ends its own run from the process's exit status
        status = (
            "FINISHED"
            if error is None
            else "KILLED"
            if isinstance(error, KeyboardInterrupt)
            else "FAILED"
        )
        self.client.set_terminated(run_id, status=status)

    def finish(self, result: CompareResult, folder: Path) -> str:
        """Log the table's numbers as metrics and ``folder`` as artifacts; end the parent.

        Returns:
            The compare parent run id.
        """
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{row.sampler}_{row.metric}_{stat}", float(row[stat]), now, 0)
            for _, row in result.table.iterrows()
            for stat in ("median", "min", "max")
            if row.n > 0
        ]
        self.client.log_batch(self.parent_run_id, metrics=metrics)
        self.client.log_artifacts(self.parent_run_id, str(folder))
        self.client.set_tag(self.parent_run_id, "compare.verdict", result.verdict[:5000])
        self.end(self.parent_run_id, None, parent=True)
        return self.parent_run_id

    def ui_hint(self) -> list[str]:
        """The `mlflow ui` command for the store in use and the experiment's runs link."""
        if urlsplit(self.uri).scheme in ("http", "https"):
            base, command = self.uri.rstrip("/"), None
        else:
            base, command = "http://127.0.0.1:5000", f"mlflow ui --backend-store-uri {self.uri}"
        link = f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"
        return [
            "See the comparison in MLflow:",
            *([f"  {command}"] if command else []),
            f"  {link}",
        ]
