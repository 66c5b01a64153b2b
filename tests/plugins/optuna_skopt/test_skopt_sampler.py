"""Behaviour of SkoptSampler inside real Optuna studies."""

from __future__ import annotations

import pickle
import statistics
import sys
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import RandomSampler
from optuna.trial import TrialState, create_trial
from skopt.learning import (
    ExtraTreesRegressor,
    GaussianProcessRegressor,
    GradientBoostingQuantileRegressor,
)
from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern
from threadpoolctl import threadpool_limits

from optuna_skopt import SkoptSampler
from optuna_skopt._gbrt import QuantileGBRT

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fast_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "base_estimator": ExtraTreesRegressor(n_estimators=10, min_samples_leaf=3),
        "n_initial_points": 3,
        "acq_func": "EI",
        "acq_optimizer_kwargs": {"n_points": 200},
    }
    kwargs.update(overrides)
    return kwargs


def _fast(seed: int | None = 0, **kwargs: Any) -> SkoptSampler:
    return SkoptSampler(skopt_kwargs=_fast_kwargs(), seed=seed, **kwargs)


def _told_values(sampler: SkoptSampler) -> list[float]:
    assert sampler._state is not None and sampler._state.optimizer is not None
    return list(sampler._state.optimizer._skopt.yi)


def _quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    y = trial.suggest_float("y", -5.0, 5.0)
    return (x - 1.0) ** 2 + (y + 2.0) ** 2


def _seed_objective(trial: optuna.Trial) -> float:
    """The app's search space: a conditional stack of layers plus an optimizer choice."""
    n_layers = trial.suggest_int("num_fc_layers", 4, 8)
    total = 0.0
    for i in range(n_layers):
        total += trial.suggest_int(f"fc_output_feat_{i}", 8, 64) / 64
        total += trial.suggest_float(f"fc_dropout_{i}", 0.0, 0.5)
    total += trial.suggest_int("last_fc", 8, 64) / 64
    optimizer = trial.suggest_categorical(
        "optimizer", ["Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD"]
    )
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    return total + (optimizer == "SGD") + abs(lr - 1e-3) * 100


def _independent_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "sampled by" in r.getMessage()]


def test_seed_space_samples_conditional_params_independently(
    optuna_log: pytest.LogCaptureFixture,
) -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler)
    study.optimize(_seed_objective, n_trials=12)

    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    always = {f"fc_output_feat_{i}" for i in range(4)} | {f"fc_dropout_{i}" for i in range(4)}
    assert set(relative) == always | {"num_fc_layers", "last_fc", "optimizer", "lr"}

    messages = _independent_warnings(optuna_log)
    assert messages, "conditional parameters should have been sampled independently"
    assert all("trial 0 " not in m for m in messages)
    warned = {m.split("'")[1] for m in messages}
    assert warned <= {f"fc_{kind}_{i}" for kind in ("output_feat", "dropout") for i in range(4, 8)}


def test_warning_switch_silences_independent_sampling(
    optuna_log: pytest.LogCaptureFixture,
) -> None:
    study = optuna.create_study(sampler=_fast(warn_independent_sampling=False))
    study.optimize(_seed_objective, n_trials=8)
    assert _independent_warnings(optuna_log) == []


def test_no_warning_during_startup(optuna_log: pytest.LogCaptureFixture) -> None:
    study = optuna.create_study(sampler=_fast(n_startup_trials=5))
    study.optimize(_seed_objective, n_trials=5)
    assert _independent_warnings(optuna_log) == []


def test_startup_trials_are_sampled_independently() -> None:
    sampler = _fast(n_startup_trials=3)
    study = optuna.create_study(sampler=sampler)
    space: dict[str, BaseDistribution] = {"x": FloatDistribution(0.0, 1.0)}
    for value in (1.0, 2.0):
        study.add_trial(create_trial(params={"x": value / 4}, distributions=space, value=value))
    trial = study.ask()
    assert sampler.sample_relative(study, trial._cached_frozen_trial, space) == {}
    study.add_trial(create_trial(params={"x": 0.75}, distributions=space, value=3.0))
    assert set(sampler.sample_relative(study, trial._cached_frozen_trial, space)) == {"x"}


def test_maximize_is_negated() -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler, direction="maximize")
    space: dict[str, BaseDistribution] = {"x": FloatDistribution(0.0, 1.0)}
    for x, value in [(0.1, 1.0), (0.5, 4.0), (0.9, -2.0)]:
        study.add_trial(create_trial(params={"x": x}, distributions=space, value=value))
    study.ask(space)
    assert _told_values(sampler) == [-1.0, -4.0, 2.0]


@pytest.mark.parametrize("consider", [False, True])
def test_consider_pruned_trials(consider: bool) -> None:
    sampler = SkoptSampler(skopt_kwargs=_fast_kwargs(), consider_pruned_trials=consider, seed=0)
    study = optuna.create_study(sampler=sampler)
    space: dict[str, BaseDistribution] = {"x": FloatDistribution(0.0, 1.0)}
    study.add_trial(create_trial(params={"x": 0.1}, distributions=space, value=1.0))
    study.add_trial(
        create_trial(
            params={"x": 0.2},
            distributions=space,
            state=TrialState.PRUNED,
            intermediate_values={0: 9.0, 4: 7.0, 2: 8.0},
        )
    )
    study.add_trial(create_trial(params={"x": 0.3}, distributions=space, state=TrialState.PRUNED))
    study.ask(space)
    assert _told_values(sampler) == ([1.0, 7.0] if consider else [1.0])


def test_non_finite_values_are_not_told() -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler)
    space: dict[str, BaseDistribution] = {"x": FloatDistribution(0.0, 1.0)}
    study.add_trial(create_trial(params={"x": 0.1}, distributions=space, value=1.0))
    study.add_trial(create_trial(params={"x": 0.2}, distributions=space, value=float("inf")))
    study.ask(space)
    assert _told_values(sampler) == [1.0]


def _params_sequence(sampler: SkoptSampler, n_trials: int = 10) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=sampler)
    study.optimize(_seed_objective, n_trials=n_trials)
    return [t.params for t in study.trials]


def test_same_seed_same_sequence() -> None:
    first = _params_sequence(_fast(seed=3))
    assert first == _params_sequence(_fast(seed=3))
    assert first != _params_sequence(_fast(seed=4))


def test_reseed_rng_changes_what_comes_next_and_only_that() -> None:
    sampler = _fast(seed=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=5)
    sampler.reseed_rng()
    twin = _fast(seed=1)
    twin_study = optuna.create_study(sampler=twin)
    twin_study.optimize(_quadratic, n_trials=5)
    assert [t.params for t in twin_study.trials] == [t.params for t in study.trials]

    study.optimize(_quadratic, n_trials=3)
    twin_study.optimize(_quadratic, n_trials=3)
    assert [t.params for t in study.trials[5:]] != [t.params for t in twin_study.trials[5:]]


def test_multi_objective_is_rejected() -> None:
    study = optuna.create_study(sampler=_fast(), directions=["minimize", "maximize"])
    with pytest.raises(ValueError, match="only single-objective"):
        study.optimize(lambda t: (_quadratic(t), 0.0), n_trials=1)


def test_unknown_kwarg_names_key_and_accepted_keys() -> None:
    with pytest.raises(ValueError, match=r"n_initial_pionts.*acq_func_kwargs") as info:
        SkoptSampler(skopt_kwargs={"n_initial_pionts": 5})
    assert "n_initial_points" in str(info.value)


def test_dimensions_kwarg_is_rejected() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        SkoptSampler(skopt_kwargs={"dimensions": [(0.0, 1.0)]})


def test_bad_value_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="acq_func"):
        SkoptSampler(skopt_kwargs={"acq_func": "nope"})
    with pytest.raises(ValueError, match="evaluation times"):
        SkoptSampler(skopt_kwargs={"acq_func": "EIps"})


@pytest.mark.parametrize(
    "estimator",
    ["GBRT", "gbrt", GradientBoostingQuantileRegressor()],
    ids=["string", "lowercase", "skopt-instance"],
)
def test_gbrt_surrogate_works(estimator: Any) -> None:
    sampler = SkoptSampler(
        skopt_kwargs=_fast_kwargs(base_estimator=estimator, n_initial_points=3), seed=0
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sampler._state is not None and sampler._state.optimizer is not None
    skopt_optimizer = sampler._state.optimizer._skopt
    assert skopt_optimizer.acq_optimizer == "sampling"
    assert isinstance(skopt_optimizer.models[-1], QuantileGBRT)


def test_cached_optimizer_is_reused_and_told_only_new_trials() -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=4)
    assert sampler._state is not None
    cached = sampler._state.optimizer
    assert cached is not None and cached.n_told == 3

    # Trials added behind the sampler's back are told at the next ask.
    space: dict[str, BaseDistribution] = {
        "x": FloatDistribution(-5.0, 5.0),
        "y": FloatDistribution(-5.0, 5.0),
    }
    for x in (0.5, 1.5):
        study.add_trial(create_trial(params={"x": x, "y": -2.0}, distributions=space, value=x))
    study.optimize(_quadratic, n_trials=1)
    assert sampler._state.optimizer is cached
    assert cached.n_told == 6
    assert _told_values(sampler)[-2:] == [0.5, 1.5]


def test_two_samplers_sharing_a_storage_see_every_trial() -> None:
    storage = optuna.storages.InMemoryStorage()
    study_a = optuna.create_study(storage=storage, sampler=_fast(seed=1), study_name="shared")
    study_b = optuna.load_study(storage=storage, sampler=_fast(seed=2), study_name="shared")
    for i in range(8):
        study = study_a if i % 2 == 0 else study_b
        study.optimize(_quadratic, n_trials=1)
        sampler = study.sampler
        assert isinstance(sampler, SkoptSampler)
        if i > 0:
            assert sampler._state is not None and sampler._state.optimizer is not None
            # Every earlier trial, whichever process ran it, was told before this ask.
            assert sampler._state.optimizer.n_told == i
            expected = [t.value for t in study.trials[:i]]
            assert _told_values(sampler) == expected


def test_new_search_space_rebuilds_the_optimizer() -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=3)
    assert sampler._state is not None
    old = sampler._state.optimizer

    def narrower_x(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", -4.0, 4.0) + trial.suggest_float("y", -5.0, 5.0)

    study.optimize(narrower_x, n_trials=2)
    new = sampler._state.optimizer
    assert new is not old and new is not None
    # x's range changed, so only y remains in the intersection search space.
    assert set(new.search_space) == {"y"}
    assert new.n_told == 4


def test_a_different_study_gets_a_fresh_cache() -> None:
    sampler = _fast()
    first = optuna.create_study(sampler=sampler)
    first.optimize(_quadratic, n_trials=4)
    second = optuna.create_study(sampler=sampler)
    second.optimize(_quadratic, n_trials=2)
    assert sampler._state is not None and sampler._state.optimizer is not None
    assert sampler._state.optimizer.n_told == 1


def test_pending_point_is_not_proposed_twice() -> None:
    sampler = SkoptSampler(skopt_kwargs=_fast_kwargs(n_initial_points=2), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=3)
    # Two asks with no result in between: skopt alone would propose the same point twice.
    first = study.ask()
    second = study.ask()
    assert _quadratic(first) != _quadratic(second)


def test_parallel_threads() -> None:
    study = optuna.create_study(sampler=_fast())
    study.optimize(_quadratic, n_trials=12, n_jobs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_pickle_round_trip() -> None:
    sampler = _fast()
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=4)
    restored = pickle.loads(pickle.dumps(sampler))
    study.sampler = restored
    study.optimize(_quadratic, n_trials=2)
    assert len(study.trials) == 6


def test_missing_skopt_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail exactly as if skopt were absent.
    monkeypatch.setitem(sys.modules, "skopt", None)
    with pytest.raises(ImportError, match="pip install scikit-optimize"):
        SkoptSampler()


def test_independent_sampler_receives_non_relative_params() -> None:
    independent = RandomSampler(seed=5)
    sampler = SkoptSampler(independent, skopt_kwargs=_fast_kwargs(), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_seed_objective, n_trials=4)
    assert sampler._independent_sampler is independent


@pytest.mark.slow
def test_beats_random_search_on_a_quadratic() -> None:
    def best_values(make_sampler: Any) -> list[float]:
        values = []
        for seed in range(5):
            study = optuna.create_study(sampler=make_sampler(seed))
            study.optimize(_quadratic, n_trials=30)
            values.append(study.best_value)
        return values

    def gp_kwargs() -> dict[str, Any]:
        # A GP surrogate (forests need more than 20 model-based trials to beat random search
        # reliably on a smooth function), kept cheap: one hyperparameter fit per refit and a
        # sampled acquisition.
        kernel = ConstantKernel(1.0, (0.01, 1000.0)) * Matern(
            length_scale=[1.0, 1.0], length_scale_bounds=[(0.01, 100.0)] * 2, nu=2.5
        )
        return {
            "base_estimator": GaussianProcessRegressor(
                kernel=kernel, normalize_y=True, noise="gaussian", n_restarts_optimizer=0
            ),
            "n_initial_points": 8,
            "acq_func": "EI",
            "acq_optimizer": "sampling",
            "acq_optimizer_kwargs": {"n_points": 1000},
        }

    # Multithreaded BLAS makes GP fits several times slower on a busy machine.
    with threadpool_limits(1):
        skopt_best = best_values(lambda seed: SkoptSampler(skopt_kwargs=gp_kwargs(), seed=seed))
    random_best = best_values(lambda seed: RandomSampler(seed=seed))
    assert statistics.median(skopt_best) < statistics.median(random_best)


def test_single_int_step_space() -> None:
    study = optuna.create_study(sampler=_fast())
    study.optimize(lambda t: t.suggest_int("k", 0, 20, step=4), n_trials=8)
    assert {t.params["k"] for t in study.trials} <= {0, 4, 8, 12, 16, 20}
