"""Hand-made trials and study stats with known numbers, for the report, plot and MLflow tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from agehpo.compare._stats import StudyStats

MakeStats = Callable[..., StudyStats]


def make_trial(
    number: int, value: float | None, *, state: TrialState | None = None, span: float = 5.0
) -> FrozenTrial:
    """Trial ``number``: COMPLETE with ``value``, else PRUNED; from ``10 * number`` s on."""
    state = state or (TrialState.COMPLETE if value is not None else TrialState.PRUNED)
    trial = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values={0: 0.3, 1: 0.4},
    )
    trial.number = number
    trial.datetime_start = datetime(2024, 1, 1) + timedelta(seconds=10 * number)
    trial.datetime_complete = trial.datetime_start + timedelta(seconds=span)
    return trial


def stats_for(
    sampler: str, repeat: int, values: Sequence[float | None], test: float | None = None
) -> StudyStats:
    """A study of ``values`` (None: a PRUNED trial) with a budget of ``len(values)`` trials."""
    trials = tuple(make_trial(n, v) for n, v in enumerate(values))
    name = f"s-{sampler}-r{repeat}"
    return StudyStats(sampler, repeat, name, 12 + repeat, len(values), test, trials=trials)


@pytest.fixture
def make_stats() -> MakeStats:
    return stats_for


@pytest.fixture
def two_repeats() -> list[StudyStats]:
    """Sampler ``a``: best-so-far [—, .5, .5, .7] and [.6, .6, .65, .65]; test .61 and .63."""
    return [
        stats_for("a", 1, [None, 0.5, 0.4, 0.7], test=0.61),
        stats_for("a", 2, [0.6, None, 0.65, 0.62], test=0.63),
    ]
