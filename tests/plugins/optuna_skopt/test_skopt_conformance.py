"""Optuna's own sampler conformance suite, run against SkoptSampler in both search-space modes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from skopt.learning import ExtraTreesRegressor

from optuna_skopt import SkoptSampler


def _fast_sampler(search_space: Literal["intersection", "union"]) -> SkoptSampler:
    # Few initial points so the suite's short studies reach the fitted phase; a small forest
    # and acquisition sample keep each refit cheap.
    return SkoptSampler(
        skopt_kwargs={
            "base_estimator": ExtraTreesRegressor(n_estimators=10, min_samples_leaf=3),
            "n_initial_points": 2,
            "acq_optimizer_kwargs": {"n_points": 200},
        },
        search_space=search_space,
        seed=0,
    )


class TestSkoptSampler(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture(params=["intersection", "union"])
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return functools.partial(_fast_sampler, request.param)
