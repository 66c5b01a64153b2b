"""The parameters of a study run: one frozen record, read by every layer below the CLI."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Role", "StudyConfig"]


class Role(enum.Enum):
    """What one process does for a study."""

    SINGLE = "single"  # runs trials, then finishes the study (test score, registry, plots)
    WORKER = "worker"  # only runs trials
    LAUNCHER = "launcher"  # starts n_workers worker processes, then finishes the study


@dataclass(frozen=True)
class StudyConfig:
    """The parameters of the ``main`` entry point, with their defaults."""

    sampler: str = "tpe"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    pruner: str = "median"
    n_trials: int = 20
    n_epochs: int = 50
    timeout: float = 0
    study_name: str = "age-prediction"
    storage: str = "sqlite:///optuna.db"
    data: str = "synthetic"
    n_samples: int = 23705
    img_size: int = 24
    batch_size: int = 128
    seed: int = 13
    model_name: str = "age-predictor"
    n_workers: int = 1
    n_jobs: int = 1
    device: str = "auto"
