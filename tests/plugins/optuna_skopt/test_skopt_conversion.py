"""Conversion between Optuna distributions and skopt dimensions."""

from __future__ import annotations

from typing import Any

import pytest
import skopt.space
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optuna_skopt._optimizer import _Encoding, _Optimizer, decode, encode, to_dimension

_FAST_KWARGS: dict[str, Any] = {
    "base_estimator": "ET",
    "n_initial_points": 2,
    "acq_optimizer_kwargs": {"n_points": 200},
}

_MIXED_CHOICES = (None, True, 2.5, "a", 3)

_DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "int": IntDistribution(-3, 7),
    "int_log": IntDistribution(1, 100, log=True),
    "int_step": IntDistribution(0, 9, step=3),
    "float": FloatDistribution(-1.0, 1.0),
    "float_log": FloatDistribution(1e-4, 1e-2, log=True),
    "float_step": FloatDistribution(-10.2, 10.2, step=0.1),
    "categorical": CategoricalDistribution(_MIXED_CHOICES),
}


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    return distribution._contains(distribution.to_internal_repr(value))


@pytest.mark.parametrize(
    ("distribution", "cls", "bounds", "prior"),
    [
        (IntDistribution(-3, 7), skopt.space.Integer, (0, 10), "uniform"),
        (IntDistribution(1, 100, log=True), skopt.space.Integer, (1, 100), "log-uniform"),
        (IntDistribution(0, 9, step=3), skopt.space.Integer, (0, 3), "uniform"),
        (FloatDistribution(-1.0, 1.0), skopt.space.Real, (-1.0, 1.0), "uniform"),
        (FloatDistribution(1e-4, 1e-2, log=True), skopt.space.Real, (1e-4, 1e-2), "log-uniform"),
        (FloatDistribution(-10.2, 10.2, step=0.1), skopt.space.Integer, (0, 204), "uniform"),
    ],
)
def test_numeric_dimension(
    distribution: BaseDistribution, cls: type, bounds: tuple[float, float], prior: str
) -> None:
    dimension: Any = to_dimension(distribution, skopt.space)
    assert dimension.bounds == pytest.approx(bounds)
    assert dimension.prior == prior
    assert type(dimension) is cls


def test_categorical_dimension_uses_indices() -> None:
    dimension = to_dimension(CategoricalDistribution(_MIXED_CHOICES), skopt.space)
    assert isinstance(dimension, skopt.space.Categorical)
    assert list(dimension.categories) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("distribution", "values"),
    [
        (IntDistribution(-3, 7), [-3, 0, 7]),
        (IntDistribution(1, 100, log=True), [1, 13, 100]),
        (IntDistribution(0, 9, step=3), [0, 3, 9]),
        (FloatDistribution(-1.0, 1.0), [-1.0, 0.25, 1.0]),
        (FloatDistribution(1e-4, 1e-2, log=True), [1e-4, 3e-3, 1e-2]),
        (FloatDistribution(-10.2, 10.2, step=0.1), [-10.2, -0.1, 0.0, 10.2]),
        (CategoricalDistribution(_MIXED_CHOICES), list(_MIXED_CHOICES)),
    ],
)
def test_round_trip(distribution: BaseDistribution, values: list[Any]) -> None:
    for value in values:
        encoded = encode(distribution, value)
        assert encoded is not None
        decoded = decode(distribution, encoded)
        assert decoded == pytest.approx(value) if isinstance(value, float) else decoded == value
        assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("distribution", "value"),
    [
        (IntDistribution(-3, 7), 8),
        (FloatDistribution(-1.0, 1.0), -1.5),
        (FloatDistribution(1e-4, 1e-2, log=True), 0.5),
        (IntDistribution(0, 9, step=3), -3),
        (CategoricalDistribution(_MIXED_CHOICES), "b"),
    ],
)
def test_encode_rejects_values_outside(distribution: BaseDistribution, value: Any) -> None:
    assert encode(distribution, value) is None


def test_decode_returns_plain_python_values_on_the_grid() -> None:
    import numpy as np

    assert decode(IntDistribution(0, 9, step=3), np.int64(2)) == 6
    assert type(decode(IntDistribution(0, 9, step=3), np.int64(2))) is int
    value = decode(FloatDistribution(-10.2, 10.2, step=0.1), np.int64(3))
    assert type(value) is float
    assert _contains(FloatDistribution(-10.2, 10.2, step=0.1), value)
    assert decode(CategoricalDistribution(_MIXED_CHOICES), np.int64(0)) is None


def test_optimizer_proposes_contained_values_for_every_kind() -> None:
    optimizer = _Optimizer(_DISTRIBUTIONS, _FAST_KWARGS, random_state=0)
    observations = {}
    for number in range(6):
        params = optimizer.ask()
        observation = optimizer.observe(params, float(number))
        assert observation is not None
        observations[number] = observation
        assert optimizer.sync(observations)
    # Past the two initial points every proposal below comes from the fitted surrogate.
    for _ in range(3):
        params = optimizer.ask()
        assert list(params) == list(_DISTRIBUTIONS)
        for name, distribution in _DISTRIBUTIONS.items():
            assert _contains(distribution, params[name]), name
            assert type(params[name]).__module__ == "builtins", name


def test_single_value_distributions_bypass_skopt() -> None:
    search_space = {
        "a": CategoricalDistribution([None]),
        "b": IntDistribution(3, 3),
        "c": FloatDistribution(0.5, 0.5),
        "x": FloatDistribution(0.0, 1.0),
    }
    optimizer = _Optimizer(search_space, _FAST_KWARGS, random_state=0)
    params = optimizer.ask()
    assert params["a"] is None
    assert params["b"] == 3
    assert params["c"] == 0.5
    assert 0.0 <= params["x"] <= 1.0

    only_single = _Optimizer({"b": IntDistribution(3, 3)}, _FAST_KWARGS, random_state=0)
    assert only_single.ask() == {"b": 3}


def test_observe_skips_trials_missing_a_parameter() -> None:
    optimizer = _Optimizer(
        {"x": FloatDistribution(0.0, 1.0), "y": IntDistribution(0, 3)}, _FAST_KWARGS, 0
    )
    assert optimizer.observe({"x": 0.5}, 1.0) is None
    assert optimizer.observe({"x": 0.5, "y": 7}, 1.0) is None
    assert optimizer.observe({"x": 0.5, "y": 2}, 1.0) == ([0.5, 2], 1.0)


def test_sync_refuses_when_a_told_observation_changed() -> None:
    optimizer = _Optimizer({"x": FloatDistribution(0.0, 1.0)}, _FAST_KWARGS, 0)
    assert optimizer.sync({0: ([0.1], 1.0), 1: ([0.2], 2.0)})
    assert optimizer.n_told == 2
    assert optimizer.sync({0: ([0.1], 1.0), 1: ([0.2], 2.0), 2: ([0.3], 3.0)})
    assert optimizer.n_told == 3
    assert not optimizer.sync({0: ([0.1], 1.0), 1: ([0.9], 2.0), 2: ([0.3], 3.0)})
    assert not optimizer.sync({0: ([0.1], 1.0)})
    assert optimizer.n_told == 3


def test_encoding_imputes_each_kind_at_its_low_end() -> None:
    encoding = _Encoding(_DISTRIBUTIONS, impute=True)
    # int -3..7 and the grids are indices, so their low end is 0; log scales keep their values.
    assert encoding.encode({}) == [0, 1, 0, -1.0, 1e-4, 0, 0]
    assert encoding.encode({"float": 0.5}) == [0, 1, 0, 0.5, 1e-4, 0, 0]
    assert encoding.encode({"float": 1.5}) is None  # outside: refused, imputed or not
    assert _Encoding(_DISTRIBUTIONS, impute=False).encode({"float": 0.5}) is None


def test_encoding_decodes_every_parameter_in_its_distribution() -> None:
    encoding = _Encoding(_DISTRIBUTIONS, impute=True)
    x = encoding.encode({})
    assert x is not None
    decoded = encoding.decode(x)
    assert list(decoded) == list(_DISTRIBUTIONS)
    assert all(_contains(_DISTRIBUTIONS[name], value) for name, value in decoded.items())
    assert decoded["int"] == -3 and decoded["categorical"] is None
