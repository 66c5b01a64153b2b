"""Checking ``skopt_kwargs`` and building ``skopt.Optimizer`` instances from them."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

# Per-second acquisition functions need (value, duration) observations, which Optuna does not
# report as objective values.
_UNSUPPORTED_ACQ_FUNCS = ("EIps", "PIps")


def import_skopt() -> ModuleType:
    """Import scikit-optimize, explaining how to install it when it is missing.

    Returns:
        The ``skopt`` module.
    """
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
    accepted = sorted(
        name for name in inspect.signature(skopt.Optimizer).parameters if name != "dimensions"
    )
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown skopt_kwargs key(s) {unknown}; skopt.Optimizer accepts {accepted}."
        )
    if kwargs.get("acq_func") in _UNSUPPORTED_ACQ_FUNCS:
        raise ValueError(
            f"acq_func={kwargs['acq_func']!r} needs evaluation times alongside objective "
            "values, which SkoptSampler does not provide; use 'EI', 'PI', 'LCB' or 'gp_hedge'."
        )
    # A throwaway build on a one-dimensional space makes bad values fail at construction
    # rather than at the first relative sample, possibly hours into a study.
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
    kwargs = {**kwargs, "random_state": random_state}
    # skopt keeps every fitted surrogate by default; a long-lived cached optimizer would
    # otherwise hold one forest per completed trial.
    kwargs.setdefault("model_queue_size", 1)
    estimator: Any = kwargs.get("base_estimator")
    if _has_unset_random_state(estimator):
        from sklearn.base import clone

        # skopt seeds only the surrogates it builds from a name; without this a regressor
        # object would make a seeded sampler irreproducible.
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


def _has_unset_random_state(estimator: Any) -> bool:
    if isinstance(estimator, str) or not hasattr(estimator, "get_params"):
        return False
    params = estimator.get_params(deep=False)
    return "random_state" in params and params["random_state"] is None
