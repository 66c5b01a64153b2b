"""Checking ``skopt_kwargs`` and building ``skopt.Optimizer`` instances from them."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any


def import_skopt() -> ModuleType:
    """The ``skopt`` module, or an ImportError that says how to install it."""
    try:
        import skopt
    except ImportError as e:
        raise ImportError(
            "SkoptSampler requires scikit-optimize. Install it with `pip install scikit-optimize`."
        ) from e
    return skopt


def validate_skopt_kwargs(skopt_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check keyword arguments meant for ``skopt.Optimizer`` before any trial runs.

    Args:
        skopt_kwargs: Keyword arguments for ``skopt.Optimizer``, without ``dimensions``.

    Returns:
        A copy of the arguments.

    Raises:
        ValueError: If a key is unknown, ``dimensions`` is given, or skopt rejects a value.
    """
    skopt = import_skopt()
    kwargs = dict(skopt_kwargs or {})
    if "dimensions" in kwargs:
        raise ValueError(
            "skopt_kwargs must not contain 'dimensions': SkoptSampler derives the dimensions "
            "from the study's search space."
        )
    accepted = sorted(set(inspect.signature(skopt.Optimizer).parameters) - {"dimensions"})
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown skopt_kwargs key(s) {unknown}; skopt.Optimizer accepts {accepted}."
        )
    # Per-second acquisition functions need evaluation times, which Optuna does not report.
    if kwargs.get("acq_func") in ("EIps", "PIps"):
        raise ValueError(
            f"acq_func={kwargs['acq_func']!r} needs evaluation times alongside objective "
            "values, which SkoptSampler does not provide; use 'EI', 'PI', 'LCB' or 'gp_hedge'."
        )
    # A throwaway build makes bad values fail now, not at the first relative sample.
    build_optimizer(skopt, [skopt.space.Real(0.0, 1.0)], kwargs, random_state=0)
    return kwargs


def build_optimizer(
    skopt: ModuleType, dimensions: list[Any], kwargs: dict[str, Any], random_state: int
) -> Any:
    """Build a ``skopt.Optimizer``, repairing or seeding the surrogate where needed.

    Args:
        skopt: The ``skopt`` module.
        dimensions: skopt dimensions.
        kwargs: Validated ``skopt_kwargs``.
        random_state: Seed for the optimizer and for an unseeded surrogate.

    Returns:
        The ``skopt.Optimizer``.
    """
    # skopt keeps every fitted surrogate by default: one forest per trial in a cached optimizer.
    kwargs = {"model_queue_size": 1, **kwargs, "random_state": random_state}
    estimator: Any = kwargs.get("base_estimator")
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if "random_state" in params and params["random_state"] is None:
        from sklearn.base import clone

        # skopt seeds only the surrogates it builds from a name.
        estimator = clone(estimator).set_params(random_state=random_state)
        kwargs["base_estimator"] = estimator
    is_skopt_gbrt = isinstance(estimator, skopt.learning.GradientBoostingQuantileRegressor)
    if is_skopt_gbrt or (isinstance(estimator, str) and estimator.upper() == "GBRT"):
        from optuna_skopt._gbrt import QuantileGBRT

        if is_skopt_gbrt:
            kwargs["base_estimator"] = QuantileGBRT(**estimator.get_params(deep=False))
        else:
            kwargs["base_estimator"] = QuantileGBRT.default(random_state, kwargs.get("n_jobs", 1))
    return skopt.Optimizer(dimensions, **kwargs)
