"""SkoptSampler's union search space, pruned trials as information, and its one warning."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import HyperbandPruner
from optuna.trial import TrialState, create_trial
from skopt.learning import ExtraTreesRegressor

from optuna_skopt import SkoptSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

_SPACE: dict[str, BaseDistribution] = {
    "n": IntDistribution(1, 3),
    "width_1": IntDistribution(8, 64, step=8),
    "drop_1": FloatDistribution(0.1, 0.5),
    "act_2": CategoricalDistribution(["relu", "tanh"]),
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
}


def _sampler(**kwargs: Any) -> SkoptSampler:
    skopt_kwargs = {
        "base_estimator": ExtraTreesRegressor(n_estimators=10, min_samples_leaf=3),
        "n_initial_points": 3,
        "acq_optimizer_kwargs": {"n_points": 200},
    }
    return SkoptSampler(skopt_kwargs=skopt_kwargs, seed=0, **kwargs)


def _conditional(trial: optuna.Trial) -> float:
    """A cheap stand-in for the seed's space: layer i's parameters exist only when n > i."""
    n = trial.suggest_int("n", 1, 3)
    loss = abs(n - 2) + abs(trial.suggest_float("lr", 1e-4, 1e-2, log=True) - 1e-3) * 100
    if n > 1:
        loss += trial.suggest_int("width_1", 8, 64, step=8) / 64
        loss += trial.suggest_float("drop_1", 0.1, 0.5)
    if n > 2:
        loss += trial.suggest_categorical("act_2", ["relu", "tanh"]) == "tanh"
    return loss


def _add(study: optuna.Study, params: dict[str, Any], **kwargs: Any) -> None:
    distributions = {name: _SPACE[name] for name in params}
    study.add_trial(create_trial(params=params, distributions=distributions, **kwargs))


def _told(sampler: SkoptSampler) -> tuple[list[list[Any]], list[float]]:
    """The rows and targets the wrapped ``skopt.Optimizer`` was told (Xi, yi)."""
    assert sampler._state is not None and sampler._state.optimizer is not None
    skopt_optimizer = sampler._state.optimizer._skopt
    return [list(x) for x in skopt_optimizer.Xi], list(skopt_optimizer.yi)


def test_union_tells_every_trial_with_absent_params_at_the_low_end() -> None:
    sampler = _sampler(search_space="union")
    study = optuna.create_study(sampler=sampler)
    _add(study, {"n": 1, "lr": 1e-3}, value=1.0)
    _add(study, {"n": 2, "lr": 1e-4, "width_1": 24, "drop_1": 0.3}, value=2.0)
    _add(study, {"n": 3, "lr": 1e-2, "width_1": 64, "drop_1": 0.5, "act_2": "tanh"}, value=3.0)
    trial = study.ask()
    assert set(sampler.infer_relative_search_space(study, trial._cached_frozen_trial)) == set(
        _SPACE
    )
    trial.suggest_int("n", 1, 3)  # relative sampling runs at the first suggestion

    # Dimensions by name: act_2 (choice index), drop_1, lr, n and width_1 (grid indices).
    rows, values = _told(sampler)
    assert rows == [
        [0, 0.1, 1e-3, 0, 0],
        [0, 0.3, 1e-4, 1, 2],
        [1, 0.5, 1e-2, 2, 7],
    ]
    assert values == [1.0, 2.0, 3.0]


def test_intersection_tells_only_the_shared_params() -> None:
    sampler = _sampler()
    study = optuna.create_study(sampler=sampler)
    _add(study, {"n": 1, "lr": 1e-3}, value=1.0)
    _add(study, {"n": 2, "lr": 1e-4, "width_1": 24, "drop_1": 0.3}, value=2.0)
    study.ask().suggest_int("n", 1, 3)
    assert _told(sampler) == ([[1e-3, 0], [1e-4, 1]], [1.0, 2.0])


@pytest.mark.parametrize("search_space", ["intersection", "union"])
@pytest.mark.parametrize("consider", [False, True])
def test_pruned_trials_are_told_their_last_value(search_space: str, consider: bool) -> None:
    sampler = _sampler(search_space=search_space, consider_pruned_trials=consider)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    _add(study, {"n": 1, "lr": 1e-3}, value=0.5)
    # Steps out of order: the last reported is the highest step, not the last inserted.
    pruned = {"n": 2, "lr": 1e-4, "width_1": 8, "drop_1": 0.2}
    _add(study, pruned, state=TrialState.PRUNED, intermediate_values={0: 0.1, 5: 0.3, 2: 0.2})
    _add(study, {"n": 1, "lr": 1e-2}, state=TrialState.PRUNED)  # nothing reported: not told
    study.ask().suggest_int("n", 1, 3)
    rows, values = _told(sampler)
    assert values == ([-0.5, -0.3] if consider else [-0.5])  # maximize: negated
    if search_space == "union" and consider:
        assert rows == [[0.1, 1e-3, 0, 0], [0.2, 1e-4, 1, 0]]  # drop_1, lr, n, width_1


def test_pruned_trials_are_told_in_a_real_study_with_a_pruner() -> None:
    sampler = _sampler(search_space="union", consider_pruned_trials=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = optuna.create_study(sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        loss = _conditional(trial)
        for step in range(3):
            trial.report(loss * (3 - step), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study.optimize(objective, n_trials=20)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states
    assert sampler._state is not None and sampler._state.optimizer is not None
    assert sampler._state.optimizer.n_told == len(study.trials) - 1  # all but the last


def test_union_trials_hold_only_the_params_they_used() -> None:
    sampler = _sampler(search_space="union")
    study = optuna.create_study(sampler=sampler)
    study.optimize(_conditional, n_trials=25)
    for trial in study.trials:
        expected = {"n", "lr"} | ({"width_1", "drop_1"} if trial.params["n"] > 1 else set())
        expected |= {"act_2"} if trial.params["n"] > 2 else set()
        assert set(trial.params) == expected
        assert set(trial.distributions) == expected
    # Every trial after the startup ones was proposed over the whole space.
    assert sampler._state is not None and sampler._state.optimizer is not None
    assert set(sampler._state.optimizer.search_space) == set(_SPACE)
    assert sampler._state.optimizer.n_told == 24


def test_union_leaves_out_a_parameter_whose_distribution_changes() -> None:
    sampler = _sampler(search_space="union")
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1 + t.number) + t.suggest_int("k", 0, 5), 4)
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    assert set(relative) == {"k"}


def test_unknown_search_space_is_rejected() -> None:
    with pytest.raises(ValueError, match="'intersection' or 'union'"):
        SkoptSampler(search_space="all")  # type: ignore[arg-type]


def _sampler_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "SkoptSampler" in r.getMessage()]


@pytest.mark.parametrize("search_space", ["intersection", "union"])
def test_a_100_trial_conditional_study_warns_at_most_once(
    search_space: str, optuna_log: pytest.LogCaptureFixture
) -> None:
    study = optuna.create_study(sampler=_sampler(search_space=search_space))
    study.optimize(_conditional, n_trials=100)
    messages = _sampler_warnings(optuna_log)
    if search_space == "union":
        assert messages == []  # every conditional parameter is modelled
    else:
        assert len(messages) == 1
        assert "once per study" in messages[0] and "search_space='union'" in messages[0]
    # A second study on the same sampler gets its own one warning.
    optuna.create_study(sampler=study.sampler).optimize(_conditional, n_trials=20)
    assert len(_sampler_warnings(optuna_log)) == len(messages) * 2


def test_hyperband_brackets_share_the_one_warning(optuna_log: pytest.LogCaptureFixture) -> None:
    pruner = HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    study = optuna.create_study(sampler=_sampler(), pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        loss = _conditional(trial)
        trial.report(loss, 1)
        return loss

    study.optimize(objective, n_trials=30)
    assert len(_sampler_warnings(optuna_log)) == 1


def test_union_warns_once_about_a_changing_distribution(
    optuna_log: pytest.LogCaptureFixture,
) -> None:
    study = optuna.create_study(sampler=_sampler(search_space="union"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1 + t.number), n_trials=8)
    messages = _sampler_warnings(optuna_log)
    assert len(messages) == 1 and "differs between trials" in messages[0]
