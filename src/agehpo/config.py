"""The parameters of a study run, each with its help text: the CLI's flags are made from them,
and a test checks MLproject and the README's parameter table against them."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agehpo.errors import ConfigError, quote

__all__ = ["Role", "StudyConfig", "parse_samplers", "sampler_kwargs_for"]


class Role(enum.Enum):
    """What one process does for a study."""

    SINGLE = "single"  # runs trials, then finishes the study (test score, registry, plots)
    WORKER = "worker"  # only runs trials
    LAUNCHER = "launcher"  # runs n_workers tasks on a Dask cluster, then finishes the study


def _param(default: Any, help: str, *, minimum: int | None = 1) -> Any:
    """A field with its ``--help`` text; ``minimum`` bounds an integer flag (None: any)."""
    return field(default=default, metadata={"help": help, "minimum": minimum})


@dataclass(frozen=True)
class StudyConfig:
    """The parameters of the ``main`` entry point, with their defaults."""

    sampler: str = _param("tpe", "random, tpe, tpe_multivariate, skopt, gp, cmaes, qmc or a plugin")
    sampler_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "JSON object of sampler constructor overrides"}
    )
    pruner: str = _param("median", "median, hyperband, successive_halving, percentile, none")
    n_trials: int = _param(20, "the study's total budget; existing trials count")
    n_epochs: int = _param(50, "epochs per trial (unless pruned)")
    timeout: float = _param(0, "stop starting trials after this many seconds (0: none)")
    study_name: str = _param("age-prediction", "Optuna study name")
    storage: str = _param("sqlite:///optuna.db", "Optuna storage URL or a .journal file")
    data: str = _param("synthetic", "'synthetic' or a path to a Kaggle age_gender.csv")
    n_samples: int = _param(23705, "rows of synthetic data")
    img_size: int = _param(24, "side length the 48x48 images are resized to")
    batch_size: int = _param(128, "training batch size")
    seed: int = _param(13, "seeds the data, the sampler and training", minimum=None)
    model_name: str = _param("age-predictor", "registered model name")
    n_workers: int = _param(1, "Dask workers (>1: a LocalCluster unless cluster is set)")
    n_jobs: int = _param(1, "concurrent trials as threads in one process")
    device: str = _param("auto", "auto, cpu, cuda, cuda-graph")
    cluster: str = _param("", "'' (in-process), 'local' or a scheduler, e.g. tcp://host:8786")


def parse_samplers(text: str) -> list[str]:
    """Compare's sampler list: ``"skopt, random,tpe"`` to ``["skopt", "random", "tpe"]``.

    Raises:
        ConfigError: When the text names no sampler, or one twice.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"samplers={quote(text)} names no sampler; e.g. 'skopt,random,tpe'")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"samplers={quote(text)} names {', '.join(repeated)} more than once")
    return names


def sampler_kwargs_for(
    sampler: str, kwargs: dict[str, Any], samplers: Sequence[str]
) -> dict[str, Any]:
    """One compared sampler's overrides: ``kwargs[sampler]`` when every key names a compared
    sampler (``{"skopt": {"base_estimator": "GP"}}``), else ``kwargs`` itself."""
    if kwargs and all(k in samplers and isinstance(v, dict) for k, v in kwargs.items()):
        return dict(kwargs.get(sampler, {}))
    return dict(kwargs)
